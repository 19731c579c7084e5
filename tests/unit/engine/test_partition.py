"""Stream time per partition, the sweep, and recovery from the state store."""

from __future__ import annotations

import math

import orjson
import pytest

from cxstream.engine.alerts import Alert
from cxstream.engine.config import EngineConfig
from cxstream.engine.engine import Engine, event_id_hash
from cxstream.engine.events import Event
from cxstream.engine.partition import PartitionProcessor, StreamClock
from cxstream.engine.replayer import Replayer
from cxstream.engine.state import CustomerState, DictStore, StateStore
from tests.factories import (
    alert_set,
    at,
    by_customer,
    by_time,
    daily,
    event,
    fixed_inactivity,
    login,
    only,
    opened,
    replay,
    sent,
    story,
    ticket,
)

LATENESS = 300.0
FIXED = fixed_inactivity()  # the old rule: raised 14 days after the last activity, escalated at 28

# -- StreamClock ----------------------------------------------------------------------------

Obs = tuple[str, float, bool]  # (source, occurred_at, caught_up)


@pytest.mark.parametrize(
    ("observations", "expected"),
    [
        pytest.param([("logins", 1_000, False)], 700, id="one-input-minus-lateness"),
        pytest.param(
            [("logins", 1_000, False), ("logins", 900, False)],
            700,
            id="older-event-does-not-move-it-back",
        ),
        pytest.param(
            [("logins", 1_000, False), ("logins", 2_000, False)],
            1_700,
            id="newer-event-moves-it-on",
        ),
        pytest.param(
            [("logins", 5_000, False), ("emails", 2_000, False)],
            4_700,
            id="a-new-slow-input-cannot-move-it-back",
        ),
        pytest.param(
            [("emails", 1_000, False), ("logins", 3_000, False)],
            700,
            id="min-over-inputs-with-a-backlog",
        ),
        pytest.param(
            [("emails", 1_000, False), ("logins", 3_000, False), ("emails", 1_000, True)],
            2_700,
            id="a-caught-up-input-does-not-hold-it-back",
        ),
        pytest.param(
            [("logins", 1_000, True), ("emails", 2_000, True), ("tickets", 1_500, True)],
            1_700,
            id="max-over-all-when-all-caught-up",
        ),
        pytest.param(
            [("logins", 3_000, True), ("emails", 2_000, True), ("emails", 2_100, False)],
            2_700,
            id="stays-when-an-input-falls-behind-again",
        ),
    ],
)
def test_stream_clock_watermark(observations: list[Obs], expected: float) -> None:
    clock = StreamClock(LATENESS)

    for source, t, caught_up in observations:
        clock.observe(source, t, caught_up)

    assert clock.watermark == expected


def test_stream_clock_starts_at_its_floor_and_never_goes_below_it() -> None:
    assert StreamClock(LATENESS).watermark == -math.inf

    clock = StreamClock(LATENESS, floor=5_000)

    assert clock.observe("logins", 1_000) == 5_000
    assert clock.observe("logins", 6_000) == 5_700


def test_stream_clock_watermark_is_monotonic_whatever_the_inputs() -> None:
    clock = StreamClock(LATENESS)
    marks = [
        clock.observe(source, t, caught_up)
        for source, t, caught_up in [
            ("a", 10_000, True),
            ("b", 1_000, False),
            ("c", 500, False),
            ("a", 20_000, False),
            ("b", 15_000, True),
            ("c", 900, True),
        ]
    ]

    assert marks == sorted(marks)


def test_a_slow_input_with_a_backlog_keeps_its_events_from_becoming_late() -> None:
    proc = PartitionProcessor(Engine(EngineConfig()), DictStore(), StreamClock(LATENESS))
    proc.process(sent("b", 0, 9), source="emails")  # the emails topic is 10 days behind
    proc.process(login("a", 10, 9), source="logins")

    out = proc.process(opened("b", 0, 10), source="emails")

    assert not out.late
    assert proc.clock.watermark == at(0, 10) - LATENESS


def test_an_input_held_before_it_delivers_keeps_its_first_events_from_becoming_late() -> None:
    proc = PartitionProcessor(Engine(EngineConfig()), DictStore(), StreamClock(LATENESS))
    proc.clock.hold("emails")  # the worker knows the emails topic has a backlog
    proc.process(login("a", 10, 9), source="logins")  # logins happen to be read first

    out = proc.process(sent("b", 0, 9), source="emails")

    assert not out.late
    assert proc.clock.watermark == at(0, 9) - LATENESS


