"""The engine and the partition processor alone: repeats, lateness, settling, state as a value."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from cxstream.engine.alerts import Alert
from cxstream.engine.config import ALERT_KINDS, EngineConfig, Profile
from cxstream.engine.engine import MAX_PENDING, Engine, event_id_hash
from cxstream.engine.events import Event
from cxstream.engine.partition import PartitionProcessor, StreamClock
from cxstream.engine.signals import TYPE_CODE
from cxstream.engine.state import CustomerState, DictStore, Episode
from tests.factories import (
    DAY,
    HOUR,
    MINUTE,
    at,
    by_customer,
    by_time,
    cancelled,
    daily,
    event,
    fixed_inactivity,
    login,
    metric_values,
    only,
    opened,
    reopened,
    replay,
    resolved,
    sent,
    story,
    survey,
    ticket,
)

LATENESS = EngineConfig().allowed_lateness_seconds
FIXED = fixed_inactivity()  # the old rule: raised 14 days after the last activity, escalated at 28
ALL_KINDS = EngineConfig(profile=Profile(alert_kinds=ALERT_KINDS))
STATE_BYTES_LIMIT = 2048  # STYLE.md: CustomerState ≤ 2 KB, whatever the history length


def processor(config: EngineConfig | None = None) -> PartitionProcessor:
    """A processor with every alert kind on (the default publishes only churn_risk)."""
    engine = Engine(config or ALL_KINDS)
    return PartitionProcessor(
        engine, DictStore(), StreamClock(engine.config.allowed_lateness_seconds)
    )


def snapshot(proc: PartitionProcessor) -> dict[str, object]:
    """Every customer's state as plain data (a deep copy)."""
    return {st.customer_id: copy.deepcopy(st.to_wire()) for st in proc.store.values()}


def decide(engine: Engine, st: CustomerState, watermark: float) -> list[Alert]:
    """The alerts of settling ``st`` up to ``watermark``."""
    alerts, _deltas = engine.advance(st, watermark)
    return alerts


def round_trip(st: CustomerState) -> CustomerState:
    """What a restarted worker reads back from the changelog."""
    return CustomerState.from_wire(orjson.loads(orjson.dumps(st.to_wire())))


# -- repeats --------------------------------------------------------------------------------


def test_engine_ignores_an_event_id_it_has_already_applied() -> None:
    engine = Engine(EngineConfig())
    first = engine.apply(None, login("c", 0, 9, segment="pro"), None)
    before = copy.deepcopy(first.state.to_wire())

    again = engine.apply(first.state, login("c", 0, 9, segment="pro"), at(0, 8))

    assert not first.duplicate
    assert again.duplicate
    assert again.alerts == [] and again.metrics == []
    assert again.state.to_wire() == before


def test_a_repeat_is_recognised_by_event_id_alone_not_by_content() -> None:
    engine = Engine(EngineConfig())
    st = engine.apply(None, login("c", 0, 9, event_id="e-1"), None).state

    again = engine.apply(st, opened("c", 3, 9, event_id="e-1"), None)
    engine.advance(st, at(5))

    assert again.duplicate
    assert st.events == 1
    assert st.last_activity_at == at(0, 9)
    assert st.em_opened == 0


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


def test_a_repeat_that_arrives_after_the_watermark_is_a_repeat_not_late() -> None:
    proc = processor()
    for e in [login("a", 0, 9), sent("a", 0, 10), login("b", 0, 11)]:
        proc.process(e)
    before = snapshot(proc)

    out = proc.process(sent("a", 0, 10))  # an hour behind the watermark

    assert out.duplicate and not out.late  # repeats are checked before lateness
    assert out.alerts == [] and out.metrics == []
    assert snapshot(proc) == before


