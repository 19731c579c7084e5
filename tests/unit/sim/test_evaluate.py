"""Evaluation: exact precision, recall, lead and volume on hand-built cases; the baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from cxstream.cli.simulate import add_evaluate_parser, add_simulate_parser
from cxstream.engine.events import Event
from cxstream.errors import CxStreamError
from cxstream.sim.evaluate import (
    RaisedAlert,
    TruthRow,
    activity_drop_alerts,
    evaluate,
    no_login_alerts,
    percentile,
)
from tests.factories import DAY, T0, at, by_time, daily, event, login, opened, sent

WINDOW = (T0, at(100))


def raised(customer_id: str, day: float, kind: str = "inactivity") -> RaisedAlert:
    return RaisedAlert(customer_id, at(day), kind)


def churned(customer_id: str, day: float, fate: str | None = None) -> TruthRow:
    return TruthRow(customer_id, True, at(day), fate)


def stayed(customer_id: str) -> TruthRow:
    return TruthRow(customer_id, False, None)


# Four customers, 100 days: a caught (alert 20 days ahead), b alerted too late for the
# minimum lead, c a false alarm, d alerted in the last horizon (censored).
BASIC_ALERTS = [raised("a", 30), raised("b", 47), raised("c", 10), raised("d", 90)]
BASIC_TRUTH = [churned("a", 50), churned("b", 50), stayed("c"), stayed("d")]


@pytest.mark.parametrize(
    "alerts, truth, kwargs, expected",
    [
        pytest.param(
            BASIC_ALERTS, BASIC_TRUTH, {},
            {"precision": 2 / 3, "true_positives": 2, "judged_customers": 3,
             "censored_customers": 1, "recall": 0.5, "caught": 1, "churners": 2,
             "median_lead_days": 11.5, "p10_lead_days": 3 + 0.1 * 17,
             "alerts_per_1k_per_week": 4 / (4 / 1000) / (100 / 7)},
            id="basic",
        ),
        pytest.param(
            [raised("a", 55), raised("b", 10)], [churned("a", 50), churned("b", 50)], {},
            {"precision": 0.0, "post_churn_only": 1, "judged_customers": 2, "recall": 0.0,
             "median_lead_days": None, "lead_samples": 0},
            id="after-churn-and-beyond-horizon-are-misses",
        ),
        pytest.param(
            [raised("a", 5), raised("a", 35), raised("a", 45)], [churned("a", 50)], {},
            {"precision": 1.0, "recall": 1.0, "median_lead_days": 15.0, "raised_alerts": 3,
             "alerted_customers": 1},
            id="lead-counts-from-the-first-alert-within-the-horizon",
        ),
        pytest.param(
            [RaisedAlert("a", at(30), "inactivity", "escalated"),
             RaisedAlert("a", at(31), "inactivity", "resolved")],
            [churned("a", 50)], {},
            {"raised_alerts": 0, "alerted_customers": 0, "precision": None, "recall": 0.0},
            id="only-raised-transitions-count",
        ),
        pytest.param(
            [raised("a", 10), raised("b", 30), raised("c", 40)],
            [churned("a", 20), churned("b", 45), stayed("c")], {"warmup_days": 25},
            {"raised_alerts": 2, "churners": 1, "caught": 1, "precision": 0.5,
             "alerts_per_1k_per_week": 2 / (3 / 1000) / (75 / 7)},
            id="warm-up-drops-early-alerts-and-early-churners",
        ),
        pytest.param(
            [raised("a", 30, "at_risk"), raised("a", 32, "score_drop"), raised("c", 5)],
            [churned("a", 50), stayed("c")], {"kinds": ["score_drop"]},
            {"raised_alerts": 1, "median_lead_days": 18.0, "precision": 1.0},
            id="kinds-filter",
        ),
        pytest.param(
            [raised("a", 36)], [churned("a", 50)], {"horizon_days": 10, "min_lead_days": 14},
            {"precision": 0.0, "recall": 0.0},
            id="custom-horizon",
        ),
    ],
)
def test_evaluate_scores_hand_built_cases(
    alerts: list[RaisedAlert], truth: list[TruthRow], kwargs: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    report = evaluate(alerts, truth, WINDOW, len(truth), **kwargs)
    got = {k: getattr(report, k) for k in expected}
    assert got == pytest.approx(expected)


def test_recall_is_broken_down_by_fate() -> None:
    truth = [churned("a", 50, "gradual"), churned("b", 50, "sudden"), churned("c", 60, "gradual")]
    report = evaluate([raised("a", 30)], truth, WINDOW, 3)
    assert report.recall_by_fate == {"gradual": (1, 2), "sudden": (0, 1)}
    assert report.to_dict()["recall_by_fate"]["gradual"] == {"caught": 1, "churners": 2}


def test_an_empty_evaluated_period_is_refused() -> None:
    with pytest.raises(ValueError):
        evaluate([], [], (T0, at(10)), 1, warmup_days=10)


@pytest.mark.parametrize("values, q, expected", [
    ([5.0], 0.1, 5.0), ([1.0, 2.0], 0.5, 1.5), ([3.0, 20.0], 0.1, 4.7),
    ([4.0, 1.0, 3.0, 2.0], 0.5, 2.5),
])
def test_percentile_interpolates_linearly(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


# -- baselines -------------------------------------------------------------------------------


def days_of(alerts: list[RaisedAlert]) -> list[tuple[str, float]]:
    return [(a.customer_id, round((a.decided_at - T0) / DAY, 3)) for a in alerts]


@pytest.mark.parametrize(
    "events, end_day, expected",
    [
        pytest.param(daily("a", 0, 9, hour=6) + [login("a", 30)], 40, [("a", 23.25)],
                     id="one-alert-per-silent-stretch"),
        pytest.param([login("a", 0), login("a", 20), login("a", 40)], 45,
                     [("a", 14), ("a", 34)], id="each-stretch-alerts"),
        pytest.param([sent("a", 0), opened("a", 0, 1)], 20, [("a", 14)],
                     id="never-logged-in-counts-from-first-sight"),
        pytest.param([login("a", 0), sent("a", 5)], 13, [], id="open-stretch-too-short"),
        pytest.param([login("a", 0), login("a", 14)], 20, [("a", 14)],
                     id="exactly-fourteen-days"),
        pytest.param([login("a", 0), event("subscription.cancelled", "a", 3)], 60, [],
                     id="cancelled-customers-are-not-watched"),
        pytest.param([login("a", 0), event("subscription.cancelled", "a", 20)], 60,
                     [("a", 14)], id="silence-before-the-cancel-still-alerts"),
        pytest.param([login("a", 0), event("subscription.cancelled", "a", 3),
                      event("subscription.trial_started", "a", 30)], 50, [("a", 44)],
                     id="a-new-trial-brings-them-back"),
    ],
)
def test_no_login_baseline(events: list[Event], end_day: float,
                           expected: list[tuple[str, float]]) -> None:
    assert days_of(no_login_alerts(by_time(events), end=at(end_day))) == expected


@pytest.mark.parametrize(
    "events, end_day, expected",
    [
        # Daily logins to day 59: at day D the last 7 days hold 66 - D logins against 28 in
        # the 28 before; 4 x recent < 14 first at D = 63, decided at the next midnight.
        pytest.param(daily("a", 0, 59), 100, [("a", 64)], id="steady-then-stop"),
        pytest.param(daily("a", 0, 59) + daily("a", 70, 119) + [login("a", 140)], 141,
                     [("a", 64), ("a", 124)], id="one-alert-per-episode"),
        # Activity stops at day 20; the first check is at day 34 (35 days seen).
        pytest.param(daily("a", 0, 20), 60, [("a", 35)], id="waits-for-full-history"),
        pytest.param([login("a", d) for d in range(0, 60, 10)], 100, [],
                     id="too-little-baseline-activity"),
        pytest.param(daily("a", 0, 59, builder=opened, message_id="m"), 100, [("a", 64)],
                     id="email-opens-count-as-activity"),
        pytest.param(daily("a", 0, 59) + [event("subscription.cancelled", "a", 60)], 100, [],
                     id="cancelled-customers-are-not-watched"),
        pytest.param(daily("a", 0, 59) + daily("b", 0, 99), 100, [("a", 64)],
                     id="customers-are-independent"),
    ],
)
def test_activity_drop_baseline(events: list[Event], end_day: float,
                                expected: list[tuple[str, float]]) -> None:
    assert days_of(activity_drop_alerts(by_time(events), end=at(end_day))) == expected


# -- the subcommands -------------------------------------------------------------------------


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_simulate_parser(sub)
    add_evaluate_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_simulate_then_evaluate_writes_files_and_a_report(tmp_path: Path) -> None:
    events, truth, report = tmp_path / "e.jsonl", tmp_path / "t.jsonl", tmp_path / "r.json"
    assert cli(["simulate", "--customers", "60", "--days", "40", "--seed", "3",
                "--out", str(events), "--truth-out", str(truth)]) == 0
    rows = [orjson.loads(line) for line in truth.read_bytes().splitlines()]
    assert len(rows) == 60 and set(rows[0]) >= {"customer_id", "churned", "churned_at"}
    alerts = tmp_path / "a.jsonl"  # one alert, in the replay's wire format
    alerts.write_text(json.dumps({"alert_id": "x", "customer_id": rows[0]["customer_id"],
                                  "kind": "inactivity", "state": "raised",
                                  "decided_at": "2026-01-20T00:00:00Z"}) + "\n")
    assert cli(["evaluate", "--events", str(events), "--truth", str(truth), "--alerts",
                str(alerts), "--warmup-days", "0", "--json", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert set(doc["rules"]) == {"a.jsonl: any kind", "no login for 14 days",
                                 "28-day activity drop > 50%"}
    assert doc["rules"]["a.jsonl: any kind"]["raised_alerts"] == 1


def test_simulate_can_publish_instead_of_writing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import cxstream.agents.publisher as publisher

    sent: list[bytes] = []

    async def fake_publish_lines(settings: object, lines: Any,
                                 rate: float | None = None) -> tuple[int, int]:
        sent.extend(lines)
        assert rate == 250.0
        return len(sent), 0

    monkeypatch.setattr(publisher, "publish_lines", fake_publish_lines)
    truth = tmp_path / "t.jsonl"
    assert cli(["simulate", "--customers", "20", "--days", "5", "--publish", "--rate", "250",
                "--truth-out", str(truth)]) == 0
    assert sent and all(orjson.loads(line)["event_id"].startswith("sim1-") for line in sent)
    assert len(truth.read_bytes().splitlines()) == 20


@pytest.mark.parametrize("argv", [
    ["simulate", "--customers", "5", "--days", "2"],
    ["simulate", "--customers", "5", "--days", "2", "--out", "x", "--publish"],
    ["simulate", "--customers", "5", "--days", "2", "--out", "x", "--rate", "5"],
])
def test_simulate_needs_exactly_one_destination(argv: list[str]) -> None:
    with pytest.raises(CxStreamError):
        cli(argv)
