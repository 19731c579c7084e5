"""The ``cxstream`` command: worker, replay, publish, alerts tail, thresholds, broker, demo…

Settings are read here, once (``Settings.from_env``), and passed down; Kafka and
Faust modules are imported only by the subcommands that need them, so
``cxstream replay`` runs without either.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cxstream.errors import CxStreamError
from cxstream.settings import Settings

__all__ = ["main"]

T = TypeVar("T")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(config_file=args.config)


def cmd_worker(args: argparse.Namespace) -> int:
    import mode.loop

    mode.loop.use("uvloop")  # before Faust creates its loop: ~2x faster I/O scheduling
    import faust
    from prometheus_client import CollectorRegistry

    from cxstream.agents.app import create_app
    from cxstream.agents.topics import ensure_topics

    settings = _settings(args)
    _run(ensure_topics(settings))
    service = create_app(settings, registry=CollectorRegistry())
    worker = faust.Worker(service.app, loglevel=settings.log_level, quiet=False)
    # Faust's start-up spinner sets the root logger to DEBUG so that it can spin on
    # every record: aiokafka and Faust then build a debug record per message sent
    # (~10% of the worker's time). The level asked for is the level used.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from cxstream.replaycmd import run_replay

    return run_replay(_settings(args), args)


def cmd_publish(args: argparse.Namespace) -> int:
    from cxstream.agents.publisher import publish_file

    settings = _settings(args)
    sent, invalid = _run(publish_file(settings, args.events, rate=args.rate))
    print(f"published {sent} events to {settings.topic_prefix}.* ({invalid} invalid lines skipped)")
    return 0 if invalid == 0 else 2


def cmd_alerts_tail(args: argparse.Namespace) -> int:
    from cxstream.agents.tail import tail_alerts

    _run(tail_alerts(_settings(args), from_beginning=args.from_beginning, limit=args.limit))
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from cxstream.broker import main_broker

    return main_broker([args.action])


def cmd_schemas(args: argparse.Namespace) -> int:
    from cxstream.schemas.export import check_schemas, export_schemas

    out = Path(__file__).resolve().parent / "schemas" / "json"
    if args.action == "export":
        for path in export_schemas(out):
            print(path)
        return 0
    stale = check_schemas(out)
    for name in stale:
        print(f"out of date: {name} (run: cxstream schemas export)")
    return 1 if stale else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cxstream.demo import run_demo

    return run_demo(_settings(args), customers=args.customers, day_seconds=args.day_seconds)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxstream", description=__doc__)
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config file (default: $CXSTREAM_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run the streaming worker (Faust)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("replay", help="run the engine over a JSON Lines file, no Kafka")
    p.add_argument("events", type=Path)
    p.add_argument("--alerts-out", type=Path, default=None)
    p.add_argument("--metrics-out", type=Path, default=None)
    p.add_argument("--dead-letters-out", type=Path, default=None)
    p.add_argument("--partitions", type=int, default=None,
                   help="partitions to route customers to (default: topic_partitions)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("publish", help="publish a JSON Lines file to the input topics")
    p.add_argument("events", type=Path)
    p.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("alerts", help="read the alert topic")
    asub = p.add_subparsers(dest="alerts_command", required=True)
    t = asub.add_parser("tail", help="print alerts as they arrive")
    t.add_argument("--from-beginning", action="store_true")
    t.add_argument("--limit", type=int, default=None, help="stop after this many alerts")
    t.set_defaults(func=cmd_alerts_tail)

    p = sub.add_parser("broker", help="the local single-node Kafka broker")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("schemas", help="the JSON Schemas generated from the contracts")
    p.add_argument("action", choices=["export", "check"])
    p.set_defaults(func=cmd_schemas)

    from cxstream.simcmd import add_evaluate_parser, add_simulate_parser

    add_simulate_parser(sub)
    add_evaluate_parser(sub)
    from cxstream.thresholdscmd import add_thresholds_parser

    add_thresholds_parser(sub)
    try:
        from cxstream.bench import add_bench_parser
    except ImportError:  # pragma: no cover - bench lands separately
        pass
    else:
        add_bench_parser(sub)

    p = sub.add_parser("demo", help="local Kafka + worker + event generator, alerts printed")
    p.add_argument("--customers", type=int, default=200)
    p.add_argument("--day-seconds", type=float, default=1.0,
                   help="wall seconds per simulated day (default 1.0)")
    p.set_defaults(func=cmd_demo)
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
