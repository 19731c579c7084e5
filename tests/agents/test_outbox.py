"""Redelivery after a crash or a rebalance (issue 7): the outbox, the metric-delta
source header, and the clock restored only when the group committed what it saw."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from cxstream.agents import scoring
from cxstream.agents.app import Service
from cxstream.agents.backlog import Backlog
from cxstream.agents.scoring import DELTA_SOURCE_HEADER, outbox_key
from cxstream.engine.state import CustomerState
from tests.agents.conftest import RULE_KINDS, Harness, output_topics
from tests.factories import at, login

LINE_DAYS = 14.0
FIXED_LINE = {"profile": {"inactivity_min_days": LINE_DAYS, "inactivity_max_days": LINE_DAYS,
                          "alert_kinds": list(RULE_KINDS)}}


def lose_outputs(service: Service) -> None:
    """What a kill -9 does to the producer's buffer: nothing sent so far counts."""
    for topic in output_topics(service).values():
        topic.send.reset_mock()


async def redeliver(harness: Harness, agent: Any, events: list[Any], first_offset: int) -> None:
    """The uncommitted tail again, at the offsets it had."""
    harness.handled.clear()
    agent.sent_offset = first_offset
    for ev in events:
        await harness.score(agent, ev)


@pytest.mark.parametrize("settings_overrides", [FIXED_LINE], ids=["14-day-line"])
async def test_a_redelivered_message_publishes_what_it_published_before(
    service: Service, harness: Harness
) -> None:
    tail = [login("c2", 5, 9, segment="pro"), login("c2", LINE_DAYS, 10)]
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9))
        start = agent.sent_offset
        lose_outputs(service)
        for ev in tail:
            await harness.score(agent, ev)
        alerts, deltas = harness.alerts(), harness.delta_messages()
        assert [a["kind"] for _, a in alerts] == ["inactivity"] and deltas  # c1 swept
        assert all(h == {DELTA_SOURCE_HEADER: f"logins/0|{start + 1}".encode()}
                   for _, _, h in deltas[-1:])
        # The worker dies before its producer sent them; the table kept the states.
        lose_outputs(service)
        service.scorer.forget()
        await redeliver(harness, agent, tail, start)

    assert harness.alerts() == alerts
    assert harness.delta_messages() == deltas
    assert harness.sample("cxstream_duplicate_events_total") == len(tail)
    assert harness.sample("cxstream_events_processed_total", type="login") == 3


@pytest.mark.parametrize("settings_overrides", [FIXED_LINE], ids=["14-day-line"])
async def test_states_older_than_the_outbox_record_are_put_back_not_decided_again(
    service: Service, harness: Harness
) -> None:
    tail = [login("c2", 5, 9), login("c2", LINE_DAYS, 10)]
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9))
        before = {c: service.customers[c] for c in ("c1",)}
        start = agent.sent_offset
        lose_outputs(service)
        for ev in tail:
            await harness.score(agent, ev)
        after = {c: service.customers[c] for c in ("c1", "c2")}
        alerts, deltas = harness.alerts(), harness.delta_messages()
        # Changelog recovery wrote older versions over the local store (the store
        # itself, not through the table: no changelog): c1 is back before its
        # sweep, c2 is gone.
        service.customers.data["c1"] = before["c1"]
        del service.customers.data["c2"]
        lose_outputs(service)
        service.scorer.forget()
        await redeliver(harness, agent, tail, start)

    assert {c: service.customers[c] for c in ("c1", "c2")} == after
    # Nothing decided twice: exactly the recorded outputs, once.
    assert harness.alerts() == alerts
    assert harness.delta_messages() == deltas


async def test_committed_outbox_records_are_deleted(
    service: Service, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = service.settings.topic("logins")
    committed = {"offset": -1}
    monkeypatch.setattr(service.scorer, "committed",
                        lambda t, p: committed["offset"] if t == topic else None)
    monkeypatch.setattr(scoring, "OUTBOX_CLEAN_EVERY", 1)
    async with service.score_events.test_context() as agent:
        for hour in range(3):
            await harness.score(agent, login("c1", 0, 9 + hour))
        assert all(outbox_key(0, topic, o) in service.customers for o in range(3))
        committed["offset"] = 2  # offsets 0 and 1 are committed
        await harness.score(agent, login("c1", 0, 12))

    left = sorted(k for k in service.customers.keys() if k.startswith("\x00"))
    assert left == [outbox_key(0, topic, 2), outbox_key(0, topic, 3)]
    assert harness.sample("cxstream_table_customers") == 1


@pytest.mark.parametrize("committed", [None, 1, 2],
                         ids=["no-restart", "tail-uncommitted", "all-committed"])
async def test_after_a_restart_the_clock_is_where_the_previous_run_left_it(
    service: Service, harness: Harness, monkeypatch: pytest.MonkeyPatch, committed: int | None,
) -> None:
    monkeypatch.setattr(scoring, "CLOCK_SAVE_EVERY", 1)
    topic = service.settings.topic("logins")
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9))
        await harness.score(agent, login("c1", 0, 12))  # watermark 11:55
        if committed is not None:
            service.scorer.forget()

            async def probe(partition: int) -> Backlog:
                return Backlog({}, {topic: committed})

            monkeypatch.setattr(service.scorer, "probe", probe)
        # A new customer's event at 10:00, after offset 1: late in the run that
        # was interrupted, so late after the restart too (the outbox record of
        # offset 1, or the checkpoint when all is committed, carries the clock).
        await harness.score(agent, login("c2", 0, 10))

    assert [d["code"] for _, d in harness.dead_letters()] == ["late"]


