"""``cxstream publish``: validate a JSON Lines file and publish it to the input topics."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from cxstream.cli.common import run, settings_of
from cxstream.errors import CxStreamError

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``publish`` on the CLI's subparsers."""
    p = sub.add_parser("publish", help="publish a JSON Lines file to the input topics")
    p.add_argument("events", type=Path)
    p.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    p.add_argument("--sort", action="store_true",
                   help="publish in event-time order (a history export in any order); "
                        "without it, file order, which is publish order for the worker")
    p.set_defaults(func=run_publish)


def run_publish(args: argparse.Namespace) -> int:
    """Publish; exit 2 if any line was not a valid event (those are not sent)."""
    from cxstream.agents.publisher import publish_file, publish_lines
    from cxstream.replay import ReplayFile, in_time_order, read_lines

    settings = settings_of(args)
    if not args.events.is_file():
        raise CxStreamError(f"{args.events}: no such file")
    if args.sort:
        source = ReplayFile(args.events)
        sent, invalid = run(publish_lines(settings, _lines(read_lines(source)), rate=args.rate))
        for letter in source.dead:
            print(orjson.loads(letter)["reason"], file=sys.stderr)
        invalid += len(source.dead)
    else:
        if not in_time_order(args.events):
            print(f"warning: {args.events} is not in event-time order; a worker reads it in "
                  "this order, and an event more than allowed_lateness_seconds behind the "
                  "ones before it is dead-lettered as late (--sort publishes in event-time "
                  "order)", file=sys.stderr)
        sent, invalid = run(publish_file(settings, args.events, rate=args.rate))
    print(f"published {sent} events to {settings.topic_prefix}.* ({invalid} invalid lines skipped)")
    return 0 if invalid == 0 else 2


def _lines(rows: Iterator[tuple[bytes, Any]]) -> Iterator[bytes]:
    return (line for line, _ in rows)
