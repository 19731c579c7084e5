"""The simulator: deterministic, ordered, valid, bounded, and behaving as configured."""

from __future__ import annotations

import dataclasses
import math
import tracemalloc
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from cxstream.engine.config import DAY_SECONDS
from cxstream.engine.events import Event
from cxstream.schemas.events import event_to_json, parse_event
from cxstream.sim.simulator import FATES, SimConfig, Simulation, simulate

START = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
STATE_BYTES_PER_CUSTOMER = 400  # latent state only: ~265 B measured
PEAK_BYTES_PER_CUSTOMER = 2_048  # state plus one day of events in flight

Population = tuple[list[Event], list[dict[str, object]]]


def run(customers: int, days: int, seed: int = 1,
        config: SimConfig | None = None) -> Population:
    sim = simulate(customers, days, seed, START, config)
    events = list(sim)
    return events, list(sim.truth())


@pytest.fixture(scope="module")
def population() -> Population:
    """600 customers for 75 days with the default behaviour (~110k events)."""
    return run(600, 75, seed=11)


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    first = b"".join(event_to_json(e) + b"\n" for e in run(200, 14, seed=5)[0])
    again = b"".join(event_to_json(e) + b"\n" for e in run(200, 14, seed=5)[0])
    other = b"".join(event_to_json(e) + b"\n" for e in run(200, 14, seed=6)[0])
    assert first == again
    assert first != other


def test_every_event_passes_the_contract_and_round_trips() -> None:
    events, _ = run(200, 21, seed=2)
    assert {e.type for e in events} >= {"login", "email.sent", "email.opened", "ticket.opened",
                                        "ticket.replied", "ticket.resolved", "survey.response",
                                        "subscription.renewed"}
    for e in events:
        assert parse_event(event_to_json(e)) == e


def test_events_come_in_event_time_order_with_unique_ids(population: Population) -> None:
    events, _ = population
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    assert len({e.event_id for e in events}) == len(events)
    assert START <= times[0] and times[-1] < START + 75 * DAY_SECONDS


def test_segments_follow_the_configured_shares(population: Population) -> None:
    _, truth = population
    counts = Counter(row["segment"] for row in truth)
    for prof in SimConfig().segments:
        assert counts[prof.name] / len(truth) == pytest.approx(prof.share, abs=0.05)


def test_multi_seat_accounts_log_in_as_several_users(population: Population) -> None:
    events, truth = population
    segment = {row["customer_id"]: row["segment"] for row in truth}
    users: dict[str, set[str | None]] = defaultdict(set)
    for e in events:
        if e.type == "login":
            users[e.customer_id].add(e.user_id)
    by_segment: dict[str, list[int]] = defaultdict(list)
    for cid, seats in users.items():
        by_segment[str(segment[cid])].append(len(seats))
    assert max(by_segment["starter"]) <= 3
    assert min(by_segment["enterprise"]) > max(by_segment["starter"])