def test_replaying_a_stream_with_repeats_gives_the_same_alerts_and_metrics() -> None:
    events = by_time([login("quiet", 0, 9), *daily("clock", 0, 40, hour=8), sent("quiet", 2, 9)])
    with_repeats = [e for e in events for _ in (range(2) if e.customer_id == "quiet" else range(1))]

    plain, repeated = replay(events), replay(with_repeats)

    assert repeated.duplicates == 2
    assert repeated.applied == plain.applied == len(events)
    assert by_customer(plain.alerts, "quiet") != []
    assert [a.to_dict() for a in repeated.alerts] == [a.to_dict() for a in plain.alerts]
    assert metric_values(repeated.metrics) == metric_values(plain.metrics)


def test_event_id_fingerprint_is_the_same_in_every_process() -> None:
    # Python's hash() is salted per process; the changelogged id ring must not be.
    code = "from cxstream.engine.engine import event_id_hash; print(event_id_hash('evt-1'))"
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
    assert 0 <= event_id_hash("evt-1") < 2**48


# -- late events ----------------------------------------------------------------------------


def test_partition_reports_an_event_older_than_the_watermark_as_late_and_changes_nothing() -> None:
    proc = processor()
    for e in [login("quiet", 0, 9), *daily("clock", 0, 13, hour=8)]:
        proc.process(e)
    before, watermark = snapshot(proc), proc.clock.watermark
    # 6 minutes before the clock's last login: more than the 5 minutes of lateness.
    too_old = login("quiet", 13, 8, minute=-6)

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
    proc.process(login("clock", 14, 8))  # the watermark passes it: it is settled

    quiet = proc.store.get("quiet")
    assert not out.late
    assert quiet is not None and quiet.last_activity_at == at(13, 8) - LATENESS


def test_replay_counts_late_events_and_they_do_not_prevent_the_alert() -> None:
    late = login("quiet", 10, 9)  # would have kept "quiet" active, but arrives on day 16
    before = by_time([login("quiet", 0, 9), *daily("clock", 0, 16, hour=8)])
    events = [*before, late, *daily("clock", 17, 20, hour=8)]

    result = replay(events, FIXED)

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


def test_engine_queues_events_until_the_watermark_passes_them() -> None:
    engine = Engine(EngineConfig())
    st = engine.apply(None, login("c", 0, 9), None).state

    assert [row[0] for row in st.pending] == [at(0, 9)]
    assert st.last_activity_at is None  # not settled yet
    assert engine.advance(st, at(0, 9) - 1) == ([], []) and st.pending != []
    # Settled strictly before the watermark: an event exactly at it may still come.
    assert engine.advance(st, at(0, 9)) == ([], []) and st.pending != []
    engine.advance(st, at(0, 9) + 1)
    assert st.pending == [] and st.last_activity_at == at(0, 9)


def test_engine_settles_pending_events_in_event_time_order_whatever_the_arrival_order() -> None:
    events = [
        ticket("c", 0, 9, ticket_id="t1"),
        resolved("c", 1, 9, ticket_id="t1"),
        reopened("c", 2, 9, ticket_id="t1"),
    ]
    engine = Engine(only("support_friction"))
    decided = []
    for order in (events, events[::-1], [events[2], events[0], events[1]]):
        st = None
        for e in order:
            st = engine.apply(st, e, None).state
        assert st is not None
        assert [row[0] for row in st.pending] == [e.occurred_at for e in events]
        decided.append(story(decide(engine, st, at(3))))

    assert decided[0] == decided[1] == decided[2]
    # Stamped with the event time of the reopen, not the watermark that settled it.
    assert decided[0] == [("support_friction", "raised", "warning", at(2, 9), 0)]


def test_engine_schedules_the_next_decision_at_the_deadline() -> None:
    engine = Engine(FIXED)
    st = engine.apply(None, login("c", 0, 9), None).state

    assert engine.due_at(st) == at(0, 9)  # the pending login itself
    assert decide(engine, st, at(0, 9) + 1) == []
    assert engine.due_at(st) == at(14, 9)
    # Decided once the watermark is past the deadline (an event exactly at it may come).
    assert decide(engine, st, at(14, 9)) == []
    assert [a.state for a in decide(engine, st, at(14, 9) + 1)] == ["raised"]
    assert engine.due_at(st) == at(28, 9)


