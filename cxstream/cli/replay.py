"""``cxstream replay``: a JSON Lines file through the engine, alerts and metrics out."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from cxstream.replay import replay_file
from cxstream.settings import Settings

__all__ = ["add_parser", "run_replay"]


def add_parser(sub: Any) -> None:
    """Register ``replay`` on the CLI's subparsers."""
    p = sub.add_parser("replay", help="run the engine over a JSON Lines file, no Kafka")
    p.add_argument("events", type=Path)
    p.add_argument("--alerts-out", type=Path, default=None)
    p.add_argument("--metrics-out", type=Path, default=None)
    p.add_argument("--dead-letters-out", type=Path, default=None)
    p.add_argument("--partitions", type=int, default=None,
                   help="partitions to route customers to (default: topic_partitions)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda args: run_replay(Settings.from_env(config_file=args.config), args))


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    """The subcommand: replay, write outputs, print a summary."""
    dead: list[bytes] = []
    started = time.perf_counter()
    result = replay_file(settings, args.events, args.partitions, dead)
    elapsed = time.perf_counter() - started
    if args.alerts_out:
        _write_jsonl(args.alerts_out, (orjson.dumps(a.to_dict()) for a in result.alerts))
    if args.metrics_out:
        _write_jsonl(args.metrics_out, (orjson.dumps(u.to_dict()) for u in result.metrics.latest()))
    if args.dead_letters_out:
        _write_jsonl(args.dead_letters_out, iter(dead))
    states: dict[str, int] = {}
    for a in result.alerts:
        states[a.state] = states.get(a.state, 0) + 1
    rate = result.events / elapsed if elapsed > 0 else 0.0
    print(
        f"replayed {result.events} events ({result.applied} applied, {result.duplicates} "
        f"duplicates, {result.late} late, {len(dead)} invalid) in {elapsed:.2f}s "
        f"= {rate:,.0f} events/s",
        file=sys.stderr,
    )
    print(
        "alerts: " + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none")
        + f"; metric windows: {len(result.metrics.latest())}",
        file=sys.stderr,
    )
    return 0


def _write_jsonl(path: Path, rows: Iterator[bytes]) -> None:
    with path.open("wb") as fh:
        for row in rows:
            fh.write(row + b"\n")