def test_weekends_are_quieter_than_weekdays(population: Population) -> None:
    events, _ = population
    per_day = Counter(int((e.occurred_at - START) // DAY_SECONDS) for e in events
                      if e.type == "login")
    weekday = [n for d, n in per_day.items()
               if datetime.fromtimestamp(START + d * DAY_SECONDS, UTC).weekday() < 5]
    weekend = [n for d, n in per_day.items()
               if datetime.fromtimestamp(START + d * DAY_SECONDS, UTC).weekday() >= 5]
    assert sum(weekend) / len(weekend) < 0.6 * sum(weekday) / len(weekday)


def test_truth_marks_churn_exactly_by_the_cancel_events(population: Population) -> None:
    events, truth = population
    cancels = {e.customer_id: e.occurred_at for e in events
               if e.type == "subscription.cancelled"}
    churned = {
        row["customer_id"]: datetime.fromisoformat(str(row["churned_at"])).timestamp()
        for row in truth if row["churned"]
    }
    assert churned == pytest.approx(cancels)
    assert {row["fate"] for row in truth} <= set(FATES)
    # Going dark is never a cancellation: those customers are not churned in the truth.
    assert not any(row["churned"] for row in truth if row["fate"] == "went_dark")


def test_gradual_churners_fade_before_cancelling_and_sudden_ones_do_not(
    population: Population,
) -> None:
    events, truth = population
    churned_at = {
        row["customer_id"]: (datetime.fromisoformat(str(row["churned_at"])).timestamp(),
                             row["fate"])
        for row in truth if row["churned"]
    }
    recent: Counter[str] = Counter()  # activity in the 14 days before cancelling
    earlier: Counter[str] = Counter()  # ... and in the 14 days before that
    seen: set[str] = set()
    for e in events:
        hit = churned_at.get(e.customer_id)
        if hit is None or e.type not in ("login", "email.opened"):
            continue
        at, fate = hit
        if at - 28 * DAY_SECONDS < START:
            continue  # not enough history inside the run
        seen.add(e.customer_id)
        ago = at - e.occurred_at
        if 0 <= ago < 14 * DAY_SECONDS:
            recent[str(fate)] += 1
        elif 14 * DAY_SECONDS <= ago < 28 * DAY_SECONDS:
            earlier[str(fate)] += 1
    assert recent["gradual"] < 0.3 * earlier["gradual"]
    assert recent["sudden"] > 0.7 * earlier["sudden"]


def test_trials_convert_or_lapse_after_the_trial(population: Population) -> None:
    events, _ = population
    started: dict[str, float] = {}
    outcome: dict[str, str] = {}
    for e in events:
        if e.type == "subscription.trial_started":
            started[e.customer_id] = e.occurred_at
        elif e.type in ("subscription.converted", "subscription.cancelled") and \
                e.customer_id in started and e.customer_id not in outcome:
            outcome[e.customer_id] = e.type
            days = (e.occurred_at - started[e.customer_id]) / DAY_SECONDS
            assert 13 < days < 15
    finished = [c for c, t in started.items() if t < START + 60 * DAY_SECONDS]
    assert finished and all(c in outcome for c in finished)
    assert set(outcome.values()) == {"subscription.converted", "subscription.cancelled"}


def test_email_open_rate_is_realistic(population: Population) -> None:
    events, _ = population
    n = Counter(e.type for e in events)
    delivered = n["email.sent"] - n["email.bounced"]
    assert 0.15 < n["email.opened"] / delivered < 0.4
    assert 0 < n["email.bounced"] / n["email.sent"] < 0.05
    assert n["email.unsubscribed"] < 0.01 * n["email.sent"]


def test_cancellations_follow_the_configured_churn_rate() -> None:
    # Only sudden cancellations (no decay, crises, trials or dark accounts), so each day's
    # hazard turns into a cancellation within a few days and the count is predictable.
    base = SimConfig()
    segments = tuple(dataclasses.replace(s, churn_per_month=0.15, crises_per_year=0.0,
                                         seats=(1, 1), logins_per_seat_day=0.05)
                     for s in base.segments)
    config = SimConfig(segments=segments, trial_share=0.0, gradual_share=0.0,
                       dark_per_month=0.0, lulls_per_year=0.0)
    _, truth = run(2_000, 30, seed=4, config=config)
    cancelled = sum(1 for row in truth if row["churned"])
    # A daily hazard of 0.15/30 over the ~27.5 days whose decisions land inside the run
    # (cancels follow 1-4 days after the decision), on a shrinking population.
    expected = 2_000 * (1 - math.exp(-0.15 / 30 * 27.5))
    assert cancelled == pytest.approx(expected, rel=0.15)


def test_truth_is_refused_before_the_run_has_ended() -> None:
    sim = Simulation(10, 3, 1, START)
    next(iter(sim))
    with pytest.raises(RuntimeError):
        list(sim.truth())


def test_memory_per_customer_is_bounded() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sim = Simulation(2_000, 2, 1, START)
        state = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.reset_peak()
        for _ in sim:
            pass
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert state / 2_000 < STATE_BYTES_PER_CUSTOMER
    assert peak / 2_000 < PEAK_BYTES_PER_CUSTOMER
