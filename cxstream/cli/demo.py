"""``cxstream demo``: what ``make demo`` runs (``cxstream.devtools.demo``)."""

from __future__ import annotations

import argparse
from typing import Any

from cxstream.cli.common import settings_of

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``demo`` on the CLI's subparsers."""
    p = sub.add_parser("demo", help="local Kafka + worker + event generator, alerts printed")
    p.add_argument("--customers", type=int, default=200)
    p.add_argument("--day-seconds", type=float, default=1.0,
                   help="wall seconds per simulated day (default 1.0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cxstream.devtools.demo import run_demo

    return run_demo(settings_of(args), customers=args.customers, day_seconds=args.day_seconds)
