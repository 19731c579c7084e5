"""The engine and the partition processor alone: repeats, late events, state as a value."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from cxstream.config import EngineConfig
from cxstream.engine import Engine, event_id_hash
from cxstream.events import Event
from cxstream.inactivity import MAX_PENDING
from cxstream.partition import PartitionProcessor, StreamClock
from cxstream.state import CustomerState, DictStore, Episode
from tests.factories import (
    DAY,
    HOUR,
    MINUTE,
    at,
    by_customer,
    by_time,
    daily,
    event,
    login,
    metric_values,
    opened,
    replay,
    sent,
    ticket,
)

LATENESS = EngineConfig().allowed_lateness_seconds
STATE_BYTES_LIMIT = 2048  # STYLE.md: CustomerState ≤ 2 KB, whatever the history length


def processor(config: EngineConfig | None = None) -> PartitionProcessor:
    engine = Engine(config or EngineConfig())
    return PartitionProcessor(engine, DictStore(), StreamClock(engine.config.allowed_lateness_seconds))


def snapshot(proc: PartitionProcessor) -> dict[str, object]:
    """Every customer's state as plain data (a deep copy)."""
    return {st.customer_id: copy.deepcopy(st.to_dict()) for st in proc.store.values()}


# -- repeats --------------------------------------------------------------------------------


def test_engine_ignores_an_event_id_it_has_already_applied() -> None:
    engine = Engine(EngineConfig())
    first = engine.apply(None, login("c", 0, 9, segment="pro"), None)
    before = copy.deepcopy(first.state.to_dict())

    again = engine.apply(first.state, login("c", 0, 9, segment="pro"), at(0, 8))

    assert first.metrics and not first.duplicate
    assert again.duplicate
    assert again.alerts == [] and again.metrics == []
    assert again.state.to_dict() == before


def test_a_repeat_is_recognised_by_event_id_alone_not_by_content() -> None:
    engine = Engine(EngineConfig())
    st = engine.apply(None, login("c", 0, 9, event_id="e-1"), None).state

    again = engine.apply(st, opened("c", 3, 9, event_id="e-1"), None)

    assert again.duplicate
    assert st.last_activity_at == at(0, 9)


def test_partition_reports_a_repeat_and_changes_nothing() -> None:
    proc = processor()
    for e in [login("a", 0, 9), sent("a", 0, 10, 58), login("b", 0, 11)]:
        proc.process(e)
    before, watermark = snapshot(proc), proc.clock.watermark

    out = proc.process(sent("a", 0, 10, 58))  # within lateness of stream time 11:00

    assert out.duplicate and not out.late
    assert out.alerts == [] and out.metrics == []
    assert snapshot(proc) == before
    assert proc.clock.watermark == watermark


def test_a_repeat_that_arrives_after_the_watermark_changes_nothing() -> None:
    proc = processor()
    for e in [login("a", 0, 9), sent("a", 0, 10), login("b", 0, 11)]:
        proc.process(e)
    before = snapshot(proc)

    out = proc.process(sent("a", 0, 10))

    assert out.late or out.duplicate  # today: late, since lateness is checked first
    assert out.alerts == [] and out.metrics == []
    assert snapshot(proc) == before


def test_replaying_a_stream_with_repeats_gives_the_same_alerts_and_metrics() -> None:
    events = by_time([login("quiet", 0, 9), *daily("clock", 0, 40, hour=8), sent("quiet", 2, 9)])
    with_repeats = [e for e in events for _ in (range(2) if e.customer_id == "quiet" else range(1))]

    plain, repeated = replay(events), replay(with_repeats)

    assert repeated.duplicates == 2
    assert repeated.applied == plain.applied == len(events)
    assert [a.to_dict() for a in repeated.alerts] == [a.to_dict() for a in plain.alerts]
    assert metric_values(repeated.metrics) == metric_values(plain.metrics)


def test_event_id_fingerprint_is_the_same_in_every_process() -> None:
    # Python's hash() is salted per process; the changelogged id ring must not be.
    code = "from cxstream.engine import event_id_hash; print(event_id_hash('evt-1'))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for seed in ("1", "2")
    }

    assert seen == {str(event_id_hash("evt-1"))}
    assert 0 <= event_id_hash("evt-1") < 2**64


# -- late events ----------------------------------------------------------------------------


