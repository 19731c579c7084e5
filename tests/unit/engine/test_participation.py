"""Learned participation thresholds (issue 4, item 6): learning, alerting, determinism."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxstream.cli.main import main
from cxstream.engine.config import EngineConfig, Profile
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.participation import (
    LEVELS,
    LIFT,
    MIN_CHURNED,
    ParticipationModel,
    learn,
    participation_days,
)
from cxstream.engine.partition import PartitionProcessor, StreamClock
from cxstream.engine.replayer import Replayer
from cxstream.engine.state import DictStore
from cxstream.schemas.events import event_to_json
from tests.factories import HOUR, alert_set, at, by_time, cancelled, login, reasons, story
from tests.unit.engine.test_properties import customer_events, run

LATENESS = 6 * HOUR
ONLY = EngineConfig(profile=Profile(alert_kinds=("participation",)),
                    allowed_lateness_seconds=LATENESS)


def histogram(rates: dict[int, tuple[int, int]]) -> tuple[list[int], list[int]]:
    """``{level: (churned, observed)}`` as the two count lists."""
    churned, observed = [0] * LEVELS, [0] * LEVELS
    for level, (c, o) in rates.items():
        churned[level], observed[level] = c, o
    return churned, observed


def seeded(threshold_rates: dict[int, tuple[int, int]], day: int = 0) -> ParticipationModel:
    """A model that learned ``threshold_rates`` (all customers), frozen before ``day``."""
    churned, observed = histogram(threshold_rates)
    return ParticipationModel.from_dict(
        {"day": day, "frozen": {"*": [churned, observed]}, "open": {}})


# Churn 50% at 0-4 active days, 20% at 5-6, 2% above: overall ~9%; 2x that is met up to 6.
EVIDENCE = {2: (10, 20), 4: (10, 20), 6: (8, 40), 12: (4, 200), 20: (2, 100)}


# ------------------------------------------------------------------ learning the threshold


def test_the_threshold_is_the_highest_level_where_churn_is_at_least_lift_times_overall() -> None:
    learned = learn(*histogram(EVIDENCE))

    assert learned is not None
    overall = 34 / 380
    assert learned.churn_overall == overall
    assert learned.days == 6
    assert learned.churn_at_or_below == 28 / 80 >= LIFT * overall
    assert (learned.churned, learned.observed) == (34, 380)


def test_no_threshold_from_thin_evidence_or_flat_churn() -> None:
    assert learn(*histogram({2: (MIN_CHURNED - 1, 20), 20: (0, 200)})) is None
    assert learn(*histogram({2: (5, 10)})) is None  # too few observed
    # Churn the same at every level: nothing "rises sharply".
    assert learn(*histogram({lvl: (2, 20) for lvl in range(LEVELS)})) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, LEVELS - 1), st.booleans()), max_size=400))
def test_a_learned_threshold_always_has_the_lift_it_claims(samples: list[tuple[int, bool]]
                                                          ) -> None:
    model = ParticipationModel()
    for level, churned in samples:
        model.add(None, level, churned, at(0))
    learned = model.threshold(None, at(1))
    if learned is None:
        return
    assert 0 <= learned.days < LEVELS - 1
    below = [c for lvl, c in samples if lvl <= learned.days]
    assert learned.churn_at_or_below == sum(below) / len(below)
    assert learned.churn_at_or_below >= LIFT * learned.churn_overall


def test_outcomes_count_for_decisions_from_the_next_day_on() -> None:
    model = ParticipationModel()
    for _ in range(10):
        model.add("pro", 2, True, at(5, 10))
        model.add("pro", 2, False, at(5, 10))
    for _ in range(80):
        model.add("pro", 20, False, at(5, 11))

    assert model.threshold("pro", at(5, 23)) is None  # the same day: not yet
    learned = model.threshold("pro", at(6))
    assert learned is not None and learned.days >= 2
    # Every outcome also counts for all customers (the threshold of those without a segment).
    assert model.threshold(None, at(6)) == learned
    assert model.threshold("free", at(6)) is None


def test_the_model_survives_its_saved_form() -> None:
    model = seeded(EVIDENCE, day=3)
    model.add("pro", 1, True, at(3))
    back = ParticipationModel.from_dict(model.to_dict())

    assert back.to_dict() == model.to_dict()
    assert back.threshold(None, at(4)) == model.threshold(None, at(4))


# ------------------------------------------------------------------ alerting


def tapering(customer_id: str, *, busy_days: int = 30, until: int = 70) -> list[Event]:
    """Active every day for ``busy_days``, then every fourth day (participation 7 of 28)."""
    days = list(range(busy_days)) + list(range(busy_days, until, 4))
    return [login(customer_id, d, 9) for d in days]


def processor(model: ParticipationModel, config: EngineConfig = ONLY) -> PartitionProcessor:
    return PartitionProcessor(Engine(config), DictStore(), StreamClock(LATENESS), model=model)


def test_a_customer_approaching_the_learned_threshold_is_warned_then_escalated() -> None:
    # Threshold 6 days, margin 2: warning at 8 active days of 28, critical at 6.
    alerts = run(processor(seeded(EVIDENCE)), tapering("c") + [login("clock", 120, 9)])

    rows = [r for r in story(alerts) if r[0] == "participation"]
    assert [(kind, state, sev) for kind, state, sev, *_ in rows] == [
        ("participation", "raised", "warning"),
        ("participation", "escalated", "critical"),
    ]
    raised, escalated = (a for a in alerts if a.kind == "participation")
    assert reasons(raised)[0][0] == "participation_low"
    assert reasons(raised)[0][2] == 6.0
    value = reasons(raised)[0][1]
    assert value is not None and 6 < value <= 8
    assert reasons(escalated)[0][1] is not None and reasons(escalated)[0][1] <= 6
    assert "learned threshold of 6 days" in raised.reasons[0].message
    assert "35% of the time, against 9% overall (34 churned of 380 observed)" in (
        raised.reasons[0].message)


def test_recovering_participation_resolves_the_episode() -> None:
    events = tapering("c", until=58) + [login("c", d, 9) for d in range(58, 90)]
    alerts = [a for a in run(processor(seeded(EVIDENCE)), events) if a.kind == "participation"]

    assert [a.state for a in alerts][0] == "raised"
    assert alerts[-1].state == "resolved"


def test_nothing_is_said_before_a_threshold_is_learned_or_28_days_of_history() -> None:
    assert run(processor(ParticipationModel()), tapering("c")) == []
    # Sparse from the first day, but never 28 days of history: no verdict.
    short = [login("n", d, 9) for d in range(0, 27, 4)]
    assert run(processor(seeded(EVIDENCE)), short + [login("clock", 27, 8)]) == []


# ------------------------------------------------------------------ learning in the stream


def cohort(n: int) -> list[Event]:
    """``n`` customers who taper and cancel, ``n`` who stay active daily (60 days)."""
    events: list[Event] = []
    for i in range(n):
        leaver = f"leave{i:02d}"
        events += [login(leaver, d, 9 + i % 5) for d in range(30)]
        events += [login(leaver, d, 10) for d in range(30, 50, 6)]
        events.append(cancelled(leaver, 50 + i % 7, 12))
        stayer = f"stay{i:02d}"
        events += [login(stayer, d, 8 + i % 7) for d in range(60)]
    return by_time(events)


def all_customers(model: ParticipationModel) -> tuple[list[int], list[int]]:
    """A model's (churned, observed) counts over all customers, frozen and open."""
    saved = model.to_dict()
    parts = [saved[k]["*"] for k in ("frozen", "open") if "*" in saved[k]]
    return ([sum(p[0][lvl] for p in parts) for lvl in range(LEVELS)],
            [sum(p[1][lvl] for p in parts) for lvl in range(LEVELS)])


