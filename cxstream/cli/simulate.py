"""``cxstream simulate`` and ``cxstream evaluate``: synthetic customers in, scored alerts out.

``simulate`` streams the simulator's events to a JSON Lines file (or to Kafka,
paced) as they are drawn and writes the truth file at the end. ``evaluate``
scores the engine's alerts (replayed from the events, or read from a file)
and the two baseline rules against a truth file, prints a table for people
and writes JSON for machines.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from cxstream.engine.events import Event
from cxstream.errors import CxStreamError
from cxstream.sim.evaluate import Report, activity_drop_alerts, evaluate, no_login_alerts
from cxstream.sim.files import EvaluationInputError, EventScan, parse_time, read_alerts, read_truth
from cxstream.sim.simulator import WORLDS

__all__ = ["add_parser", "format_table", "run_evaluate", "run_simulate"]


def add_parser(sub: Any) -> None:
    """Register ``simulate`` and ``evaluate`` on the CLI's subparsers."""
    add_simulate_parser(sub)
    add_evaluate_parser(sub)


# -- simulate ---------------------------------------------------------------------------------


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simulate`` on the CLI's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate", help="simulate customers: events (JSON Lines or Kafka) and churn truth")
    p.add_argument("--customers", type=int, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--world", choices=sorted(WORLDS), default="renewal",
                   help="churn mechanism (default renewal): renewal (fade, cancel at the "
                        "bill), anyday (fade, cancel any day), hazard (steady low "
                        "participation, cancel any day), seats (seats drop out; holidays)")
    p.add_argument("--start", default="2026-01-01T00:00:00Z",
                   help="RFC 3339 start of day 0 (default 2026-01-01T00:00:00Z)")
    p.add_argument("--out", type=Path, default=None,
                   help="events as JSON Lines, written as generated ('-' for stdout)")
    p.add_argument("--truth-out", type=Path, default=None,
                   help="truth as JSON Lines: customer_id, churned, churned_at, segment, fate")
    p.add_argument("--publish", action="store_true", help="send the events to Kafka instead")
    p.add_argument("--rate", type=float, default=None,
                   help="with --publish: events per second (default: as fast as possible)")
    p.set_defaults(func=run_simulate)
    return p


def run_simulate(args: argparse.Namespace) -> int:
    """The ``simulate`` subcommand."""
    from tqdm import tqdm

    from cxstream.schemas.events import event_to_json
    from cxstream.sim.simulator import Simulation

    if args.customers < 0 or args.days < 0:
        raise CxStreamError("--customers and --days must be >= 0")
    if (args.out is None) == (not args.publish):
        raise CxStreamError("give exactly one of --out FILE or --publish")
    if args.rate is not None and (not args.publish or args.rate <= 0):
        raise CxStreamError("--rate needs --publish and a positive number")
    start = parse_time(args.start, "--start")

    bar = tqdm(total=args.days, unit="day", file=sys.stderr, disable=not sys.stderr.isatty(),
               desc="simulating")
    events = 0

    def on_day(day: int, count: int) -> None:
        nonlocal events
        events += count
        bar.update(1)
        bar.set_postfix(events=f"{events:,}", refresh=False)

    sim = Simulation(args.customers, args.days, args.seed, start, WORLDS[args.world],
                     on_day=on_day)
    started = time.perf_counter()
    try:
        if args.publish:
            _publish(args, (event_to_json(e) for e in sim))
        elif str(args.out) == "-":
            _write_events(sys.stdout.buffer, sim, event_to_json)
        else:
            with args.out.open("wb", buffering=1 << 20) as fh:
                _write_events(fh, sim, event_to_json)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    churned = 0
    if args.truth_out is not None:
        with args.truth_out.open("wb") as fh:
            for row in sim.truth():
                churned += row["churned"]
                fh.write(orjson.dumps(row) + b"\n")
    else:
        churned = sum(row["churned"] for row in sim.truth())
    rate = events / elapsed if elapsed > 0 else 0.0
    where = "Kafka" if args.publish else str(args.out)
    print(f"simulated {args.customers:,} customers x {args.days} days: {events:,} events to "
          f"{where} in {elapsed:.1f}s = {rate:,.0f} events/s; {churned:,} cancelled",
          file=sys.stderr)
    return 0


def _write_events(fh: IO[bytes], events: Iterator[Event] | Any, encode: Any) -> None:
    write = fh.write
    for e in events:
        write(encode(e) + b"\n")


def _publish(args: argparse.Namespace, lines: Iterator[bytes]) -> None:
    import asyncio

    from cxstream.agents.publisher import publish_lines
    from cxstream.settings import Settings

    settings = Settings.from_env(config_file=getattr(args, "config", None))
    asyncio.run(publish_lines(settings, lines, rate=args.rate))