def test_holding_an_input_that_already_delivered_changes_nothing() -> None:
    clock = StreamClock(LATENESS)
    clock.observe("emails", 1_000)
    clock.observe("logins", 5_000, caught_up=True)

    clock.hold("emails")
    clock.hold("logins")

    assert clock.observe("emails", 2_000) == 1_700


def test_without_a_hold_the_first_events_of_an_unseen_input_can_be_late() -> None:
    # The clock only knows inputs it has seen; the worker must hold() the others.
    proc = PartitionProcessor(Engine(EngineConfig()), DictStore(), StreamClock(LATENESS))
    proc.process(login("a", 10, 9), source="logins")

    assert proc.process(sent("b", 0, 9), source="emails").late


# -- stream time is per partition -----------------------------------------------------------


def test_stream_time_is_per_partition() -> None:
    # "quiet" (partition 1) is silent for 30 days, but nobody else is in partition 1,
    # so its stream time never passes the deadline; "clock" lives in partition 0.
    events = by_time([login("quiet-1", 0, 9), *daily("clock-0", 0, 30, hour=8)])

    alone = replay(events, FIXED, partitions=2, partition_of=lambda cid: int(cid[-1]) % 2)
    together = replay(events, FIXED)

    assert by_customer(alone.alerts, "quiet-1") == []
    assert [a.state for a in by_customer(together.alerts, "quiet-1")] == ["raised", "escalated"]


@pytest.mark.parametrize(
    ("partitions", "partition_of"),
    [(0, None), (2, None)],
    ids=["no-partitions", "several-partitions-without-a-partitioner"],
)
def test_replayer_rejects_an_impossible_partitioning(partitions: int, partition_of: None) -> None:
    with pytest.raises(ValueError):
        Replayer(Engine(EngineConfig()), partitions, partition_of)


# -- recovery -------------------------------------------------------------------------------


def recovery_story() -> list[Event]:
    """Several customers over 50 days, in event-time order (so nothing is late)."""
    return by_time(
        [
            *daily("clock", 0, 50, hour=8),  # moves stream time
            login("quiet", 0, 9),  # silent: raised day 14, escalated day 28
            login("comeback", 0, 9, segment="pro"),  # silent, back on day 20, silent again
            login("comeback", 20, 12, segment="pro"),
            *[login("regular", d, 10) for d in range(0, 51, 5)],  # never alerted
            # first seen on day 6, and only ever sent emails
            *[sent("newbie", d, 11, message_id=f"m{d}") for d in range(6, 50, 4)],
            opened("late-opener", 0, 13),
            ticket("late-opener", 10, 13, ticket_id="t1"),
            opened("late-opener", 31, 13),  # back after escalation
            login("flapper", 0, 14),
            login("flapper", 15, 14),
            login("flapper", 30, 14),
            login("flapper", 45, 14),
        ]
    )


def run_processor(proc: PartitionProcessor, events: list[Event]) -> list[Alert]:
    alerts: list[Alert] = []
    for e in events:
        out = proc.process(e)
        assert not out.late, e
        alerts.extend(out.alerts)
    return alerts


def changelog_copy(store: StateStore) -> DictStore:
    """What a restarted worker reads back: every state through its serialized form."""
    copy = DictStore()
    for st in store.values():
        copy.put(CustomerState.from_wire(orjson.loads(orjson.dumps(st.to_wire()))))
    return copy


@pytest.mark.parametrize("split", [1, 7, 25, 40, 60, 82])
def test_a_processor_restored_from_its_store_continues_like_an_uninterrupted_one(
    split: int,
) -> None:
    engine = Engine(EngineConfig())
    events = recovery_story()
    first, second = events[:split], events[split:]

    uninterrupted = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    expected = run_processor(uninterrupted, events)

    before_crash = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    alerts = run_processor(before_crash, first)
    restored = PartitionProcessor.restore(engine, changelog_copy(before_crash.store))
    # Never ahead of where it was, so nothing still to come becomes late.
    assert restored.clock.watermark <= before_crash.clock.watermark
    alerts += run_processor(restored, second)

    assert {a.customer_id for a in expected} >= {
        "quiet",
        "comeback",
        "newbie",
        "late-opener",
        "flapper",
    }
    assert alert_set(alerts) == alert_set(expected)
    assert activity_and_episodes(restored.store) == activity_and_episodes(uninterrupted.store)


