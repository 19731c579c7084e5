"""Learned churn risk: labels from the stream, versions in event time, bounded, no leaks."""

from __future__ import annotations

import functools
import math
import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxstream.agents.partitioning import partitioner_for
from cxstream.engine.alerts import Alert
from cxstream.engine.config import DAY_SECONDS, EngineConfig, LearnConfig, Profile
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.features import FEATURES, features, pack, unpack
from cxstream.engine.learning import (
    WEEK,
    Cancellation,
    Empty,
    Learner,
    LearningRow,
    Marker,
    Snapshot,
    boundary_after,
    boundary_at,
    row_from_list,
    row_to_list,
)
from cxstream.engine.partition import PartitionProcessor, StreamClock
from cxstream.engine.replayer import Replayer
from cxstream.engine.state import CustomerState, DictStore
from cxstream.learn.fit import logistic_fit
from cxstream.sim.simulator import simulate
from tests.factories import T0, at, by_time, cancelled, login

HORIZON = 30 * DAY_SECONDS
SMALL = LearnConfig(min_churned=3, rows_per_week=1_000, budget_per_1k_week=100.0)


def snap(cid: str, taken_at: float, logins: float) -> Snapshot:
    x = [0.0] * len(FEATURES)
    x[list(FEATURES).index("logins_28d")] = logins
    return Snapshot(cid, taken_at, None, pack(x))


def week(k: int) -> float:
    return boundary_at(T0) + k * WEEK


# -- features ---------------------------------------------------------------------------


def test_a_packed_snapshot_keeps_every_feature_within_its_coding() -> None:
    st = CustomerState("c", first_seen_at=at(0))
    x = features(st, at(10), Profile())
    back = unpack(pack(x))

    assert len(x) == len(back) == len(FEATURES)
    for name, v, w in zip(FEATURES, x, back, strict=True):
        scale, top = FEATURES[name]
        tolerance = 0.03 * (abs(v) + 1.0) if scale == "log" else 0.01 * top
        assert abs(v - w) <= tolerance, (name, v, w)


def test_every_row_survives_the_learning_topic() -> None:
    rows = [snap("c", week(1), 3.0), Cancellation("c", week(2) + 5.0), Marker(3, week(2)),
            Empty(1)]

    assert [row_from_list(row_to_list(r)) for r in rows] == rows


# -- versions -----------------------------------------------------------------------------


def population(learner: Learner, partitions: int = 2, weeks: int = 14) -> None:
    """Stayers log in a lot; leavers little, and cancel two weeks after each snapshot."""
    for p in range(partitions):
        rows: list[Snapshot | Cancellation | Marker] = []
        for k in range(weeks):
            for i in range(20):
                rows.append(snap(f"stay-{p}-{i}", week(k), 40.0 + i))
                if k % 4 == i % 4:  # each leaver appears for one week, then cancels
                    cid = f"leave-{p}-{i}-{k}"
                    rows.append(snap(cid, week(k), 1.0 + i % 3))
                    rows.append(Cancellation(cid, week(k) + 14 * DAY_SECONDS))
            rows.append(Marker(p, week(k)))
        learner.add(rows, p)


def test_a_version_is_trained_only_once_every_partition_passed_its_boundary() -> None:
    learner = Learner(2, logistic_fit, SMALL)
    population(learner, partitions=1)

    assert learner.train_ready() == []  # partition 1 has not said anything yet
    learner.add([Empty(1)], 1)  # ...it has no customers: nothing to wait for

    trained = learner.train_ready()
    # A settled cancellation also says everything before its week was settled.
    assert trained == [week(k) for k in range(16)]
    model = learner.versions[week(13)]
    assert model is not None and model.churned >= SMALL.min_churned
    # Low logins are what came before cancelling here: the model learned it.
    few = [0.0] * len(FEATURES)
    many = list(few)
    few[list(FEATURES).index("logins_28d")] = 1.0
    many[list(FEATURES).index("logins_28d")] = 50.0
    assert model.probability(few, None) > 0.5 > model.probability(many, None)
    assert learner.model_at(week(13)) is learner.versions[week(12)]  # a day's delay
    assert learner.model_at(week(13) + DAY_SECONDS) is model


def test_before_enough_cancellations_there_is_no_version_and_decisions_do_not_wait() -> None:
    learner = Learner(1, logistic_fit, LearnConfig(min_churned=10_000))
    population(learner, partitions=1)

    assert learner.train_ready()
    assert all(v is None for v in learner.versions.values())
    assert learner.model_at(week(13) + DAY_SECONDS) is None
    assert learner.ready_until() == max(learner.versions) + WEEK + DAY_SECONDS


def test_a_partition_behind_holds_the_next_version_and_decisions_after_it() -> None:
    learner = Learner(2, logistic_fit, SMALL)
    learner.add([Marker(0, week(5))], 0)
    learner.add([Marker(1, week(3))], 1)

    learner.train_ready()

    assert learner.ready_until() == week(4) + DAY_SECONDS
    assert learner.waiting_for() == [1]