def test_partition_reports_an_event_older_than_the_watermark_as_late_and_changes_nothing() -> None:
    proc = processor()
    for e in [login("quiet", 0, 9), *daily("clock", 0, 13, hour=8)]:
        proc.process(e)
    before, watermark = snapshot(proc), proc.clock.watermark
    too_old = login("quiet", 13, 8, minute=-6)  # 6 minutes before the clock's last login: > lateness

    out = proc.process(too_old)

    assert out.late and not out.duplicate
    assert out.alerts == [] and out.metrics == []
    assert snapshot(proc) == before
    assert proc.clock.watermark == watermark


def test_an_event_just_within_lateness_is_applied() -> None:
    proc = processor()
    for e in [login("quiet", 0, 9), *daily("clock", 0, 13, hour=8)]:
        proc.process(e)

    out = proc.process(event("login", "quiet", 13, 8, second=-LATENESS))

    assert not out.late
    assert proc.store.get("quiet").last_activity_at == at(13, 8) - LATENESS  # type: ignore[union-attr]


def test_replay_counts_late_events_and_they_do_not_prevent_the_alert() -> None:
    late = login("quiet", 10, 9)  # would have kept "quiet" active, but arrives on day 16
    before = by_time([login("quiet", 0, 9), *daily("clock", 0, 16, hour=8)])
    events = [*before, late, *daily("clock", 17, 20, hour=8)]

    result = replay(events)

    assert result.late == 1
    assert result.late_events == [late]
    assert result.applied == len(events) - 1
    raised = [a for a in by_customer(result.alerts, "quiet") if a.state == "raised"]
    assert [a.decided_at for a in raised] == [at(14, 9)]


# -- the engine without a partition ---------------------------------------------------------


def test_engine_does_not_raise_a_new_customer_for_time_before_their_first_event() -> None:
    engine = Engine(EngineConfig())

    decision = engine.apply(None, login("newbie", 30, 9), watermark=at(30, 8))

    assert decision.alerts == []
    assert decision.state.episodes == {}


def test_engine_schedules_the_next_decision_at_the_deadline() -> None:
    engine = Engine(EngineConfig())
    st = engine.apply(None, login("c", 0, 9), None).state

    assert engine.due_at(st) == at(14, 9)
    assert engine.advance(st, at(14, 9) - 1) == []
    assert [a.state for a in engine.advance(st, at(14, 9))] == ["raised"]
    assert engine.due_at(st) == at(28, 9)


def test_advancing_twice_to_the_same_watermark_decides_nothing_more() -> None:
    engine = Engine(EngineConfig())
    st = engine.apply(None, login("c", 0, 9), None).state
    first = engine.advance(st, at(30))
    after_first = copy.deepcopy(st.to_dict())

    assert [a.state for a in first] == ["raised", "escalated"]
    assert engine.advance(st, at(30)) == []
    assert engine.advance(st, at(29)) == []
    assert st.to_dict() == after_first


def test_engine_counts_a_login_as_active_overall_and_in_its_segment() -> None:
    engine = Engine(EngineConfig(metric_windows_seconds=(3_600, 86_400)))

    decision = engine.apply(None, login("c", 0, 9, minute=30, segment="pro"), None)

    keys = {(d.metric, d.segment, d.window_start, d.window_seconds, d.numerator) for d in decision.metrics}
    assert keys == {
        ("active_customers", None, at(0, 9), 3_600, 1.0),
        ("active_customers", "pro", at(0, 9), 3_600, 1.0),
        ("active_customers", None, at(0), 86_400, 1.0),
        ("active_customers", "pro", at(0), 86_400, 1.0),
    }


# -- state as a value -----------------------------------------------------------------------


def busy_customer_events(n: int) -> list[Event]:
    """``n`` events of one customer, one every 7 minutes, with a 20-day silence in the middle."""
    kinds = ["login", "email.sent", "email.opened", "ticket.opened", "email.clicked", "email.bounced"]
    events = []
    for i in range(n):
        gap = 20 * DAY if i >= n // 2 else 0.0
        t_minutes = i * 7.0
        kind = kinds[i % len(kinds)]
        events.append(
            event(
                kind,
                "busy-customer-with-a-realistic-id-0123456789",
                0,
                minute=t_minutes,
                second=gap,
                event_id=f"evt-{i:08d}-0123456789abcdef",
                segment="enterprise-emea",
                message_id=f"m{i}" if kind.startswith("email.") else None,
                ticket_id=f"t{i}" if kind.startswith("ticket.") else None,
            )
        )
    return events