def activity_and_episodes(store: StateStore) -> dict[str, tuple[object, ...]]:
    return {
        st.customer_id: (st.first_seen_at, st.last_activity_at, st.pending, st.episodes, st.events)
        for st in store.values()
    }


def test_events_redelivered_after_a_restart_are_repeats_not_late() -> None:
    # At-least-once delivery: the worker crashed after its state was changelogged but
    # before the input offsets were committed, so the tail of the input comes again.
    engine = Engine(EngineConfig())
    events = recovery_story()
    before_crash = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    run_processor(before_crash, events[:40])
    restored = PartitionProcessor.restore(engine, changelog_copy(before_crash.store))

    redelivered = [restored.process(e) for e in events[30:40]]

    assert [(o.duplicate, o.late) for o in redelivered] == [(True, False)] * 10
    assert all(o.alerts == [] and o.metrics == [] for o in redelivered)


def test_a_restored_processor_raises_a_silent_customer_without_any_event_of_theirs() -> None:
    engine = Engine(FIXED)
    before_crash = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    run_processor(before_crash, by_time([login("quiet", 0, 9), *daily("clock", 0, 10, hour=8)]))

    restored = PartitionProcessor.restore(engine, changelog_copy(before_crash.store))
    alerts = run_processor(restored, daily("clock", 11, 20, hour=8))

    assert [(a.state, a.decided_at) for a in by_customer(alerts, "quiet")] == [
        ("raised", at(14, 9))
    ]


def test_restore_of_an_empty_store_starts_from_nothing() -> None:
    restored = PartitionProcessor.restore(Engine(EngineConfig()), DictStore())

    assert restored.clock.watermark == -math.inf
    assert len(restored) == 0


def test_a_redelivered_message_is_a_repeat_by_its_position_even_when_its_id_is_forgotten() -> None:
    # The recent-ids ring holds a few ids; the input position covers any older redelivery.
    engine = Engine(EngineConfig(dedupe_ids=2))
    proc = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    events = [login("c", 0, 9, m) for m in range(4)]
    for offset, e in enumerate(events):
        assert not proc.process(e, source="logins", position=offset).duplicate

    state = proc.store.get("c")
    assert state is not None and event_id_hash(events[0].event_id) not in state.recent_ids

    again = proc.process(events[0], source="logins", position=0)

    assert again.duplicate and not again.late
    assert again.alerts == [] and again.metrics == []


def test_an_event_exactly_at_the_watermark_is_settled_as_if_it_had_arrived_in_order() -> None:
    # Two events of one customer at the same instant; in pending they settle in fingerprint
    # order (here the resolve first, so the open ticket stays open and goes overdue).
    opens = ticket("c", 0, 9, ticket_id="t1", event_id="open")
    closes = event("ticket.resolved", "c", 0, 9, ticket_id="t1", event_id="close")
    assert event_id_hash("close") < event_id_hash("open")
    moves_watermark_to_them = event("login", "clock", 0, 9, second=LATENESS)
    tail = daily("clock", 1, 8, hour=10)
    config = only("support_friction")

    in_order = replay([opens, closes, moves_watermark_to_them, *tail], config)
    at_watermark = replay([opens, moves_watermark_to_them, closes, *tail], config)

    assert at_watermark.late == in_order.late == 0
    assert story(by_customer(at_watermark.alerts, "c")) == story(by_customer(in_order.alerts, "c"))


def test_a_held_input_whose_last_records_are_all_repeats_still_releases_the_watermark() -> None:
    # A new owner re-reads an uncommitted tail its predecessor already applied: for a
    # small input every record up to its end is a repeat. Its hold must still end.
    engine = Engine(EngineConfig())
    before = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    before.process(sent("b", 0, 9), source="emails", position=0)
    after = PartitionProcessor.restore(engine, changelog_copy(before.store))
    after.clock.hold("emails")  # the probe saw a backlog: nothing committed
    after.clock.hold("logins")

    again = after.process(sent("b", 0, 9), source="emails", caught_up=True, position=0)
    after.process(login("a", 10, 9), source="logins", caught_up=True, position=0)

    assert again.duplicate
    assert after.clock.watermark == at(10, 9) - LATENESS
