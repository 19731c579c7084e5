"""Stream time per partition, the sweep, and recovery from the state store."""

from __future__ import annotations

import math
from typing import Any

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

# -- StreamClock: inputs merged by publish time ------------------------------------------

# Steps: ("read", source, published_at, occurred_at) or ("idle", source, published_before).
Step = tuple[Any, ...]
DAY_S = 86_400.0
P0 = 100_000.0  # publish times: after every event time below, as in a live stream


@pytest.mark.parametrize(
    ("sources", "steps", "expected"),
    [
        pytest.param(["logins"], [("read", "logins", P0 + 10, 1_000)], -math.inf,
                     id="a-burst-may-go-on-at-the-same-publish-time"),
        pytest.param(["logins"], [("read", "logins", P0 + 10, 1_000),
                                  ("idle", "logins", P0 + 11)], 700,
                     id="one-input-minus-lateness"),
        pytest.param(["logins"], [("read", "logins", P0 + 10, 1_000),
                                  ("read", "logins", P0 + 11, 900),
                                  ("idle", "logins", P0 + 12)],
                     700, id="older-event-does-not-move-it-back"),
        pytest.param(["logins"], [("read", "logins", P0 + 10, 1_000),
                                  ("read", "logins", P0 + 11, 2_000),
                                  ("idle", "logins", P0 + 12)],
                     1_700, id="newer-event-moves-it-on"),
        pytest.param(["logins", "emails"], [("read", "logins", P0 + 10, 1_000),
                                            ("idle", "logins", P0 + 11)], -math.inf,
                     id="held-until-every-input-has-reported"),
        pytest.param(["logins", "emails"],
                     [("read", "logins", P0 + 10, 1_000), ("idle", "logins", P0 + 11),
                      ("idle", "emails", P0 + 9)], -math.inf,
                     id="an-input-idle-only-before-it-still-holds-it"),
        pytest.param(["logins", "emails"],
                     [("read", "logins", P0 + 10, 1_000), ("idle", "logins", P0 + 11),
                      ("idle", "emails", P0 + 11)], 700,
                     id="released-once-every-input-is-past-its-publish-time"),
        pytest.param(["logins", "emails"],
                     [("read", "logins", P0 + 10, 5_000), ("read", "emails", P0 + 8, 1_000),
                      ("read", "emails", P0 + 12, 1_100)], 700,
                     id="a-later-published-event-waits-for-the-slower-input"),
        pytest.param(["logins", "emails"],
                     [("read", "logins", P0 + 10, 5_000), ("read", "emails", P0 + 8, 1_000),
                      ("read", "emails", P0 + 12, 1_100), ("idle", "logins", P0 + 13)], 4_700,
                     id="counts-once-the-slower-input-passes-it"),
        pytest.param(["logins"], [("read", "logins", P0 + 10, P0 + 10 + 3_600),
                                  ("idle", "logins", P0 + 11)], P0 + 10,
                     id="a-future-dated-event-counts-at-most-publish-time-plus-lateness"),
    ],
)
def test_stream_clock_watermark(sources: list[str], steps: list[Step], expected: float) -> None:
    clock = StreamClock(LATENESS, sources)

    for kind, source, *times in steps:
        if kind == "read":
            clock.observe(source, times[0], times[1])
        else:
            clock.idle(source, times[0])
        clock.advance()

    assert clock.watermark == expected


def test_stream_clock_starts_at_its_floor_and_never_goes_below_it() -> None:
    assert StreamClock(LATENESS).watermark == -math.inf

    clock = StreamClock(LATENESS, floor=5_000)
    clock.observe("logins", P0 + 1, 1_000)
    clock.idle("logins", P0 + 2)
    assert clock.advance() == 5_000
    clock.observe("logins", P0 + 2, 6_000)
    clock.idle("logins", P0 + 3)
    assert clock.advance() == 5_700


def test_stream_clock_watermark_is_monotonic_whatever_the_inputs() -> None:
    clock = StreamClock(LATENESS, ["a", "b", "c"])
    marks = []
    for kind, source, *times in [
        ("read", "a", P0 + 1, 10_000), ("read", "b", P0 + 2, 1_000), ("idle", "c", P0 + 3),
        ("read", "a", P0 + 4, 20_000), ("read", "b", P0 + 5, 15_000), ("read", "c", P0 + 6, 900),
        ("idle", "a", P0 + 9), ("idle", "b", P0 + 9), ("read", "c", P0 + 9, 500),
    ]:
        if kind == "read":
            clock.observe(source, times[0], times[1])
        else:
            clock.idle(source, times[0])
        marks.append(clock.advance())

    assert marks == sorted(marks)
    assert marks[-1] == 20_000 - LATENESS