def test_the_stream_teaches_each_partition_and_the_pooled_total_adds_up() -> None:
    events = cohort(30) + [login("clock0", 200, 9), login("clock1", 200, 9)]  # both partitions
    replayer = Replayer(Engine(ONLY), 2, lambda cid: int(cid[-1]) % 2)
    result = replayer.run(events)

    models = [p.model for p in replayer.processors]
    learned = [m.threshold(None, at(201)) for m in models]
    # Leavers sat at 3-5 active days of 28 when they cancelled; stayers at 28.
    assert all(x is not None and 3 <= x.days < 27 for x in learned), learned
    churned, observed, _as_of = result.metrics.store[("participation", None, 0.0, 0)]
    parts = [all_customers(m) for m in models]
    assert churned == [a + b for a, b in zip(parts[0][0], parts[1][0], strict=True)]
    assert observed == [a + b for a, b in zip(parts[0][1], parts[1][1], strict=True)]
    # Each leaver took snapshots on days 28 and 42 (every 14 days once 28 days old), both
    # within 30 days of cancelling: two churned outcomes each, counted once.
    assert sum(churned) == 60


@pytest.mark.parametrize("seed", range(5))
def test_learning_does_not_depend_on_arrival_order_within_lateness(seed: int) -> None:
    rnd = random.Random(seed)
    events = cohort(12) + [login("clock", 200, 9)]
    jittered = sorted(events, key=lambda e: e.occurred_at + rnd.random() * LATENESS * 0.499)

    first, second = processor(ParticipationModel()), processor(ParticipationModel())
    a, b = run(first, events), run(second, jittered)

    assert first.model.to_dict() == second.model.to_dict()
    assert alert_set(a) == alert_set(b)


