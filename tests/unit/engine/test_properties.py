"""Properties of the full engine (every alert kind) over generated streams.

A few customers, ~60 days, every event type. Each stream is in event-time order
unless a property says otherwise. The lateness is six hours here so that the
reordering properties reorder a lot; the "pro" segment has its own profile so
that per-segment decisions are exercised too.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cxstream.engine.alerts import SEVERITY_RANK, Alert
from cxstream.engine.config import ALERT_KINDS, EngineConfig, Profile
from cxstream.engine.engine import MAX_PENDING, Engine
from cxstream.engine.events import EVENT_TYPES, Event
from cxstream.engine.partition import PartitionProcessor, StreamClock
from cxstream.engine.state import CustomerState, DictStore, StateStore
from tests.factories import DAY, HOUR, alert_set, at, by_customer, by_time, metric_values, replay

LATENESS = 6 * HOUR
# Every alert kind, the learned churn risk (in warm-up: no fit here) among them.
CONFIG = EngineConfig(
    allowed_lateness_seconds=LATENESS,
    profile=Profile(alert_kinds=ALERT_KINDS),
    segments={
        "pro": Profile(
            inactivity_min_days=3, inactivity_max_days=10, cooldown_days=1, max_raises_per_30d=8,
            alert_kinds=ALERT_KINDS,
        )
    },
)
HORIZON_DAYS = 60
# Fewer events per customer than the pending cap: past it the engine settles the
# oldest pending event early by design, which a flood may reorder.
MAX_EVENTS_PER_CUSTOMER = MAX_PENDING - 4
FAST = settings(max_examples=60, deadline=None)
SURVEY_SCORES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}


@st.composite
def extra_fields(draw: st.DrawFn, type_: str) -> dict[str, Any]:
    """The per-type fields of an event (small pools of ids so tickets and emails repeat)."""
    if type_.startswith("ticket."):
        return {"ticket_id": draw(st.sampled_from(["t0", "t1", "t2"]))}
    if type_.startswith("email."):
        return {"message_id": draw(st.sampled_from(["m0", "m1", "m2", "m3"]))}
    if type_ == "survey.response":
        name = draw(st.sampled_from(sorted(SURVEY_SCORES)))
        low, high = SURVEY_SCORES[name]
        return {"survey": name, "score": draw(st.integers(low, high))}
    return {}


@st.composite
def customer_events(draw: st.DrawFn, customer_id: str) -> list[Event]:
    """One customer's events at random times over the horizon (one segment per customer)."""
    segment = draw(st.sampled_from([None, "pro", "free"]))
    # Activity is the common case, as in real traffic; the rest still appears often.
    types = st.one_of(
        st.sampled_from(["login", "email.opened", "email.sent"]), st.sampled_from(EVENT_TYPES)
    )
    raw = draw(
        st.lists(
            st.tuples(st.integers(0, HORIZON_DAYS), st.integers(0, int(DAY) - 1), types),
            max_size=MAX_EVENTS_PER_CUSTOMER,
        )
    )
    return [
        Event(
            f"{customer_id}-{i}",
            customer_id,
            type_,  # type: ignore[arg-type]
            at(day, second=second),
            segment=segment,
            **draw(extra_fields(type_)),
        )
        for i, (day, second, type_) in enumerate(raw)
    ]


@st.composite
def streams(draw: st.DrawFn, customers: tuple[str, ...] = ("c0", "c1", "c2", "c3")) -> list[Event]:
    """Several customers' events merged in event-time order."""
    events: list[Event] = []
    for cid in customers:
        events += draw(customer_events(cid))
    return by_time(events)


def clock_event(customer_id: str) -> Event:
    """An event long after the horizon: the watermark passes every generated event."""
    return Event(f"{customer_id}-end", customer_id, "login", at(HORIZON_DAYS + 30))


def wire(alerts: list[Alert]) -> list[dict[str, object]]:
    return [a.to_dict() for a in alerts]


def run(proc: PartitionProcessor, events: list[Event]) -> list[Alert]:
    alerts: list[Alert] = []
    for e in events:
        out = proc.process(e)
        assert not out.late, e
        alerts += out.alerts
    return alerts


def changelog_copy(store: StateStore) -> DictStore:
    """What a restarted worker reads back: every state through its serialized form."""
    copy = DictStore()
    for state in store.values():
        copy.put(CustomerState.from_wire(orjson.loads(orjson.dumps(state.to_wire()))))
    return copy


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
@given(streams())
def test_every_health_score_is_between_0_and_100(events: list[Event]) -> None:
    result = replay(events, CONFIG)

    scores = [a.health_score for a in result.alerts]
    scores += [snap.health_score for snap in result.health.values()]
    assert all(s is not None and 0.0 <= s <= 100.0 for s in scores), scores


@FAST
@given(customer_events("a"), customer_events("b"))
def test_customers_do_not_interact(a_events: list[Event], b_events: list[Event]) -> None:
    # A last event of a third customer brings both runs to the same final watermark.
    clock = clock_event("clock")

    without_b = replay(by_time([*a_events, clock]), CONFIG)
    with_b = replay(by_time([*a_events, *b_events, clock]), CONFIG)

    assert with_b.late == without_b.late == 0
    assert alert_set(by_customer(with_b.alerts, "a")) == alert_set(
        by_customer(without_b.alerts, "a")
    )


@FAST
@given(streams())
def test_each_customer_has_at_most_one_open_episode_per_kind(events: list[Event]) -> None:
    alerts = replay(events, CONFIG).alerts

    open_episodes: dict[tuple[str, str], Alert] = {}
    last_decided: dict[str, float] = {}
    for a in alerts:
        key = (a.customer_id, a.kind)
        previous = open_episodes.get(key)
        if a.state == "raised":
            assert previous is None, f"{a} while {previous} is open"
            assert a.seq == 0
            assert a.severity in ("warning", "critical")
            open_episodes[key] = a
        else:
            assert previous is not None, f"{a.state} without an open episode: {a}"
            assert a.alert_id == previous.alert_id
            assert a.seq == previous.seq + 1
            if a.state == "escalated":
                assert SEVERITY_RANK[a.severity] > SEVERITY_RANK[previous.severity]
                open_episodes[key] = a
            else:
                assert a.severity == "info"
                del open_episodes[key]
        # One customer's decisions come out in event-time order.
        assert a.decided_at >= last_decided.get(a.customer_id, a.decided_at)
        last_decided[a.customer_id] = a.decided_at


@FAST
@given(streams(), st.data())
def test_a_restart_at_any_point_decides_the_same_alerts(
    events: list[Event], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(events)), label="split")
    engine = Engine(CONFIG)
    uninterrupted = run(PartitionProcessor(engine, DictStore(), StreamClock(LATENESS)), events)

    before_crash = PartitionProcessor(engine, DictStore(), StreamClock(LATENESS))
    alerts = run(before_crash, events[:split])
    restored = PartitionProcessor.restore(engine, changelog_copy(before_crash.store))
    alerts += run(restored, events[split:])

    assert alert_set(alerts) == alert_set(uninterrupted)


@FAST
@given(streams())
def test_metrics_of_two_partitions_add_up_to_those_of_one(events: list[Event]) -> None:
    # Metrics are counted as events settle: a last event in each partition settles them all.
    events = [*events, *(clock_event(f"clock-{p}") for p in (0, 1))]

    one = replay(events, CONFIG)
    two = replay(events, CONFIG, partitions=2, partition_of=lambda cid: int(cid[-1]) % 2)

    assert one.late == two.late == 0

    assert metric_values(two.metrics) == metric_values(one.metrics)