def test_a_ticket_going_overdue_is_a_deadline_too() -> None:
    engine = Engine(only("support_friction"))
    st = engine.apply(None, ticket("c", 0, 10, ticket_id="t1"), None).state
    engine.advance(st, at(0, 10) + 1)

    assert engine.due_at(st) == at(5, 10)  # before the inactivity line (8 days)


def test_advancing_twice_to_the_same_watermark_decides_nothing_more() -> None:
    engine = Engine(FIXED)
    st = engine.apply(None, login("c", 0, 9), None).state
    first = decide(engine, st, at(30))
    after_first = copy.deepcopy(st.to_wire())

    assert [a.state for a in first] == ["raised", "escalated"]
    assert engine.advance(st, at(30)) == ([], [])
    assert engine.advance(st, at(29)) == ([], [])
    assert st.to_wire() == after_first


def test_engine_counts_a_login_as_active_overall_and_in_its_segment_once_it_settles() -> None:
    engine = Engine(EngineConfig(metric_windows_seconds=(3_600, 86_400), rolling_windows_days=()))

    decision = engine.apply(None, login("c", 0, 9, minute=30, segment="pro"), None)
    _alerts, deltas = engine.advance(decision.state, at(0, 9, 30) + 1)

    assert decision.metrics == []  # counted in event-time order, as it settles
    keys = {(d.metric, d.segment, d.window_start, d.window_seconds, d.numerator) for d in deltas}
    assert keys == {
        ("active_customers", None, at(0, 9), 3_600, 1.0),
        ("active_customers", "pro", at(0, 9), 3_600, 1.0),
        ("active_customers", None, at(0), 86_400, 1.0),
        ("active_customers", "pro", at(0), 86_400, 1.0),
    }


def test_a_segment_profile_decides_for_the_customers_of_that_segment() -> None:
    config = fixed_inactivity(
        segments={"pro": Profile(inactivity_min_days=7, alert_kinds=("inactivity",))}
    )
    engine = Engine(config)
    pro = engine.apply(None, login("p", 0, 9, segment="pro"), None).state
    other = engine.apply(None, login("o", 0, 9, segment="free"), None).state

    # A new customer's line is 4 x the prior gap of 2 days in "pro"; 14 days elsewhere.
    assert [a.decided_at for a in decide(engine, pro, at(20))] == [at(8, 9), at(16, 9)]
    assert [a.decided_at for a in decide(engine, other, at(20))] == [at(14, 9)]


# -- state as a value -----------------------------------------------------------------------


def rich_state() -> CustomerState:
    """A customer who has done a bit of everything, with events still pending."""
    engine = Engine(EngineConfig())
    history = by_time(
        [
            *daily("c-1", 0, 20, hour=9, segment="pro"),
            *[sent("c-1", d, 8, message_id=f"m{d}") for d in range(0, 20, 2)],
            bounced_or_open("c-1", 3),
            ticket("c-1", 4, 10, ticket_id="t1"),
            reopened("c-1", 6, 10, ticket_id="t1"),
            ticket("c-1", 7, 10, ticket_id="t2"),
            survey("c-1", 8, 10, survey="nps", score=9),
            survey("c-1", 12, 10, survey="nps", score=4),
            survey("c-1", 13, 10, survey="csat", score=2),
            cancelled("c-1", 15, 10),
        ]
    )
    st = None
    for e in history:
        st = engine.apply(st, e, e.occurred_at - LATENESS).state
    assert st is not None
    st = engine.apply(st, login("c-1", 21, 9), at(20, 12)).state
    st.episodes["inactivity"] = Episode(at(14, 9), 1, "critical")
    assert st.pending and st.ring and st.feedback and st.open_tickets and st.score is not None
    return st