@st.composite
def many_customers(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = []
    for cid in ("c0", "c1", "c2", "c3"):
        events += draw(customer_events(cid))
    return by_time(events)


@settings(max_examples=60, deadline=None)
@given(many_customers(), st.randoms(use_true_random=False))
def test_participation_alerts_do_not_depend_on_arrival_order_within_lateness(
    events: list[Event], rnd: random.Random
) -> None:
    # Every kind, with a threshold already learned, so participation alerts do fire.
    config = EngineConfig(allowed_lateness_seconds=LATENESS)
    jittered = sorted(events, key=lambda e: e.occurred_at + rnd.random() * LATENESS * 0.499)

    a = run(processor(seeded(EVIDENCE), config), events)
    b = run(processor(seeded(EVIDENCE), config), jittered)

    assert alert_set(a) == alert_set(b)


def test_participation_counts_active_days_in_the_last_28() -> None:
    proc = processor(ParticipationModel())
    run(proc, [login("c", d, 9) for d in (0, 1, 2, 10, 40, 41, 60)] + [login("clock", 61, 9)])
    st_ = proc.store.get("c")
    assert st_ is not None
    assert participation_days(st_, at(60, 12)) == 3  # days 40, 41, 60
    assert participation_days(st_, at(67, 12)) == 3
    assert participation_days(st_, at(68, 12)) == 2  # day 40 left the window
    assert participation_days(st_, at(200)) == 0


def test_cxstream_thresholds_prints_what_a_replay_of_the_file_learned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    events = cohort(30) + [login("clock", 200, 9)]
    path.write_bytes(b"".join(event_to_json(e) + b"\n" for e in events))
    # Snapshots are taken when the engine decides, and the alert kinds decide when it
    # decides: the CLI runs with the same profile as the processor here.
    config_file = tmp_path / "cxstream.toml"
    config_file.write_text(f'allowed_lateness_seconds = {LATENESS}\n'
                           '[profile]\nalert_kinds = ["participation"]\n')
    model = processor(ParticipationModel(), ONLY)
    run(model, events)
    learned = model.model.threshold(None, at(201))
    assert learned is not None

    assert main(["--config", str(config_file), "thresholds", "--events", str(path),
                 "--partitions", "1"]) == 0

    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("(all)"))
    assert f"{learned.days}/28 d" in row
    assert f"{learned.churned}/{learned.observed}" in row
