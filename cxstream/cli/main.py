"""The ``cxstream`` command: builds the parser from one module per command and runs it.

Settings are read once per command (``Settings.from_env``) and passed down; Kafka
and Faust modules are imported only by the commands that need them, so
``cxstream replay`` runs without either.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cxstream.cli import (
    alerts,
    bench,
    broker,
    demo,
    publish,
    replay,
    schemas,
    simulate,
    thresholds,
    worker,
)
from cxstream.errors import CxStreamError

__all__ = ["build_parser", "main"]

# In the order ``cxstream --help`` lists them.
COMMANDS = (worker, replay, publish, alerts, thresholds, simulate, broker, schemas, demo, bench)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command module adds its own subcommands."""
    parser = argparse.ArgumentParser(prog="cxstream", description=__doc__)
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config file (default: $CXSTREAM_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cxstream`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CxStreamError as exc:
        print(f"cxstream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
