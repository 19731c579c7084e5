"""``cxstream bench``: its options; the sections are in ``cxstream.devtools.bench``."""


from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cxstream.devtools.bench import runner
from cxstream.devtools.bench.runner import run_bench

__all__ = ["add_parser", "main"]


def add_parser(subparsers: Any) -> None:
    """Register ``bench`` on the CLI's subparsers (``func`` is ``run_bench``)."""
    p = subparsers.add_parser(
        "bench", help="benchmarks: engine, end to end on the broker, latency, memory",
        description=runner.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=run_bench)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes (the test uses it; finishes in well under a minute)")
    p.add_argument("--customers", type=int, default=None,
                   help="simulated customers for the engine file (default 2000)")
    p.add_argument("--days", type=int, default=None,
                   help="simulated days for the engine file (default 60: ~300k events)")
    p.add_argument("--partitions", type=int, default=None,
                   help="topic partitions for replay and the workers (default: settings, 4)")
    p.add_argument("--out", type=Path, default=Path("bench-results.json"),
                   help="results as JSON (default bench-results.json)")
    p.add_argument("--docs", type=Path, default=None,
                   help="rewrite the generated section of this markdown file "
                        "(e.g. docs/benchmarks.md); created if missing")
    p.add_argument("--bootstrap", default=None,
                   help="use this running broker instead of the local one "
                        "(default: start `cxstream broker` if it is not running)")
    p.add_argument("--keep-broker", action="store_true",
                   help="leave a broker this run started running")
    p.add_argument("--skip-e2e", action="store_true",
                   help="no broker sections (end to end and latency)")
    p.add_argument("--skip-latency", action="store_true", help="no latency section")
    p.add_argument("--skip-memory", action="store_true", help="no RSS subprocess runs")
    p.add_argument("--skip-profile", action="store_true", help="no cProfile of the replay")
    p.add_argument("--e2e-events", type=int, default=None,
                   help="events published for the end-to-end section (default 50000)")
    p.add_argument("--latency-rate", type=float, default=None,
                   help="events/s for the latency section (default: half the worker's "
                        "measured rate, at most --latency-max-rate)")
    p.add_argument("--latency-max-rate", type=float, default=1000.0)
    p.add_argument("--latency-duration", type=float, default=None,
                   help="seconds of measured publishing (default 30)")
    p.add_argument("--latency-trigger-share", type=float, default=None,
                   help="share of latency events that trigger an alert (default 0.05)")
    p.add_argument("--latency-lateness", type=float, default=0.05,
                   help="allowed_lateness_seconds of the latency worker (default 0.05)")
    p.add_argument("--memory-customers", default=None,
                   help="customer counts for the RSS runs (default 100000,1000000)")
    p.add_argument("--memory-events-per-customer", type=int, default=None,
                   help="events per customer in the RSS runs (default: 3, and 1 from "
                        "500k customers on, to keep the run time bounded)")
    p.add_argument("--memory-time-limit", type=float, default=None,
                   help="seconds per RSS run before it stops early (default 1200)")
    p.add_argument("--learn-customers", type=int, default=None,
                   help="customers whose snapshots one timed retrain learns from "
                        "(default 100000)")
    p.add_argument("--profile-events", type=int, default=None,
                   help="events replayed under cProfile (default 30000)")
    p.add_argument("--from-json", type=Path, default=None, metavar="RESULTS",
                   help="measure nothing: re-render --docs from an earlier results file")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the event file and worker state go (default: a temp dir, removed)")


def main(argv: list[str] | None = None) -> int:
    """``python -m cxstream.cli.bench``: the same options as ``cxstream bench``."""
    parser = argparse.ArgumentParser(prog="cxstream bench", description=runner.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    return run_bench(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