def bounced_or_open(customer_id: str, day: int) -> Event:
    return event("email.bounced", customer_id, day, 8, 5, message_id=f"m{day}")


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

    back = CustomerState.from_wire(decode(encode(st.to_wire())))

    assert back == st
    assert back.to_wire() == st.to_wire()


def test_a_fresh_customer_state_survives_a_round_trip() -> None:
    st = CustomerState("c-2")

    assert round_trip(st) == st


def test_a_state_with_a_very_busy_day_survives_a_round_trip() -> None:
    engine = Engine(EngineConfig())
    st = None
    for i in range(300):
        st = engine.apply(st, event("login", "bot", 0, 9, second=i), None).state
    assert st is not None
    engine.advance(st, at(1))

    assert round_trip(st) == st


def test_a_restored_state_decides_exactly_like_the_original() -> None:
    engine = Engine(ALL_KINDS)
    proc = processor()
    for e in by_time(
        [
            login("c", 0, 9),
            sent("c", 1, 9),
            ticket("c", 2, 9, ticket_id="t1"),
            survey("c", 3, 9, survey="nps", score=5),
            *daily("clock", 0, 5, hour=8),
        ]
    ):
        proc.process(e)
    original = proc.store.get("c")
    assert original is not None
    restored = round_trip(original)

    decided = engine.advance(original, at(40))
    assert engine.advance(restored, at(40)) == decided
    assert decided[0] and decided[1]
    assert {a.kind for a in decided[0]} >= {"inactivity", "support_friction"}
    assert restored == original


def busy_customer_events(n: int) -> list[Event]:
    """``n`` events of one customer, one every 7 minutes, with a 20-day silence in the middle."""
    kinds = [
        "login",
        "email.sent",
        "email.opened",
        "ticket.opened",
        "email.clicked",
        "email.bounced",
    ]
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


def test_a_busy_customers_state_stays_under_2_kb_after_10k_events() -> None:
    proc = processor(FIXED)
    largest, states = 0, []
    for e in busy_customer_events(10_000):
        out = proc.process(e)
        assert not out.late and not out.duplicate
        states += [a.state for a in out.alerts]
        st = proc.store.get(e.customer_id)
        assert st is not None
        largest = max(largest, len(orjson.dumps(st.to_wire())))
    busy = proc.store.get(e.customer_id)
    assert busy is not None
    final = len(orjson.dumps(busy.to_wire()))

    print(f"busy customer state after 10k events: {final} bytes (largest seen {largest} bytes)")
    assert busy.events == 10_000
    assert states == ["raised", "resolved"]  # the 20-day silence in the middle
    # The bound holds because each part is capped, not because this history was short:
    assert len(busy.recent_ids) == EngineConfig().dedupe_ids
    assert len(busy.counted) == len(EngineConfig().metric_windows_seconds)
    assert largest < STATE_BYTES_LIMIT


def year_of_mixed_events(customer_id: str, n: int, seed: int = 7) -> list[Event]:
    """``n`` events of every type over a year, in bursts (a realistic busy account)."""
    rnd = random.Random(seed)
    surveys = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
    types = [
        *["login"] * 8,
        *["email.sent"] * 4,
        *["email.opened"] * 2,
        "email.clicked",
        "email.bounced",
        "email.unsubscribed",
        *["ticket.opened", "ticket.replied", "ticket.resolved", "ticket.reopened"],
        "survey.response",
        "subscription.trial_started",
        "subscription.converted",
        "subscription.renewed",
        "subscription.cancelled",
    ]
    events = []
    for i in range(n):
        kind = rnd.choice(types)
        fields: dict[str, Any] = {}
        if kind.startswith("ticket."):
            fields["ticket_id"] = f"ticket-{rnd.randrange(40):04d}"
        elif kind.startswith("email."):
            fields["message_id"] = f"msg-{i:08d}"
        elif kind == "survey.response":
            name = rnd.choice(sorted(surveys))
            fields.update(survey=name, score=rnd.randint(*surveys[name]))
        elif kind.startswith("subscription."):
            fields.update(plan="enterprise", mrr=499.0)
        events.append(
            event(
                kind,
                customer_id,
                365 * i / n,
                event_id=f"evt-{i:08d}-0123456789abcdef",
                segment="enterprise-emea",
                **fields,
            )
        )
    return events


