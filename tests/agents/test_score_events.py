"""``score_events``: input bytes in, customer table, alerts, deltas and dead letters out."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import orjson
import pytest

from cxstream.agents.app import Service
from cxstream.agents.tables import is_internal_key
from cxstream.engine.alerts import alert_id, rfc3339
from cxstream.engine.config import DAY_SECONDS
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.metrics import MetricDelta
from cxstream.engine.replayer import Replayer
from cxstream.schemas.events import MAX_EVENT_BYTES, event_to_json
from cxstream.schemas.export import DEFAULT_DIR
from tests.agents.conftest import RULE_KINDS, Harness
from tests.factories import at, event, login, opened, sent, ticket

ALERT_SCHEMA = json.loads((DEFAULT_DIR / "alert.schema.json").read_text())
DEAD_LETTER_SCHEMA = json.loads((DEFAULT_DIR / "dead-letter.schema.json").read_text())


def valid_against(schema: dict[str, Any], record: dict[str, Any]) -> bool:
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(record)
    return True


# -- accepted events ------------------------------------------------------------------------


async def test_a_valid_login_updates_the_customer_table_and_counts_the_event(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9, segment="pro"))

    state = harness.customer("c1")
    assert state is not None
    assert (state.customer_id, state.segment, state.events) == ("c1", "pro", 1)
    assert state.max_seen_at == at(0, 9)
    assert harness.sample("cxstream_events_processed_total", type="login") == 1
    assert harness.sample("cxstream_table_customers") == 1
    assert harness.sample("cxstream_processing_seconds_count") == 1
    assert harness.dead_letters() == []
    assert harness.alerts() == []


async def test_each_event_type_is_counted_under_its_own_label(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        for ev in (login("c1", 0, 9), sent("c1", 0, 10, message_id="m1"),
                   opened("c1", 0, 11, message_id="m1"), ticket("c2", 0, 12, ticket_id="t1")):
            await harness.score(agent, ev)

    counts = {t: harness.sample("cxstream_events_processed_total", type=t)
              for t in ("login", "email.sent", "email.opened", "ticket.opened")}
    assert counts == {"login": 1, "email.sent": 1, "email.opened": 1, "ticket.opened": 1}
    c1, c2 = harness.customer("c1"), harness.customer("c2")
    assert c1 is not None and c1.events == 3
    assert c2 is not None and c2.events == 1
    assert harness.sample("cxstream_table_customers") == 2


def _active_windows(harness: Harness) -> set[tuple[object, ...]]:
    rows = [MetricDelta.from_list(r) for _k, v in harness.deltas() for r in orjson.loads(v)]
    return {(d.segment, d.window_start, d.window_seconds) for d in rows
            if d.metric == "active_customers"}


async def test_a_settled_login_sends_an_active_customer_delta_per_window_and_segment(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9, 30, segment="pro"))
        assert harness.deltas() == []  # not settled until the watermark passes it
        await harness.score(agent, login("clock", 0, 10))  # watermark 09:55 > 09:30

    hour, day = at(0, 9), at(0)
    windows = {(hour, 3600), (day, 86400)}
    windows |= {(day - i * 86400, n * 86400) for n in (7, 28) for i in range(n)}
    assert _active_windows(harness) == {(seg, s, w) for seg in (None, "pro")
                                        for s, w in windows}
    # Every message is one segment's deltas, keyed by the segment (* = all).
    assert sorted(k for k, _ in harness.deltas()) == [b"*", b"pro"]


async def test_a_second_login_in_the_same_windows_counts_the_customer_once(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9, 10))
        await harness.score(agent, login("c1", 0, 9, 50))
        await harness.score(agent, login("clock", 0, 11))

    rows = [MetricDelta.from_list(r) for _k, v in harness.deltas() for r in orjson.loads(v)]
    hourly = [d for d in rows if d.metric == "active_customers" and d.window_seconds == 3600]
    assert [(d.window_start, d.numerator) for d in hourly] == [(at(0, 9), 1.0)]
    assert harness.sample("cxstream_events_processed_total", type="login") == 3


# -- dead letters ---------------------------------------------------------------------------

GOOD = orjson.loads(event_to_json(login("c1", 0, 9)))


def _json(**changes: Any) -> bytes:
    body = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


BAD_MESSAGES = [
    pytest.param(b'{"event_id": "e1", "customer_id": ', "invalid_json", "invalid JSON",
                 id="truncated-json"),
    pytest.param(b"\xff\xfe{}", "invalid_json", "UTF-8", id="not-utf8"),
    pytest.param(b"[1, 2, 3]", "not_an_object", "JSON object", id="array"),
    pytest.param(_json(type="purchase"), "unknown_type", "purchase", id="unknown-type"),
    pytest.param(_json(type=None), "unknown_type", "missing event type", id="no-type"),
    pytest.param(_json(occurred_at="yesterday"), "schema", "occurred_at", id="bad-time"),
    pytest.param(_json(customer_id=None), "schema", "customer_id", id="no-customer"),
    pytest.param(b"{" + b" " * MAX_EVENT_BYTES + b"}", "too_large", "limit", id="too-large"),
    pytest.param(None, "empty", "tombstone", id="tombstone"),
]


@pytest.mark.parametrize(("raw", "code", "in_reason"), BAD_MESSAGES)
async def test_a_message_that_is_not_an_event_is_dead_lettered_with_its_bytes_and_origin(
    service: Service, harness: Harness, raw: bytes | None, code: str, in_reason: str
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, raw, key=b"c1", family="tickets")

    [(key, dead)] = harness.dead_letters()
    assert key == b"c1"
    assert dead["code"] == code
    assert in_reason in dead["reason"]
    assert harness.payload_of(dead) == (raw or b"")
    assert (dead["source_topic"], dead["source_partition"], dead["source_offset"]) == (
        "cx.tickets", 0, 0)
    assert dead["key"] == "c1"
    assert valid_against(DEAD_LETTER_SCHEMA, dead)
    assert harness.sample("cxstream_dead_letters_total", reason=code) == 1
    assert harness.sample("cxstream_events_processed_total", type="login") == 0
    # No customer state; the run's outbox record holds the dead letter.
    assert [k for k in service.customers.keys() if not is_internal_key(k)] == []
    assert harness.deltas() == []


async def test_the_agent_keeps_going_after_dead_letters(
    service: Service, harness: Harness
) -> None:
    bad = [
        (b"{not json", "invalid_json"),
        (_json(type="purchase"), "unknown_type"),
        (_json(occurred_at="2026-03-02"), "schema"),
    ]
    async with service.score_events.test_context() as agent:
        for raw, _ in bad:
            await harness.score(agent, raw, key=b"c9")
        offset = await harness.score(agent, login("c1", 0, 9))

    letters = [dead for _, dead in harness.dead_letters()]
    assert [(d["code"], d["source_offset"], d["key"]) for d in letters] == [
        ("invalid_json", 0, "c9"), ("unknown_type", 1, "c9"), ("schema", 2, "c9")]
    assert [harness.payload_of(d) for d in letters] == [raw for raw, _ in bad]
    for _, code in bad:
        assert harness.sample("cxstream_dead_letters_total", reason=code) == 1
    # ...and the valid event after them was processed in full.
    assert offset == 3
    state = harness.customer("c1")
    assert state is not None and state.events == 1
    assert harness.sample("cxstream_events_processed_total", type="login") == 1


async def test_a_dead_letter_keeps_a_key_that_is_not_utf8_readable(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, b"nope", key=b"\xffc1")

    [(key, dead)] = harness.dead_letters()
    assert key == b"\xffc1"
    assert dead["key"] == "\ufffdc1"
    assert valid_against(DEAD_LETTER_SCHEMA, dead)


# -- event time -----------------------------------------------------------------------------


async def test_an_event_older_than_the_watermark_is_dead_lettered_as_late(
    service: Service, harness: Harness
) -> None:
    late = login("c1", 5, 8, 54, second=59)  # watermark: 09:00 - 300 s = 08:55:00
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c2", 5, 9))
        await harness.score(agent, late)

    [(key, dead)] = harness.dead_letters()
    assert key == b"c1"
    assert dead["code"] == "late"
    assert rfc3339(at(5, 8, 55)) in dead["reason"]
    assert harness.payload_of(dead) == event_to_json(late)
    assert (dead["source_topic"], dead["source_offset"]) == ("cx.logins", 1)
    assert valid_against(DEAD_LETTER_SCHEMA, dead)
    assert harness.sample("cxstream_dead_letters_total", reason="late") == 1
    assert harness.customer("c1") is None  # a late event changes no state
    assert harness.sample("cxstream_events_processed_total", type="login") == 1


async def test_an_event_from_a_far_future_clock_is_dead_lettered_and_moves_no_clock(
    service: Service, harness: Harness
) -> None:
    from cxstream.engine.events import Event

    wrong_clock = Event("e-2099", "c9", "login", 4_100_000_000.0)  # 2099-12-05
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 5, 9))
        await harness.score(agent, wrong_clock)
        await harness.score(agent, login("c2", 5, 9, 30))  # still on time

    [(key, dead)] = harness.dead_letters()
    assert (key, dead["code"]) == (b"c9", "future")
    assert "a clock is wrong" in dead["reason"]
    assert harness.customer("c9") is None
    assert service.scorer.processors[0].clock.watermark == at(5, 9, 30) - 300
    assert harness.sample("cxstream_dead_letters_total", reason="future") == 1


async def test_an_event_within_the_allowed_lateness_is_accepted(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c2", 5, 9))
        await harness.score(agent, login("c1", 5, 8, 55))  # exactly at the watermark

    assert harness.dead_letters() == []
    assert harness.customer("c1") is not None
    assert harness.sample("cxstream_watermark_seconds") == at(5, 8, 55)


# A fixed inactivity line (the engine personalises it from each customer's usual gap
# between active days; pinning min = max makes the story read "silent for 14 days").
LINE_DAYS = 14.0
FIXED_LINE = {"profile": {"inactivity_min_days": LINE_DAYS, "inactivity_max_days": LINE_DAYS,
                          "alert_kinds": list(RULE_KINDS)}}


Sent = list[tuple[bytes | None, dict[str, Any]]]


def inactivity(alerts: Sent) -> Sent:
    return [(k, a) for k, a in alerts if a["kind"] == "inactivity"]


@pytest.mark.parametrize("settings_overrides", [FIXED_LINE], ids=["14-day-line"])
async def test_a_silent_customer_is_alerted_once_other_events_move_the_watermark_past_the_deadline(
    service: Service, harness: Harness
) -> None:
    deadline = at(0, 9) + LINE_DAYS * DAY_SECONDS  # c1's last login + the inactivity line
    lateness = service.settings.allowed_lateness_seconds
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9))
        await harness.score(agent, login("c2", 5, 9))
        await harness.score(agent, login("c2", 10, 9))
        # c2 keeps the stream going; less the allowed lateness, the watermark reaches the
        # deadline (not yet decided: an event exactly at it may still come), then passes it.
        await harness.score(agent, login("c2", LINE_DAYS, 9, second=lateness))
        assert inactivity(harness.alerts()) == []
        await harness.score(agent, login("c2", LINE_DAYS, 9, second=lateness + 1))

    [(key, alert)] = inactivity(harness.alerts())
    assert key == b"c1"
    assert alert["customer_id"] == "c1"
    assert (alert["state"], alert["severity"], alert["seq"]) == ("raised", "warning", 0)
    assert alert["decided_at"] == rfc3339(deadline)
    assert alert["alert_id"] == alert_id("c1", "inactivity", deadline)
    assert alert["reasons"][0]["code"] == "inactive_days"
    assert valid_against(ALERT_SCHEMA, alert)
    assert harness.sample("cxstream_alerts_total", kind="inactivity", state="raised") == 1
    assert harness.sample("cxstream_watermark_seconds") == deadline + 1
    state = harness.customer("c1")
    assert state is not None and "inactivity" in state.episodes  # the sweep was stored


@pytest.mark.parametrize("settings_overrides", [FIXED_LINE], ids=["14-day-line"])
async def test_a_returning_customer_resolves_the_open_alert(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9))
        await harness.score(agent, login("c2", LINE_DAYS + 1))
        await harness.score(agent, login("c1", LINE_DAYS + 2, 9))
        await harness.score(agent, login("c2", LINE_DAYS + 2, 10))  # watermark passes c1's return

    found = inactivity(harness.alerts())
    assert [(k, a["state"], a["decided_at"]) for k, a in found] == [
        (b"c1", "raised", rfc3339(at(LINE_DAYS, 9))),
        (b"c1", "resolved", rfc3339(at(LINE_DAYS + 2, 9))),
    ]
    [raised, resolved] = [a for _, a in found]
    assert raised["alert_id"] == resolved["alert_id"]
    assert valid_against(ALERT_SCHEMA, resolved)
    assert harness.sample("cxstream_alerts_total", kind="inactivity", state="resolved") == 1


def story() -> list[Event]:
    """Four customers, three weeks, every family: enough for several alert kinds."""
    events = [login("a", d, 9) for d in range(0, 8)]
    events += [login("b", d, 10) for d in range(0, 22, 2)]
    events += [sent("c", d, 8, message_id=f"m{d}") for d in range(0, 22)]
    events += [opened("c", 1, 9, message_id="m1")]
    events += [ticket("d", 2, 11, ticket_id="t1"), ticket("d", 3, 11, ticket_id="t2"),
               ticket("d", 4, 11, ticket_id="t3"), ticket("d", 4, 15, ticket_id="t4")]
    events += [event("survey.response", "d", 5, 9, survey="nps", score=2.0),
               event("subscription.renewed", "b", 10, 12, plan="pro", mrr=99.0)]
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


async def test_the_worker_publishes_exactly_the_alerts_replay_decides(
    service: Service, harness: Harness
) -> None:
    events = story()
    expected = Replayer(Engine(service.settings.engine_config())).run(events).alerts
    async with service.score_events.test_context() as agent:
        for ev in events:
            await harness.score(agent, ev)

    published = harness.alerts()
    assert {a.kind for a in expected} >= {"inactivity", "support_friction", "feedback"}
    assert [a for _, a in published] == [orjson.loads(orjson.dumps(a.to_dict())) for a in expected]
    assert [k for k, _ in published] == [a.customer_id.encode() for a in expected]
    for _, alert in published:
        assert valid_against(ALERT_SCHEMA, alert)
    by_kind_state: dict[tuple[str, str], int] = {}
    for a in expected:
        by_kind_state[(a.kind, a.state)] = by_kind_state.get((a.kind, a.state), 0) + 1
    for (kind, state), n in by_kind_state.items():
        assert harness.sample("cxstream_alerts_total", kind=kind, state=state) == n


# -- duplicates and restarts ----------------------------------------------------------------


async def test_a_repeated_event_has_no_second_effect(
    service: Service, harness: Harness
) -> None:
    raw = event_to_json(login("c1", 0, 9))
    async with service.score_events.test_context() as agent:
        await harness.score(agent, raw)
        deltas, table = harness.deltas(), dict(service.customers)
        await harness.score(agent, raw)

    assert harness.deltas() == deltas
    assert dict(service.customers) == table
    assert harness.sample("cxstream_duplicate_events_total") == 1
    assert harness.sample("cxstream_events_processed_total", type="login") == 1
    assert harness.dead_letters() == []


async def test_a_repeated_event_id_is_a_duplicate_even_with_another_body(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9, event_id="e-1"))
        deltas = harness.deltas()
        await harness.score(agent, login("c1", 3, 9, event_id="e-1"))  # a later day

    assert harness.deltas() == deltas
    state = harness.customer("c1")
    assert state is not None and (state.events, state.max_seen_at) == (1, at(0, 9))
    assert harness.sample("cxstream_duplicate_events_total") == 1


@pytest.mark.parametrize("settings_overrides", [FIXED_LINE], ids=["14-day-line"])
async def test_after_a_rebalance_the_scorer_carries_on_from_the_table(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9))
        await harness.score(agent, login("c2", 5, 9))
        await harness.score(agent, login("c2", 10, 9))
        service.scorer.forget()  # what on_partitions_revoked/assigned do
        await harness.score(agent, login("c2", LINE_DAYS, 10))

    # c1's due time was rebuilt from the table, so the sweep still finds it.
    assert [(k, a["state"], a["decided_at"]) for k, a in inactivity(harness.alerts())] == [
        (b"c1", "raised", rfc3339(at(LINE_DAYS, 9)))]


async def test_events_redelivered_after_a_rebalance_are_duplicates_not_dead_letters(
    service: Service, harness: Harness
) -> None:
    events = [login("c1", 0, 9), login("c2", 1, 9), login("c3", 2, 9)]
    async with service.score_events.test_context() as agent:
        for ev in events:
            await harness.score(agent, ev)
        deltas = harness.delta_messages()
        before = service.scorer.processors[0].clock.watermark
        # A rebalance; at-least-once delivery then repeats the uncommitted tail, events
        # older than the watermark before the rebalance included.
        service.scorer.forget()
        for ev in events:
            await harness.score(agent, ev)

    assert before > events[0].occurred_at
    assert harness.dead_letters() == []
    # Nothing was committed, so the outbox publishes the earlier outputs again,
    # with the same source header: the metrics agent folds each once. Nothing new.
    again = harness.delta_messages()[len(deltas):]
    assert again and all(d in deltas for d in again)
    assert harness.sample("cxstream_duplicate_events_total") == len(events)


async def test_the_learned_participation_model_is_saved_and_restored_with_the_partition(
    service: Service, harness: Harness
) -> None:
    from cxstream.agents.scoring import model_key
    from tests.unit.engine.test_participation import cohort

    async with service.score_events.test_context() as agent:
        for ev in cohort(6) + [login("clock", 120, 9)]:
            await harness.score(agent, ev)
        learned = service.scorer.processors[0].model.to_dict()
        saved = service.customers.get(model_key(0))
        # The message that last changed it carries it in its outbox record too, so a
        # redelivery after a crash puts it back with the states it came with.
        recorded = [orjson.loads(v)["m"] for k, v in service.customers.items()
                    if k.startswith("\x00o|") and b'"m":' in v]
        service.scorer.forget()  # a rebalance: the processor is rebuilt from the tables
        await harness.score(agent, login("clock", 121, 9))
        restored = service.scorer.processors[0].model.to_dict()

    assert sum(sum(c) for c, _o in learned["frozen"].values()) > 0  # outcomes were learned
    assert saved is not None and orjson.loads(saved) == learned
    assert learned in recorded
    assert restored["frozen"] == learned["frozen"]