@pytest.mark.parametrize("committed, restored", [(5, False), (6, True)],
                         ids=["clock-saw-uncommitted", "clock-committed"])
async def test_a_saved_clock_is_restored_only_if_the_group_committed_what_it_saw(
    service: Service, committed: int, restored: bool
) -> None:
    topic = service.settings.topic("logins")
    clock = {"w": 1000.0, "t": {topic: 1300.0}, "c": {topic: False}}
    # Written to the store directly: no changelog outside stream iteration.
    service.scorer.clocks.data["0"] = orjson.dumps({"clock": clock, "seen": {topic: 5}})
    got = service.scorer._restore_clock(0, {topic: committed})
    assert got.watermark == (1000.0 if restored else float("-inf"))


async def test_a_delta_message_is_folded_once_per_source_message(
    service: Service, harness: Harness
) -> None:
    from tests.agents.test_aggregate_metrics import HOUR_UPDATE_KEY, active

    key, value = active(None, at(0, 9), 3600)
    first = {DELTA_SOURCE_HEADER: b"logins/0|7"}
    async with service.aggregate_metrics.test_context() as agent:
        await harness.aggregate(agent, key, value, first)
        await harness.aggregate(agent, key, value, first)  # redelivered: published again
        await harness.aggregate(agent, key, value, {DELTA_SOURCE_HEADER: b"logins/0|8"})
        await harness.aggregate(agent, key, value, {DELTA_SOURCE_HEADER: b"logins/1|7"})
        await harness.aggregate(agent, key, value, first)

    values = [u["value"] for k, u in harness.metric_updates() if k == HOUR_UPDATE_KEY]
    assert values == [1.0, 1.0, 2.0, 3.0, 3.0]
    raw = service.metric_accs[orjson.dumps(["active_customers", None, at(0, 9), 3600]).decode()]
    assert raw.startswith(b'P{"logins/0":8,"logins/1":7}\n')


@pytest.fixture()
def batch_of(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``batch_of(n)``: the score agent takes exactly ``n`` messages per batch."""
    from cxstream.agents import app

    def set_size(n: int) -> None:
        monkeypatch.setattr(app, "SCORE_BATCH", n)
        monkeypatch.setattr(app, "SCORE_BATCH_WITHIN_S", PUT_TIMEOUT)

    return set_size


PUT_TIMEOUT = 4.0


async def test_a_run_of_messages_commits_once(
    service: Service, harness: Harness, batch_of: Any
) -> None:
    batch_of(4)
    topic = service.settings.topic("logins")
    async with service.score_events.test_context() as agent:
        offsets = await harness.score_batch(agent, [
            login("c1", 0, 9, segment="pro"), login("c2", 0, 9, segment="pro"),
            b"{not json", login("c1", 0, 10, segment="pro")])

    records = sorted(k for k in service.customers.keys() if k.startswith("\x00o|"))
    assert records == [outbox_key(0, topic, offsets[-1])]  # one record, at the last offset
    record = orjson.loads(service.customers[records[0]])
    assert sorted(CustomerState.from_wire(s).customer_id
                  for s in record["s"]) == ["c1", "c2"]  # one state per customer
    assert [kind for kind, _, _ in record["o"]].count("x") == 1
    assert [d["code"] for _, d in harness.dead_letters()] == ["invalid_json"]
    # One delta message per segment, tagged with the run's last offset.
    routes = [(k, h) for k, _, h in harness.delta_messages()]
    assert sorted(k for k, _ in routes) == sorted({k for k, _ in routes})
    assert {h[DELTA_SOURCE_HEADER] for _, h in routes} <= {f"logins/0|{offsets[-1]}".encode()}
    assert harness.customer("c1").events == 2
    assert harness.sample("cxstream_events_processed_total", type="login") == 3


async def test_a_redelivered_run_publishes_its_dead_letters_again_without_deciding_again(
    service: Service, harness: Harness, batch_of: Any
) -> None:
    batch_of(2)
    async with service.score_events.test_context() as agent:
        batch = [login("c1", 0, 9), b"{not json"]
        await harness.score_batch(agent, batch)
        first = harness.dead_letters()
        lose_outputs(service)
        service.scorer.forget()  # killed before the producer sent anything
        harness.handled.clear()
        agent.sent_offset = 0
        await harness.score_batch(agent, batch)

    assert harness.dead_letters() == first  # from the outbox record, once
    assert harness.sample("cxstream_dead_letters_total", reason="invalid_json") == 1
    assert harness.sample("cxstream_duplicate_events_total") == 1
    assert harness.customer("c1").events == 1


async def test_a_run_commits_early_before_its_record_grows_too_big(
    service: Service, harness: Harness, batch_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka refuses messages over 1 MB: a run's record and delta messages stay small."""
    batch_of(3)
    monkeypatch.setattr(scoring, "RUN_MAX_BYTES", 1)  # every message closes its run
    topic = service.settings.topic("logins")
    async with service.score_events.test_context() as agent:
        offsets = await harness.score_batch(
            agent, [login(c, 0, 9) for c in ("c1", "c2", "c3")])

    records = sorted(k for k in service.customers.keys() if k.startswith("\x00o|"))
    assert records == sorted(outbox_key(0, topic, o) for o in offsets)
    assert all(harness.customer(c).events == 1 for c in ("c1", "c2", "c3"))
