"""Properties of the engine over generated streams: a few customers, ~60 days, mixed events.

Each stream is in event-time order unless a property says otherwise. The lateness
is six hours here so that the reordering properties reorder a lot.
"""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

import orjson

from cxstream.alerts import Alert
from cxstream.config import EngineConfig, InactivityRule
from cxstream.engine import Engine
from cxstream.events import Event
from cxstream.inactivity import MAX_PENDING
from cxstream.partition import PartitionProcessor, StreamClock
from cxstream.state import CustomerState, DictStore
from tests.factories import DAY, HOUR, alert_set, at, by_customer, by_time, metric_values, replay

LATENESS = 6 * HOUR
CONFIG = EngineConfig(
    allowed_lateness_seconds=LATENESS,
    segment_inactivity={"pro": InactivityRule(days=7, escalate_days=10)},
)
HORIZON_DAYS = 60
TYPES = ["login", "email.opened", "email.clicked", "email.sent", "email.bounced", "ticket.opened"]
# Fewer events per customer than the pending cap: past it the engine settles the
# oldest pending activity early by design, which a flood may reorder.
MAX_EVENTS_PER_CUSTOMER = MAX_PENDING - 2
FAST = settings(max_examples=120, deadline=None)


@st.composite
def customer_events(draw: st.DrawFn, customer_id: str) -> list[Event]:
    """One customer's events at random times over the horizon (one segment per customer)."""
    segment = draw(st.sampled_from([None, "pro", "free"]))
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, HORIZON_DAYS),
                st.integers(0, int(DAY) - 1),
                st.sampled_from(TYPES),
            ),
            max_size=MAX_EVENTS_PER_CUSTOMER,
        )
    )
    return [
        Event(f"{customer_id}-{i}", customer_id, kind, at(day, second=second), segment=segment)  # type: ignore[arg-type]
        for i, (day, second, kind) in enumerate(raw)
    ]


@st.composite
def streams(draw: st.DrawFn, customers: tuple[str, ...] = ("c0", "c1", "c2", "c3")) -> list[Event]:
    """Several customers' events merged in event-time order."""
    events: list[Event] = []
    for cid in customers:
        events += draw(customer_events(cid))
    return by_time(events)


def wire(alerts: list[Alert]) -> list[dict[str, object]]:
    return [a.to_dict() for a in alerts]


@FAST
@given(streams())
def test_replaying_the_same_events_twice_gives_identical_alerts(events: list[Event]) -> None:
    first, second = replay(events, CONFIG), replay(events, CONFIG)

    assert wire(first.alerts) == wire(second.alerts)
    assert metric_values(first.metrics) == metric_values(second.metrics)


@FAST
@given(streams(), st.randoms(use_true_random=False))
def test_arrival_order_within_lateness_does_not_change_alerts_or_metrics(
    events: list[Event], rnd: random.Random
) -> None:
    # Each event is delayed by less than half the lateness, so none can become late:
    # anything before it in arrival order is at most lateness/2 newer than it.
    jittered = sorted(events, key=lambda e: e.occurred_at + rnd.random() * LATENESS * 0.499)

    in_order, shuffled = replay(events, CONFIG), replay(jittered, CONFIG)

    assert in_order.late == shuffled.late == 0
    assert alert_set(shuffled.alerts) == alert_set(in_order.alerts)
    assert metric_values(shuffled.metrics) == metric_values(in_order.metrics)


@FAST
@given(streams(), st.randoms(use_true_random=False))
def test_a_repeated_event_id_changes_neither_alerts_nor_metrics(
    events: list[Event], rnd: random.Random
) -> None:
    with_repeats: list[Event] = []
    repeats = 0
    for e in events:
        with_repeats.append(e)
        if rnd.random() < 0.3:
            with_repeats.append(e)
            repeats += 1

    plain, repeated = replay(events, CONFIG), replay(with_repeats, CONFIG)

    assert repeated.duplicates == repeats
    assert repeated.late == plain.late == 0
    assert wire(repeated.alerts) == wire(plain.alerts)
    assert metric_values(repeated.metrics) == metric_values(plain.metrics)


@FAST
@given(customer_events("a"), customer_events("b"))
def test_customers_do_not_interact(a_events: list[Event], b_events: list[Event]) -> None:
    # A last event of a third customer brings both runs to the same final watermark.
    clock = Event("clock-0", "clock", "ticket.opened", at(HORIZON_DAYS + 1))

    without_b = replay(by_time([*a_events, clock]), CONFIG)
    with_b = replay(by_time([*a_events, *b_events, clock]), CONFIG)

    assert with_b.late == without_b.late == 0
    assert alert_set(by_customer(with_b.alerts, "a")) == alert_set(by_customer(without_b.alerts, "a"))


@FAST
@given(streams())
def test_each_customer_has_at_most_one_open_episode_per_kind(events: list[Event]) -> None:
    alerts = replay(events, CONFIG).alerts

    open_episodes: dict[tuple[str, str], Alert] = {}
    last_decided: dict[tuple[str, str], float] = {}
    for a in alerts:
        key = (a.customer_id, a.kind)
        if a.state == "raised":
            assert key not in open_episodes, f"{a} while {open_episodes.get(key)} is open"
            assert a.seq == 0
            assert a.severity == "warning"
            open_episodes[key] = a
        else:
            previous = open_episodes.get(key)
            assert previous is not None, f"{a.state} without a raised episode: {a}"
            assert a.alert_id == previous.alert_id
            assert a.seq == previous.seq + 1
            if a.state == "escalated":
                assert previous.state == "raised"
                open_episodes[key] = a
            else:
                del open_episodes[key]
        assert a.decided_at >= last_decided.get(key, -math.inf)
        last_decided[key] = a.decided_at


def run(proc: PartitionProcessor, events: list[Event]) -> list[Alert]:
    alerts: list[Alert] = []
    for e in events:
        out = proc.process(e)
        assert not out.late
        alerts += out.alerts
    return alerts


@FAST
@given(streams(), st.data())
def test_a_restart_at_any_point_decides_the_same_alerts(events: list[Event], data: st.DataObject) -> None:
    split = data.draw(st.integers(0, len(events)), label="split")
    engine = Engine(CONFIG)
    uninterrupted = run(PartitionProcessor(engine, DictStore(), StreamClock(LATENESS)), events)

    before_crash = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    alerts = run(before_crash, events[:split])
    changelog = DictStore()
    for state in before_crash.store.values():
        changelog.put(CustomerState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))))
    alerts += run(PartitionProcessor.restore(engine, changelog), events[split:])

    assert alert_set(alerts) == alert_set(uninterrupted)


@FAST
@given(streams())
def test_metrics_of_two_partitions_add_up_to_those_of_one(events: list[Event]) -> None:
    one = replay(events, CONFIG)
    two = replay(events, CONFIG, partitions=2, partition_of=lambda cid: int(cid[-1]) % 2)

    assert metric_values(two.metrics) == metric_values(one.metrics)
