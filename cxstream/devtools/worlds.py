"""The default alert stream in every simulator world, next to "no login for 14 days".

One job per (world, seed): simulate the world into a temporary folder, replay the
events with the given settings (what a CS team receives: the default alert
stream), and score the raised alerts and the naive rule against the truth with
``cxstream.sim.evaluate``. Jobs run in parallel processes (one per core), and
each job's result says whether it meets the learned-risk target: precision at
least ``PRECISION_LIFT`` times the naive rule's, recall at least the rule's,
median lead at least ``MIN_LEAD_DAYS``, at most ``MAX_VOLUME`` alerts per
1,000 customers a week.
"""

from __future__ import annotations

import math
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["MAX_VOLUME", "MIN_LEAD_DAYS", "PRECISION_LIFT", "WorldResult", "compare_worlds",
           "format_worlds"]

PRECISION_LIFT = 1.25
MIN_LEAD_DAYS = 14.0
MAX_VOLUME = 20.0
START = "2026-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class WorldResult:
    world: str
    seed: int
    engine: dict[str, Any]
    naive: dict[str, Any]

    @property
    def meets(self) -> dict[str, bool]:
        """Each part of the target, and whether it holds."""
        e, n = self.engine, self.naive
        return {
            "precision": (e["precision"] or 0.0) >= PRECISION_LIFT * (n["precision"] or 0.0),
            "recall": (e["recall"] or 0.0) >= (n["recall"] or 0.0),
            "lead": (e["median_lead_days"] or 0.0) >= MIN_LEAD_DAYS,
            "volume": e["alerts_per_1k_per_week"] <= MAX_VOLUME,
        }


def _job(world: str, seed: int, customers: int, days: int, settings_env: dict[str, str],
         warmup_days: float) -> WorldResult:
    from cxstream.replay import replay_file
    from cxstream.schemas.events import event_to_json
    from cxstream.settings import Settings
    from cxstream.sim.evaluate import evaluate, no_login_alerts
    from cxstream.sim.files import EventScan, parse_time, read_truth
    from cxstream.sim.simulator import WORLDS, Simulation

    settings = Settings.from_env(settings_env)
    with tempfile.TemporaryDirectory(prefix=f"cxstream-{world}-{seed}-") as tmp:
        events, truth = Path(tmp) / "events.jsonl", Path(tmp) / "truth.jsonl"
        sim = Simulation(customers, days, seed, parse_time(START, "start"), WORLDS[world])
        with events.open("wb", buffering=1 << 20) as fh:
            for ev in sim:
                fh.write(event_to_json(ev) + b"\n")
        with truth.open("wb") as fh:
            for row in sim.truth():
                fh.write(orjson.dumps(row) + b"\n")
        rows = read_truth(truth)
        scan = EventScan(events)
        naive_alerts = no_login_alerts(scan)
        window = (scan.first, scan.last)
        replayed = replay_file(settings, events, now=scan.last + 86_400.0)

        def score(alerts: Any) -> dict[str, Any]:
            return evaluate(alerts, rows, window, len(rows), 30.0, 7.0, warmup_days,
                            None).to_dict()

        return WorldResult(world, seed, score(replayed.alerts), score(naive_alerts))


def compare_worlds(worlds: list[str], seeds: list[int], customers: int, days: int,
                   settings_env: dict[str, str], warmup_days: float = 35.0,
                   processes: int | None = None) -> list[WorldResult]:
    """Every (world, seed), in parallel processes; results in (world, seed) order."""
    jobs = [(w, s) for w in worlds for s in seeds]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        futures = [pool.submit(_job, w, s, customers, days, settings_env, warmup_days)
                   for w, s in jobs]
        return [f.result() for f in futures]


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _d(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} d"


def format_worlds(results: list[WorldResult]) -> str:
    """A markdown table: one row per (world, seed), engine next to the naive rule."""
    head = ("| world | seed | engine precision | recall | median lead | alerts/1k/wk | "
            "naive precision | recall | median lead | alerts/1k/wk | target |")
    lines = [head, "|" + "---|" * 11]
    for r in results:
        e, n = r.engine, r.naive
        missed = [k for k, ok in r.meets.items() if not ok]
        lines.append(
            f"| {r.world} | {r.seed} | {_pct(e['precision'])} | {_pct(e['recall'])} | "
            f"{_d(e['median_lead_days'])} | {e['alerts_per_1k_per_week']:.1f} | "
            f"{_pct(n['precision'])} | {_pct(n['recall'])} | {_d(n['median_lead_days'])} | "
            f"{n['alerts_per_1k_per_week']:.1f} | "
            f"{'met' if not missed else 'missed: ' + ', '.join(missed)} |")
    return "\n".join(lines)
