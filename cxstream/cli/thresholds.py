"""``cxstream thresholds``: the learned participation thresholds per segment.

From a file (``--events``): replay it and pool every partition's labelled
snapshots, with the evidence behind each threshold. From Kafka (no file):
the latest ``participation_threshold_days`` per segment on the metrics topic,
as the running workers publish them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cxstream.engine.alerts import rfc3339
from cxstream.engine.metrics import DAY, MetricBook, window_of
from cxstream.engine.participation import WINDOW_DAYS, learn
from cxstream.settings import Settings

__all__ = ["add_parser", "pooled_thresholds", "run_thresholds"]

_ALL = "(all)"


def pooled_thresholds(book: MetricBook) -> list[dict[str, Any]]:
    """One row per segment (and all customers) from a replay's metric accumulators."""
    rows = []
    for (metric, segment, _start, _seconds), acc in book.store.items():
        if metric != "participation":
            continue
        learned = learn(acc[0], acc[1])
        row: dict[str, Any] = {"segment": segment if segment is not None else _ALL,
                               "observed": sum(acc[1]), "churned": sum(acc[0]),
                               "as_of": rfc3339(window_of(acc[2], DAY) + DAY)}
        row.update(learned.to_dict() if learned is not None else {"threshold_days": None})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["segment"] != _ALL, r["segment"]))


def _format(rows: Iterable[dict[str, Any]]) -> str:
    lines = [f"{'segment':<16} {'threshold':>16} {'churn at/below':>15} {'overall':>8} "
             f"{'churned/observed':>17}  as of"]
    for r in rows:
        days = r.get("threshold_days")
        thr = "not yet" if days is None else f"{days}/{WINDOW_DAYS} d ({days / WINDOW_DAYS:.0%})"
        below = r.get("churn_at_or_below")
        overall = r.get("churn_overall")
        evidence = (f"{r['churned']}/{r['observed']}" if "churned" in r
                    else f"-/{r['observed']}")
        lines.append(f"{r['segment']:<16} {thr:>16} "
                     f"{'-' if below is None else f'{below:.0%}':>15} "
                     f"{'-' if overall is None else f'{overall:.0%}':>8} "
                     f"{evidence:>17}  {r['as_of']}")
    return "\n".join(lines)


def run_thresholds(settings: Settings, args: argparse.Namespace) -> int:
    """The subcommand."""
    if args.events is not None:
        from cxstream.replay import replay_file

        result = replay_file(settings, args.events, args.partitions)
        rows = pooled_thresholds(result.metrics)
    else:
        import asyncio

        from cxstream.agents.tail import latest_metric

        found = asyncio.run(latest_metric(settings, "participation_threshold_days"))
        rows = [{"segment": seg if seg is not None else _ALL,
                 "threshold_days": None if u["value"] is None else int(u["value"]),
                 "observed": u["sample_size"], "as_of": u["window_end"]}
                for seg, u in sorted(found.items(), key=lambda kv: (kv[0] is not None,
                                                                    kv[0] or ""))]
    if not rows:
        print("no participation outcomes yet (customers need 28 days of history, "
              "and outcomes 30 more days or a cancellation)")
        return 0
    print(_format(rows))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``thresholds`` on the CLI's subparsers."""
    p = sub.add_parser("thresholds", help="the learned participation thresholds per segment")
    p.add_argument("--events", type=Path, default=None,
                   help="learn from this JSON Lines file (replay) instead of the metrics topic")
    p.add_argument("--partitions", type=int, default=None,
                   help="with --events: partitions to route customers to "
                        "(default: topic_partitions)")
    p.set_defaults(func=lambda args: run_thresholds(Settings.from_env(config_file=args.config),
                                                    args))
