"""``cxstream worker``: the streaming worker (Faust), after creating its topics."""

from __future__ import annotations

import argparse
from typing import Any

from cxstream.cli.common import run, settings_of

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``worker`` on the CLI's subparsers."""
    p = sub.add_parser("worker", help="run the streaming worker (Faust)")
    p.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    """Create the topics, build the app and run it until stopped."""
    import mode.loop

    mode.loop.use("uvloop")  # before Faust creates its loop: ~2x faster I/O scheduling
    import faust
    from prometheus_client import CollectorRegistry

    from cxstream.agents.app import create_app
    from cxstream.agents.topics import ensure_topics

    settings = settings_of(args)
    run(ensure_topics(settings))
    service = create_app(settings, registry=CollectorRegistry())
    worker = faust.Worker(service.app, loglevel=settings.log_level, quiet=False)
    # Faust's start-up spinner sets the root logger to DEBUG so that it can spin on
    # every record: aiokafka and Faust then build a debug record per message sent
    # (~10% of the worker's time). The level asked for is the level used.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
