"""``cxstream schemas export|check``: the JSON Schemas generated from the contracts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``schemas`` on the CLI's subparsers."""
    p = sub.add_parser("schemas", help="the JSON Schemas generated from the contracts")
    p.add_argument("action", choices=["export", "check"])
    p.set_defaults(func=run_schemas)


def run_schemas(args: argparse.Namespace) -> int:
    """Write the schemas, or list the ones out of date (exit 1)."""
    from cxstream.schemas.export import check_schemas, export_schemas

    out = Path(__file__).resolve().parents[1] / "schemas" / "json"
    if args.action == "export":
        for path in export_schemas(out):
            print(path)
        return 0
    stale = check_schemas(out)
    for name in stale:
        print(f"out of date: {name} (run: cxstream schemas export)")
    return 1 if stale else 0
