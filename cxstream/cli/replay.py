"""``cxstream replay``: a JSON Lines file through the engine, alerts and metrics out."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from cxstream.cli.common import settings_of
from cxstream.engine.alerts import rfc3339
from cxstream.engine.engine import MAX_PENDING
from cxstream.errors import CxStreamError
from cxstream.replay import replay_file
from cxstream.sim.files import parse_time

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
    p.add_argument("--now", default=None, metavar="RFC3339",
                   help="the replay's wall clock: events dated more than max_future_seconds "
                        "after it are refused as future (default: the real clock)")
    p.add_argument("--as-published", action="store_true",
                   help="take the file's lines as one stream in file order, as a worker "
                        "would read them, refusing late ones (default: event-time order)")
    p.add_argument("--no-settle", action="store_true",
                   help="stop where a live worker would: decisions within the allowed "
                        "lateness of the last event stay open")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_replay)


def run_replay(args: argparse.Namespace) -> int:
    """The subcommand: replay, write outputs, print a summary."""
    from tqdm import tqdm

    settings = settings_of(args)
    if not args.events.is_file():
        raise CxStreamError(f"{args.events}: no such file")
    now = parse_time(args.now, "--now") if args.now is not None else None
    dead: list[bytes] = []
    bar = tqdm(unit=" events", unit_scale=True, file=sys.stderr, desc="replaying",
               disable=args.quiet or not sys.stderr.isatty())
    started = time.perf_counter()
    try:
        result = replay_file(settings, args.events, args.partitions, dead=dead, now=now,
                             as_published=args.as_published, settle=not args.no_settle,
                             progress=bar.update)
    finally:
        bar.close()
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
    invalid = len(dead) - result.late - result.future
    order = ("sorted by event time (the file was not in order)" if result.reordered
             else "in file order")
    print(
        f"replayed {result.events} events {order} ({result.applied} applied, "
        f"{result.duplicates} duplicates, {result.late} late, {result.future} future, "
        f"{invalid} invalid) in {elapsed:.2f}s = {rate:,.0f} events/s",
        file=sys.stderr,
    )
    if result.settled_early:
        print(f"{result.settled_early} events were decided before their watermark passed "
              f"(a customer with more than {MAX_PENDING} events waiting: a flood)",
              file=sys.stderr)
    if result.settled_to is not None:
        print(f"end of input: decisions settled up to the last event time "
              f"{rfc3339(result.settled_to)} ({result.settled_alerts} alerts)", file=sys.stderr)
    print(
        "alerts: " + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none")
        + f"; metric windows: {len(result.metrics.latest())}",
        file=sys.stderr,
    )
    return 0


def _write_jsonl(path: Path, rows: Iterator[bytes]) -> None:
    try:
        with path.open("wb") as fh:
            for row in rows:
                fh.write(row + b"\n")
    except OSError as exc:
        raise CxStreamError(f"cannot write {path}: {exc.strerror or exc}") from exc