def test_a_busy_customers_state_stays_under_2_kb_after_a_year_of_every_event_type() -> None:
    proc = processor()
    customer_id = "busy-customer-with-a-realistic-id-0123456789"
    largest, alerts = 0, 0
    for e in year_of_mixed_events(customer_id, 10_000):
        out = proc.process(e)
        assert not out.late and not out.duplicate
        alerts += len(out.alerts)
        st = proc.store.get(customer_id)
        assert st is not None
        largest = max(largest, len(orjson.dumps(st.to_wire())))
    busy = proc.store.get(customer_id)
    assert busy is not None
    final = len(orjson.dumps(busy.to_wire()))

    print(
        f"busy customer state after a year of 10k mixed events: {final} bytes "
        f"(largest seen {largest} bytes, {alerts} alerts)"
    )
    assert busy.events == 10_000
    assert alerts > 0
    assert len(busy.recent_ids) == EngineConfig().dedupe_ids
    capped = (busy.open_tickets, busy.tickets, busy.reopens, busy.repeats)
    assert max(len(part) for part in capped) <= 8
    assert len(busy.score_hist) <= EngineConfig().profile.score_drop_days + 1
    assert largest < STATE_BYTES_LIMIT


def flooded() -> CustomerState:
    """A flood of activity right after a gap, faster than the watermark can pass it."""
    proc = processor(EngineConfig(allowed_lateness_seconds=6 * HOUR))
    proc.process(login("c", 0, 9))
    for i in range(200):
        proc.process(event("login", "c", 20, 9, second=i * MINUTE / 4))
    st = proc.store.get("c")
    assert st is not None
    return st


def test_a_flooded_customer_keeps_a_bounded_number_of_pending_events() -> None:
    st = flooded()

    assert len(st.pending) <= MAX_PENDING
    assert st.events == 201


# Events within the allowed lateness wait in ``pending`` until the watermark passes
# them: a transient queue, bounded by MAX_PENDING rows (~45 B each), not by history.
PENDING_ROW_BYTES = 48


def test_a_flooded_customers_state_is_bounded_by_the_pending_cap() -> None:
    st = flooded()
    size = len(orjson.dumps(st.to_wire()))
    settled_part = size - len(orjson.dumps(st.pending))

    print(f"flooded customer state: {size} bytes ({len(st.pending)} pending events)")
    assert len(st.pending) == 200
    assert settled_part < STATE_BYTES_LIMIT
    assert size < STATE_BYTES_LIMIT + MAX_PENDING * PENDING_ROW_BYTES


def test_processing_never_reads_the_wall_clock() -> None:
    # Events from 1990 and from 2090 are judged by their own event time.
    for base in (at(-13_000), at(23_000)):
        events = [
            Event("q", "quiet", "login", base),
            *[Event(f"c{d}", "clock", "login", base + d * DAY - HOUR) for d in range(1, 16)],
        ]
        alerts = by_customer(replay(events, FIXED).alerts, "quiet")
        assert [(a.state, a.decided_at) for a in alerts] == [("raised", base + 14 * DAY)]


def test_non_activity_events_do_not_touch_the_activity_clock() -> None:
    engine = Engine(EngineConfig())
    st = engine.apply(None, login("c", 0, 9), None).state
    for e in (sent("c", 1, 9), ticket("c", 2, 9, ticket_id="t")):
        st = engine.apply(st, e, None).state
    engine.advance(st, at(3))

    assert st.last_activity_at == at(0, 9)
    assert st.first_seen_at == at(0, 9)
    assert st.events == 3
    assert [row[2] for row in st.pending] == []
    assert TYPE_CODE["login"] != TYPE_CODE["email.sent"]