# -- evaluate ---------------------------------------------------------------------------------


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``evaluate`` on the CLI's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate", help="score alerts and baseline rules against a churn truth file")
    p.add_argument("--events", type=Path, default=None, help="events, JSON Lines")
    p.add_argument("--truth", type=Path, default=None, help="truth, JSON Lines")
    p.add_argument("--worlds", default=None,
                   help="instead of a file: simulate these worlds (comma-separated, or "
                        "'all'), replay each with the settings and print them side by side")
    p.add_argument("--seeds", default="1,2,3", help="with --worlds: seeds (default 1,2,3)")
    p.add_argument("--customers", type=int, default=1000, help="with --worlds (default 1000)")
    p.add_argument("--days", type=int, default=180, help="with --worlds (default 180)")
    p.add_argument("--alerts", type=Path, default=None,
                   help="alerts, JSON Lines (default: replay the events with the engine)")
    p.add_argument("--json", type=Path, default=None, dest="json_out",
                   help="write the reports as JSON here")
    p.add_argument("--horizon-days", type=float, default=30.0)
    p.add_argument("--min-lead-days", type=float, default=7.0)
    p.add_argument("--warmup-days", type=float, default=35.0,
                   help="history every rule gets before it is judged (default 35: the "
                        "28-day-drop rule needs 7 + 28 days)")
    p.add_argument("--kinds", default=None,
                   help="comma-separated alert kinds to score together (default: any kind, "
                        "plus one row per kind)")
    p.set_defaults(func=run_evaluate)
    return p


def run_evaluate(args: argparse.Namespace) -> int:
    """The ``evaluate`` subcommand."""
    if args.worlds is not None:
        return _evaluate_worlds(args)
    if args.events is None or args.truth is None:
        raise EvaluationInputError("give --events and --truth, or --worlds")
    truth = read_truth(args.truth)
    if not truth:
        raise EvaluationInputError(f"{args.truth}: no customers")
    started = time.perf_counter()

    scan = EventScan(args.events)
    baseline_a = no_login_alerts(scan)
    if scan.lines == scan.unreadable:
        raise EvaluationInputError(f"{args.events}: no readable events")
    window = (scan.first, scan.last)
    baseline_b = activity_drop_alerts(EventScan(args.events), end=window[1])
    if scan.out_of_order:
        print(f"warning: {scan.out_of_order} events are out of event-time order; the "
              "baselines assume order", file=sys.stderr)

    if args.alerts is not None:
        engine_alerts: list[Any] = list(read_alerts(args.alerts))
        engine_name = args.alerts.name
    else:
        from cxstream.replay import replay_file
        from cxstream.settings import Settings

        settings = Settings.from_env(config_file=getattr(args, "config", None))
        engine_alerts = replay_file(settings, args.events).alerts
        engine_name = "engine"

    def score(alerts: Any, kinds: Collection[str] | None = None) -> Report:
        return evaluate(alerts, truth, window, len(truth), args.horizon_days,
                        args.min_lead_days, args.warmup_days, kinds)

    kinds = sorted({a.kind for a in engine_alerts if a.state == "raised"})
    wanted = [k for k in args.kinds.split(",") if k] if args.kinds else None
    reports = {f"{engine_name}: {'+'.join(wanted) if wanted else 'any kind'}":
               score(engine_alerts, wanted)}
    if wanted is None and len(kinds) > 1:
        for kind in kinds:
            reports[f"{engine_name}: {kind}"] = score(engine_alerts, [kind])
    reports["no login for 14 days"] = score(baseline_a)
    reports["28-day activity drop > 50%"] = score(baseline_b)
    print(format_table(reports))
    if args.json_out is not None:
        doc = {
            "events": str(args.events),
            "truth": str(args.truth),
            "events_window": [window[0], window[1]],
            "warmup_days": args.warmup_days,
            "rules": {name: r.to_dict() for name, r in reports.items()},
        }
        args.json_out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"evaluated {scan.lines:,} events, {len(truth):,} customers in "
          f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


def _evaluate_worlds(args: argparse.Namespace) -> int:
    from cxstream.devtools.worlds import compare_worlds, format_worlds

    worlds = sorted(WORLDS) if args.worlds == "all" else [
        w for w in args.worlds.split(",") if w]
    unknown = sorted(set(worlds) - set(WORLDS))
    if unknown:
        raise CxStreamError(f"unknown worlds {unknown}; known: {sorted(WORLDS)}")
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    import os

    env = {k: v for k, v in os.environ.items() if k.startswith("CXSTREAM_")}
    if getattr(args, "config", None) is not None:
        env["CXSTREAM_CONFIG"] = str(args.config)
    started = time.perf_counter()
    results = compare_worlds(worlds, seeds, args.customers, args.days, env,
                             args.warmup_days)
    print(format_worlds(results))
    if args.json_out is not None:
        args.json_out.write_bytes(orjson.dumps(
            [{"world": r.world, "seed": r.seed, "engine": r.engine, "naive": r.naive,
              "meets": r.meets} for r in results], option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{len(results)} runs of {args.customers:,} customers x {args.days} days in "
          f"{time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


def format_table(reports: dict[str, Report]) -> str:
    """A fixed-width table of the reports, one rule per row, for people."""
    first = next(iter(reports.values()))
    days = (first.period_end - first.period_start) / 86_400.0
    head = (f"{first.customers:,} customers, {days:.0f} days evaluated "
            f"(horizon {first.horizon_days:g} d, min lead {first.min_lead_days:g} d)")
    cols = ("rule", "precision", f"recall@{first.min_lead_days:g}d", "median lead",
            "p10 lead", "alerts/1k/wk", "alerted", "churners")
    rows = [cols]
    for name, r in reports.items():
        rows.append((
            name,
            _pct(r.precision, r.true_positives, r.judged_customers),
            _pct(r.recall, r.caught, r.churners),
            _days(r.median_lead_days),
            _days(r.p10_lead_days),
            f"{r.alerts_per_1k_per_week:.1f}",
            f"{r.alerted_customers:,}",
            f"{r.churners:,}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = [head, ""]
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                          strict=True)]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pct(value: float | None, num: int, den: int) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}% ({num}/{den})"


def _days(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} d"
