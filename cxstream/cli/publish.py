"""``cxstream publish``: validate a JSON Lines file and publish it to the input topics."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cxstream.cli.common import run, settings_of

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``publish`` on the CLI's subparsers."""
    p = sub.add_parser("publish", help="publish a JSON Lines file to the input topics")
    p.add_argument("events", type=Path)
    p.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    p.set_defaults(func=run_publish)


def run_publish(args: argparse.Namespace) -> int:
    """Publish; exit 2 if any line was not a valid event (those are not sent)."""
    from cxstream.agents.publisher import publish_file

    settings = settings_of(args)
    sent, invalid = run(publish_file(settings, args.events, rate=args.rate))
    print(f"published {sent} events to {settings.topic_prefix}.* ({invalid} invalid lines skipped)")
    return 0 if invalid == 0 else 2
