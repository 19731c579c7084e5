"""``cxstream replay``: a JSON Lines file through the engine, alerts and metrics out.

Invalid lines are reported (and written as dead letters if asked), never
fatal. Customers are routed to partitions with Kafka's partitioner so the
result equals what the streaming worker publishes for the same file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from cxstream.engine import Engine
from cxstream.errors import InvalidEvent
from cxstream.events import Event
from cxstream.replay import Replayer, ReplayResult
from cxstream.settings import Settings

__all__ = ["read_events", "replay_file", "run_replay"]


def read_events(path: Path, dead: list[bytes] | None = None) -> Iterator[Event]:
    """Yield valid events from a JSON Lines file; invalid lines become dead letters."""
    from cxstream.agents.ingest import dead_letter, decode

    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield decode(line.rstrip(b"\r\n"))
            except InvalidEvent as exc:
                if dead is not None:
                    dead.append(dead_letter(line, InvalidEvent(f"line {lineno}: {exc.reason}",
                                                               code=exc.code),
                                            topic=str(path), partition=None, offset=lineno,
                                            key=None))


def replay_file(settings: Settings, path: Path, partitions: int | None = None,
                dead: list[bytes] | None = None) -> ReplayResult:
    """Replay a file with the settings' engine config and partitioning."""
    from cxstream.agents.partitioning import partitioner_for

    n = partitions or settings.topic_partitions
    replayer = Replayer(Engine(settings.engine_config()), n, partitioner_for(n))
    return replayer.run(read_events(path, dead))


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
