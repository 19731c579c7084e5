"""``cxstream broker up|down|status|reset``: the local Kafka of ``cxstream.devtools.broker``.

Also ``python -m cxstream.cli.broker`` (what the Makefile's broker targets run).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from cxstream.devtools.broker import (
    BrokerConfig,
    BrokerError,
    BrokerStatus,
    down,
    reset,
    status,
    up,
)
from cxstream.errors import ConfigError

__all__ = ["add_parser", "main_broker", "run_broker"]


def add_parser(sub: Any) -> None:
    """Register ``broker`` on the CLI's subparsers."""
    p = sub.add_parser("broker", help="the local single-node Kafka broker")
    _add_arguments(p)
    p.set_defaults(func=run_broker)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "reset"])
    parser.add_argument(
        "--home", type=Path, help="state folder (default: $CXSTREAM_HOME or .cxstream)"
    )
    parser.add_argument("--port", type=int, help="PLAINTEXT port (default 19092)")
    parser.add_argument("--controller-port", type=int, help="KRaft controller port (default 19093)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait")


def _describe(st: BrokerStatus) -> str:
    if st.running:
        head = "broker running"
    elif st.pid is not None:
        head = "broker process alive but not answering (starting, or wedged: see the log)"
    else:
        head = "broker not running"
    rows = [
        ("bootstrap", st.bootstrap),
        ("pid", str(st.pid) if st.pid is not None else "-"),
        ("log", str(st.log_path)),
        ("data", str(st.data_dir)),
    ]
    return head + "\n" + "\n".join(f"  {k:<10} {v}" for k, v in rows)


def main_broker(argv: list[str]) -> int:
    """``python -m cxstream.cli.broker up|down|status|reset`` (the Makefile's targets)."""
    parser = argparse.ArgumentParser(
        prog="cxstream broker",
        description="Run a local single-node Kafka (KRaft) broker on 127.0.0.1.",
    )
    _add_arguments(parser)
    return run_broker(parser.parse_args(argv))


def run_broker(args: argparse.Namespace) -> int:
    """Carry out the action; exit 0 on success, 1 on error, 3 if not running (status)."""
    try:
        base = BrokerConfig.from_env()
        cfg = BrokerConfig(
            home=args.home if args.home is not None else base.home,
            port=args.port if args.port is not None else base.port,
            controller_port=(
                args.controller_port if args.controller_port is not None else base.controller_port
            ),
            kafka_version=base.kafka_version,
            heap=base.heap,
        )
        if args.action == "up":
            st = up(cfg, timeout_s=args.timeout or 60)
            print(_describe(st))
            return 0
        if args.action == "down":
            stopped = down(cfg, timeout_s=args.timeout or 30)
            print("broker stopped" if stopped else "broker was not running")
            return 0
        if args.action == "reset":
            reset(cfg)
            print(f"broker stopped and {cfg.data_dir} deleted")
            return 0
        st = status(cfg)
        print(_describe(st))
        return 0 if st.running else 3
    except (BrokerError, ConfigError) as exc:
        print(f"cxstream broker {args.action}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    raise SystemExit(main_broker(sys.argv[1:]))