def test_repeated_rows_change_no_version() -> None:
    once, twice = Learner(2, logistic_fit, SMALL), Learner(2, logistic_fit, SMALL)
    population(once)
    population(twice)
    population(twice)  # a redelivery sends everything again

    assert once.train_ready() == twice.train_ready()
    assert once.versions == twice.versions


def test_a_week_keeps_a_bounded_sample_weighted_for_the_rest() -> None:
    learner = Learner(1, logistic_fit, LearnConfig(rows_per_week=100))
    learner.add([snap(f"c{i}", week(0), 5.0) for i in range(1_000)], 0)

    kept = learner._weeks[week(0)]
    assert len(kept.rows) == 100
    assert 500 < kept.weight * len(kept.rows) < 2_000  # about the 1,000 it stands for


# -- in the engine ------------------------------------------------------------------------

ONLY_CHURN = EngineConfig(learning=SMALL, allowed_lateness_seconds=300.0)


def cohort(n: int, days: int) -> list:
    """``n`` stayers logging in daily, and ``n`` leavers who log in rarely, stop, cancel;
    both joining over the first weeks."""
    events = []
    for i in range(n):
        events += [login(f"stay{i:03d}", d, 9 + i % 8) for d in range(i % 30, days)]
        start = (i * 3) % (days - 40)
        cid = f"leave{i:03d}"
        events += [login(cid, d, 10) for d in range(start, start + 20, 5)]
        events.append(cancelled(cid, start + 30, 12))
    return by_time(events)


def replay(events: list, fit: object = logistic_fit) -> Replayer:
    replayer = Replayer(Engine(ONLY_CHURN), 2, lambda cid: sum(map(ord, cid)) % 2,
                        fit=fit)  # type: ignore[arg-type]
    replayer.run(events, settle=True)
    return replayer


def test_in_warm_up_the_inactivity_rule_decides_and_the_alert_says_so() -> None:
    result = replay(by_time([login("c", 0, 9), login("clock", 40, 9)]), fit=None).result

    alert = next(a for a in result.alerts if a.customer_id == "c")
    assert (alert.kind, alert.state) == ("churn_risk", "raised")
    assert [r.code for r in alert.reasons] == ["fallback_inactivity", "inactive_days"]
    # A first-week customer's line is 8 days (the prior usual gap, 2, times 4), but the
    # fallback also wants 14 days of silence: the first daily decision after them.
    assert "line is 8.0 days" in alert.reasons[1].message
    assert alert.decided_at == at(15)


def test_a_learned_version_raises_with_its_probability_and_the_drivers_behind_it() -> None:
    replayer = replay(cohort(40, 150))
    learned = [v for v in replayer.learner.versions.values() if v is not None]
    assert learned, "no version was trained"
    first = min(v.version for v in learned)

    raised = [a for a in replayer.result.alerts
              if a.state == "raised" and a.decided_at >= first + DAY_SECONDS]
    assert raised
    codes = {r.code for a in raised for r in a.reasons}
    assert all(a.reasons[0].code == "churn_probability" for a in raised)
    assert "fallback_inactivity" not in codes
    assert any(c.startswith("driver_") for c in codes)
    leavers = sum(a.customer_id.startswith("leave") for a in raised)
    assert leavers >= 0.8 * len(raised)  # the model tells leavers from daily users
    text = raised[0].reasons[1].message
    assert ", usually " in text and "for customers who stay" in text


def test_replaying_twice_gives_the_same_versions_and_alerts() -> None:
    a, b = replay(cohort(20, 120)), replay(cohort(20, 120))

    assert a.learner.versions == b.learner.versions
    assert a.result.alerts == b.result.alerts


@settings(max_examples=8, deadline=None)
@given(cut=st.integers(min_value=60, max_value=110), shift=st.sampled_from([None, 5.0]))
def test_cancellations_after_t_change_no_decision_made_at_or_before_t(
    cut: int, shift: float | None
) -> None:
    events = cohort(20, 120)
    t = at(cut)
    altered = [e for e in events
               if not (e.type == "subscription.cancelled" and e.occurred_at > t)]
    if shift is not None:  # ...or every later cancellation a few days later still
        altered += [cancelled(e.customer_id, (e.occurred_at - T0) / DAY_SECONDS + shift, 0)
                    for e in events
                    if e.type == "subscription.cancelled" and e.occurred_at > t]
    before = [a for a in replay(events).result.alerts if a.decided_at <= t]
    after = [a for a in replay(by_time(altered)).result.alerts if a.decided_at <= t]

    assert before == after


def test_boundaries_are_weeks_of_event_time() -> None:
    assert boundary_at(week(3) + 1.0) == week(3)
    assert boundary_after(week(3)) == week(4)
    assert math.isclose(week(1) - week(0), 7 * DAY_SECONDS)


@pytest.mark.parametrize("kinds", [("churn_risk",), ("inactivity",)])
def test_decisions_wait_for_versions_only_when_churn_risk_alerts(kinds: tuple[str, ...]) -> None:
    config = EngineConfig(profile=Profile(alert_kinds=kinds), learning=SMALL)
    assert config.learns_churn == ("churn_risk" in kinds)


