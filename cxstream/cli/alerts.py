"""``cxstream alerts tail``: follow the alert topic, one readable line per transition."""

from __future__ import annotations

import argparse
from typing import Any

from cxstream.cli.common import run, settings_of

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``alerts tail`` on the CLI's subparsers."""
    p = sub.add_parser("alerts", help="read the alert topic")
    asub = p.add_subparsers(dest="alerts_command", required=True)
    t = asub.add_parser("tail", help="print alerts as they arrive")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--limit", type=int, default=None, help="stop after this many alerts")
    t.set_defaults(func=run_tail)


def run_tail(args: argparse.Namespace) -> int:
    from cxstream.agents.tail import tail_alerts

    run(tail_alerts(settings_of(args), from_beginning=args.from_beginning, limit=args.limit))
    return 0
