"""``aggregate_metrics``: metric deltas in, one summed value per window out."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest

from cxstream.agents.app import Service
from cxstream.agents.scoring import route_deltas
from cxstream.engine.alerts import rfc3339
from cxstream.engine.metrics import MetricDelta
from cxstream.schemas.export import DEFAULT_DIR
from tests.agents.conftest import Harness
from tests.factories import at, login, opened, sent

METRIC_UPDATE_SCHEMA = json.loads((DEFAULT_DIR / "metric-update.schema.json").read_text())
HOUR_START = at(0, 9)
HOUR_KEY = orjson.dumps(["active_customers", None, HOUR_START, 3600]).decode()
HOUR_UPDATE_KEY = (
    f"active_customers|*|{rfc3339(HOUR_START)}|{rfc3339(HOUR_START + 3600)}".encode()
)


def delta(metric: str, segment: str | None, start: float, seconds: int, num: float,
          den: float = 0.0) -> tuple[bytes, bytes]:
    """The (key, value) ``score_events`` sends for one delta."""
    ((key, rows),) = route_deltas([MetricDelta(metric, segment, start, seconds, num, den)]).items()
    return key, orjson.dumps(rows)


def active(segment: str | None, start: float, seconds: int) -> tuple[bytes, bytes]:
    """The (key, value) ``score_events`` sends for +1 active customer."""
    return delta("active_customers", segment, start, seconds, 1.0)


async def test_two_deltas_for_the_same_window_sum_into_one_value(
    service: Service, harness: Harness
) -> None:
    key, value = active(None, HOUR_START, 3600)
    async with service.aggregate_metrics.test_context() as agent:
        await harness.aggregate(agent, key, value)
        await harness.aggregate(agent, key, value)

    updates = harness.metric_updates()
    assert [k for k, _ in updates] == [HOUR_UPDATE_KEY, HOUR_UPDATE_KEY]
    assert [u["value"] for _, u in updates] == [1.0, 2.0]
    assert updates[-1][1] == {
        "metric": "active_customers",
        "segment": None,
        "window_start": rfc3339(HOUR_START),
        "window_end": rfc3339(HOUR_START + 3600),
        "value": 2.0,
        "sample_size": 2,
    }
    jsonschema.validate(updates[-1][1], METRIC_UPDATE_SCHEMA)
    assert harness.sample("cxstream_cx_metric", metric="active_customers", segment="all",
                          window="1h") == 2
    assert service.metric_accs[HOUR_KEY] == b"2.0,0.0"


async def test_windows_and_segments_are_summed_apart(
    service: Service, harness: Harness
) -> None:
    day = at(0)
    deltas = [active(None, HOUR_START, 3600), active("pro", HOUR_START, 3600),
              active(None, day, 86400), active(None, HOUR_START, 3600)]
    async with service.aggregate_metrics.test_context() as agent:
        for key, value in deltas:
            await harness.aggregate(agent, key, value)

    latest = {k: u["value"] for k, u in harness.metric_updates()
              if u["metric"] == "active_customers"}
    assert latest == {
        HOUR_UPDATE_KEY: 2.0,
        f"active_customers|pro|{rfc3339(HOUR_START)}|{rfc3339(HOUR_START + 3600)}".encode(): 1.0,
        f"active_customers|*|{rfc3339(day)}|{rfc3339(day + 86400)}".encode(): 1.0,
    }
    gauge = {(seg, win): harness.sample("cxstream_cx_metric", metric="active_customers",
                                        segment=seg, window=win)
             for seg, win in (("all", "1h"), ("pro", "1h"), ("all", "1d"))}
    assert gauge == {("all", "1h"): 2, ("pro", "1h"): 1, ("all", "1d"): 1}


async def test_open_rate_is_undefined_until_an_email_is_sent_then_opened_over_sent(
    service: Service, harness: Harness
) -> None:
    def rate(num: float, den: float) -> tuple[bytes, bytes]:
        return delta("email_open_rate", None, HOUR_START, 3600, num, den)

    async with service.aggregate_metrics.test_context() as agent:
        await harness.aggregate(agent, *rate(1.0, 0.0))  # an open seen before its send
        undefined = harness.metric_updates()[-1][1]
        gauge_before = harness.registry.get_sample_value(
            "cxstream_cx_metric", {"metric": "email_open_rate", "segment": "all", "window": "1h"})
        await harness.aggregate(agent, *rate(0.0, 1.0))
        await harness.aggregate(agent, *rate(0.0, 1.0))

    assert (undefined["value"], undefined["sample_size"]) == (None, 0)
    assert gauge_before is None  # an undefined value is not exported as a number
    last = harness.metric_updates()[-1][1]
    assert (last["value"], last["sample_size"]) == (0.5, 2)
    jsonschema.validate(undefined, METRIC_UPDATE_SCHEMA)
    jsonschema.validate(last, METRIC_UPDATE_SCHEMA)
    assert harness.sample("cxstream_cx_metric", metric="email_open_rate", segment="all",
                          window="1h") == 0.5


async def test_deltas_from_scored_events_add_up_to_the_metric(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9, 10))
        await harness.score(agent, login("c2", 0, 9, 20))
        await harness.score(agent, login("c1", 0, 9, 30))  # counted once per window
        await harness.score(agent, sent("c1", 0, 9, 40, message_id="m1"))
        await harness.score(agent, sent("c2", 0, 9, 40, message_id="m2"))
        await harness.score(agent, opened("c2", 0, 9, 45, message_id="m2"))
        await harness.score(agent, login("clock", 0, 11))  # moves the watermark past them
    async with service.aggregate_metrics.test_context() as agent:
        for key, value in harness.deltas():
            await harness.aggregate(agent, key, value)

    latest = {k: (u["value"], u["sample_size"]) for k, u in harness.metric_updates()}
    window = f"{rfc3339(HOUR_START)}|{rfc3339(HOUR_START + 3600)}"
    assert latest[f"active_customers|*|{window}".encode()] == (2.0, 2)
    # c2's open is also activity: it was already counted in this hour.
    assert latest[f"email_open_rate|*|{window}".encode()] == (0.5, 2)
    assert harness.sample("cxstream_cx_metric", metric="active_customers", segment="all",
                          window="1d") == 2


@pytest.mark.parametrize("segment", ["*", "all"])
async def test_segments_that_would_collide_with_the_total_are_dead_lettered(
    service: Service, harness: Harness, segment: str
) -> None:
    # "*" stands for "all segments" in metric keys and "all" on the gauge: a segment
    # with either name would be summed into the total, so the contract rejects them.
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9, segment=segment))
    dead = harness.dead_letters()
    assert [d["code"] for _, d in dead] == ["schema"]
    assert "segment" in dead[0][1]["reason"]
    assert harness.deltas() == []