def _as_a_worker(events: list[Event], partitions: int, config: EngineConfig, seed: int
                 ) -> tuple[list[Alert], int]:
    """Decide as live workers do: each partition reads its events in order, but the
    partitions take turns at random (long stretches: a rebalance, a slow consumer),
    every partition first says it is empty, and rows reach the learner late. Every
    partition gets its first events before the turns start (customers hash evenly;
    the one order this cannot handle is in ``Learner.started_late``)."""
    rng = random.Random(seed)
    part = partitioner_for(partitions)
    engine = Engine(config)
    learner = Learner(partitions, logistic_fit, config.learning)
    procs = [PartitionProcessor(engine, DictStore(), StreamClock(config.allowed_lateness_seconds),
                                learner=learner, partition=i) for i in range(partitions)]
    for i in range(partitions):
        learner.add([Empty(i)], i)
    queues: list[list[Event]] = [[] for _ in range(partitions)]
    for e in events:
        queues[part(e.customer_id)].append(e)
    alerts: list[Alert] = []
    early = 0
    in_flight: list[tuple[list[LearningRow], int]] = []

    def deliver(n: int) -> None:
        for rows, p in in_flight[:n]:
            learner.add(rows, p)
        del in_flight[:n]
        if learner.train_ready():
            for proc in procs:
                if proc.waiting:
                    out = proc.advance()
                    alerts.extend(out.alerts)
                    if out.rows:
                        in_flight.append((out.rows, proc.partition))

    turns = list(range(partitions))
    while any(queues):
        first = bool(turns)
        p = turns.pop(0) if first else rng.choice([i for i, q in enumerate(queues) if q])
        stretch = queues[p][:20 if first else rng.randint(1, 3_000)]
        del queues[p][:len(stretch)]
        for event in stretch:
            out = procs[p].process(event, published_at=event.occurred_at)
            alerts.extend(out.alerts)
            early += out.settled_early
            if out.rows:
                in_flight.append((out.rows, p))
        deliver(rng.randint(0, len(in_flight)))
    while in_flight:
        deliver(len(in_flight))
    return alerts, early


LIVE = EngineConfig(profile=Profile(alert_kinds=("churn_risk",)),
                    learning=LearnConfig(min_churned=5, budget_per_1k_week=60.0),
                    allowed_lateness_seconds=3600.0)


@functools.cache
def _live_story() -> tuple[list[Event], list[bytes]]:
    events = list(simulate(100, 75, seed=3, start=T0))
    want = Replayer(Engine(LIVE), 4, partitioner_for(4), fit=logistic_fit).run(events)
    assert any(a.reasons[0].code == "churn_probability" for a in want.alerts)
    return events, sorted(orjson.dumps(a.to_dict()) for a in want.alerts)


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**16))
def test_partitions_in_any_interleaving_decide_what_replay_decides(seed: int) -> None:
    """Replay equality under the worker's wall-time disorder: a partition far ahead waits
    for the versions the others hold back, its busiest customers' events queue (more
    than a flood's bound), and nothing is decided before the version replay uses."""
    events, want = _live_story()

    got, early = _as_a_worker(events, 4, LIVE, seed)

    assert early == 0
    assert sorted(orjson.dumps(a.to_dict()) for a in got) == want


def test_a_partition_that_was_empty_and_starts_behind_settled_versions_is_named() -> None:
    learner = Learner(2, None, SMALL)
    learner.add([Empty(1)], 1)
    learner.add([Marker(0, week(0)), Marker(0, week(5))], 0)
    assert learner.train_ready() and learner.settled_until() == week(5)

    learner.add([Marker(1, week(5))], 1)  # its first week is the newest settled: fine
    assert learner.started_late == []
    fresh = Learner(2, None, SMALL)
    fresh.add([Empty(1)], 1)
    fresh.add([Marker(0, week(0)), Marker(0, week(5))], 0)
    fresh.train_ready()
    fresh.add([Marker(1, week(2))], 1)  # a backfill reaching it late

    assert fresh.started_late == [(1, week(2))]


def test_each_version_record_keeps_the_model_version_contract() -> None:
    from cxstream.engine.churn import version_record
    from cxstream.schemas.outputs import ModelVersionOut

    replayer = replay(cohort(40, 150))
    records = [orjson.loads(orjson.dumps(version_record(b, m, 1.0)))
               for b, m in replayer.learner.versions.items()]
    for record in records:
        ModelVersionOut.model_validate(record)
    learned = [r for r in records if not r["warming_up"]]
    assert learned and records[0]["warming_up"]
    assert set(learned[0]["weights"]) == set(FEATURES)
    assert learned[0]["snapshots"] > learned[0]["churned"] >= SMALL.min_churned


def test_a_warm_up_episode_resolves_naming_what_came_back_not_the_warm_up() -> None:
    events = by_time([login("c", 0, 9), login("c", 20, 9), login("clock", 40, 9)])
    result = replay(events, fit=None).result

    resolved = next(a for a in result.alerts if a.customer_id == "c" and a.state == "resolved")
    assert resolved.reasons[0].message.startswith("Recovered: No login or email open for 0.0")