def test_a_saved_clock_keeps_what_it_held() -> None:
    clock = StreamClock(LATENESS, ["logins", "emails"])
    clock.observe("logins", P0 + 10, 5_000)
    clock.idle("emails", P0 + 5)
    clock.advance()

    again = StreamClock.from_dict(orjson.loads(orjson.dumps(clock.to_dict())), LATENESS)
    again.idle("emails", P0 + 11)
    again.idle("logins", P0 + 11)

    assert clock.held == again.held == 1
    assert again.advance() == 5_000 - LATENESS


def test_a_clock_saved_in_an_older_format_keeps_only_its_watermark() -> None:
    old = {"w": 1_000.0, "t": {"logins": 1_300.0}, "c": {"logins": True}}

    clock = StreamClock.from_dict(old, LATENESS)

    assert clock.watermark == 1_000.0
    assert clock.held == 0


def test_a_long_skew_between_inputs_holds_a_bounded_number_of_buckets() -> None:
    clock = StreamClock(LATENESS, ["logins", "emails"])
    clock.idle("emails", P0)
    for i in range(100_000):  # a day of logins published while emails stay behind
        clock.observe("logins", P0 + i * 0.864, 1_000 + i)
        clock.advance()

    assert 0 < clock.held <= 256
    # Merged buckets end later than their events: released once both inputs pass them.
    clock.idle("emails", P0 + 2 * DAY_S)
    clock.idle("logins", P0 + 2 * DAY_S)
    clock.advance()
    assert clock.held == 0
    assert clock.stream_time == 1_000 + 99_999


def test_the_topic_read_first_cannot_make_another_topics_on_time_events_late() -> None:
    # A running worker: tickets happen to be read before the logins published earlier.
    proc = PartitionProcessor(Engine(EngineConfig()), DictStore(),
                              StreamClock(LATENESS, ["logins", "tickets"]))
    proc.process(ticket("a", 10, 9, ticket_id="t1"), source="tickets",
                 published_at=at(10, 9, 1))

    out = proc.process(login("b", 0, 9), source="logins", published_at=at(10, 9))

    assert not out.late
    assert proc.clock.held == 2  # until both inputs are known past the ticket's publish time
    proc.idle("logins", at(10, 9, 2))
    proc.idle("tickets", at(10, 9, 2))
    proc.advance()
    assert proc.clock.watermark == at(10, 9) - LATENESS


def test_an_event_published_after_the_stream_moved_on_is_late() -> None:
    proc = PartitionProcessor(Engine(EngineConfig()), DictStore(),
                              StreamClock(LATENESS, ["logins", "emails"]))
    proc.process(login("a", 10, 9), source="logins", published_at=at(10, 9))
    proc.idle("emails", at(10, 10))
    proc.idle("logins", at(10, 10))
    proc.advance()

    out = proc.process(sent("b", 0, 9), source="emails", published_at=at(10, 11))

    assert out.late
    assert proc.store.get("b") is None


def test_an_event_dated_after_its_publish_time_plus_the_limit_is_future_and_moves_nothing() -> None:
    config = EngineConfig(max_future_seconds=3_600)
    proc = PartitionProcessor(Engine(config), DictStore(), StreamClock(LATENESS))
    proc.process(login("a", 0, 9), published_at=at(0, 9))

    out = proc.process(login("b", 0, 11), published_at=at(0, 9, 59))
    proc.idle("input", at(0, 10))
    proc.advance()

    assert out.future
    assert proc.store.get("b") is None
    assert proc.clock.watermark == at(0, 9) - LATENESS


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


def test_an_input_whose_last_records_are_all_repeats_still_moves_on() -> None:
    # A new owner re-reads an uncommitted tail its predecessor already applied: for a
    # small input every record up to its end is a repeat. It must still report.
    engine = Engine(EngineConfig())
    before = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    before.process(sent("b", 0, 9), source="emails", published_at=at(0, 9), position=0)
    after = PartitionProcessor.restore(engine, changelog_copy(before.store))
    after.clock.expect("emails")
    after.clock.expect("logins")

    again = after.process(sent("b", 0, 9), source="emails", published_at=at(0, 9), position=0)
    after.process(login("a", 10, 9), source="logins", published_at=at(10, 9), position=0)
    after.idle("emails", at(10, 9, 1))
    after.idle("logins", at(10, 9, 1))
    after.advance()

    assert again.duplicate
    assert after.clock.watermark == at(10, 9) - LATENESS