def rich_state() -> CustomerState:
    return CustomerState(
        customer_id="c-1",
        segment="pro",
        first_seen_at=at(0, 9, 0.5),
        max_seen_at=at(20, 12),
        settled_at=at(20, 11, 55),
        last_activity_at=at(0, 9),
        pending=[at(20, 12), at(20, 12, 1)],
        episodes={"inactivity": Episode(at(14, 9), 1, "critical")},
        recent_ids=[event_id_hash("a"), event_id_hash("b"), 2**64 - 1, 0],
        counted={3_600: [at(20, 12)], 86_400: [at(20)]},
        events=42,
    )


@pytest.mark.parametrize(
    ("encode", "decode"),
    [
        pytest.param(lambda d: d, lambda d: d, id="dict"),
        pytest.param(orjson.dumps, orjson.loads, id="orjson"),
        pytest.param(json.dumps, json.loads, id="json"),
    ],
)
def test_customer_state_survives_a_round_trip_through_its_changelog_form(
    encode: Callable[[Any], Any], decode: Callable[[Any], Any]
) -> None:
    st = rich_state()

    back = CustomerState.from_dict(decode(encode(st.to_dict())))

    assert back == st
    assert back.to_dict() == st.to_dict()


def test_a_fresh_customer_state_survives_a_round_trip() -> None:
    st = CustomerState("c-2")

    assert CustomerState.from_dict(orjson.loads(orjson.dumps(st.to_dict()))) == st


def test_a_restored_state_decides_exactly_like_the_original() -> None:
    engine = Engine(EngineConfig())
    proc = processor()
    for e in by_time([login("c", 0, 9), *daily("clock", 0, 20, hour=8)]):
        proc.process(e)
    original = proc.store.get("c")
    assert original is not None
    restored = CustomerState.from_dict(orjson.loads(orjson.dumps(original.to_dict())))

    assert engine.advance(restored, at(40)) == engine.advance(original, at(40))
    assert restored == original


def test_a_busy_customers_state_stays_under_2_kb_after_10k_events() -> None:
    proc = processor()
    largest = 0
    for e in busy_customer_events(10_000):
        out = proc.process(e)
        assert not out.late and not out.duplicate
        st = proc.store.get(e.customer_id)
        assert st is not None
        largest = max(largest, len(orjson.dumps(st.to_dict())))
    final = len(orjson.dumps(st.to_dict()))

    print(f"busy customer state after 10k events: {final} bytes (largest seen {largest} bytes)")
    assert st.events == 10_000
    assert largest < STATE_BYTES_LIMIT
    # The bound holds because each part is capped, not because this history was short:
    assert len(st.recent_ids) == EngineConfig().dedupe_ids
    assert all(len(starts) <= 2 for starts in st.counted.values())


def test_a_customer_with_an_open_episode_keeps_a_bounded_number_of_pending_activities() -> None:
    # A flood of activity right after a gap, faster than the watermark can pass it.
    proc = processor(EngineConfig(allowed_lateness_seconds=6 * HOUR))
    proc.process(login("c", 0, 9))
    for i in range(200):
        proc.process(event("login", "c", 20, 9, second=i * MINUTE / 4))
    st = proc.store.get("c")

    assert st is not None
    assert len(st.pending) <= MAX_PENDING + 1  # one may wait for the next settle
    assert len(orjson.dumps(st.to_dict())) < STATE_BYTES_LIMIT


def test_processing_never_reads_the_wall_clock() -> None:
    # Events from 1990 and from 2090 are judged by their own event time.
    for base in (at(-13_000), at(23_000)):
        events = [
            Event("q", "quiet", "login", base),
            *[Event(f"c{d}", "clock", "login", base + d * DAY - HOUR) for d in range(1, 16)],
        ]
        alerts = by_customer(replay(events).alerts, "quiet")
        assert [(a.state, a.decided_at) for a in alerts] == [("raised", base + 14 * DAY)]


def test_non_activity_events_do_not_touch_the_activity_clock() -> None:
    engine = Engine(EngineConfig())
    st = engine.apply(None, login("c", 0, 9), None).state
    for e in (sent("c", 1, 9), ticket("c", 2, 9, ticket_id="t")):
        st = engine.apply(st, e, None).state

    assert st.last_activity_at == at(0, 9)
    assert st.first_seen_at == at(0, 9)
    assert st.events == 3
