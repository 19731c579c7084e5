"""``cxstream bench``: engine, end-to-end, latency and memory benchmarks in one run.

Absolute numbers move on shared machines, so every section measures its own
baseline in the same run and reports the ratio:

1. **engine**: ``replay_file`` (what ``cxstream replay`` runs) on one core,
   against a bare ``orjson.loads`` loop and a parse-and-validate loop over the
   same JSON Lines file; plus a cProfile of the replay's hottest functions;
2. **end to end**: one worker process (RocksDB tables with changelogs) over N
   events already on the broker, against a raw aiokafka consume-and-decode
   loop over the same topics;
3. **latency**: event-to-alert p50/p99 at a fixed rate below saturation, from
   the event's publish to the alert's arrival on the alert topic;
4. **memory**: serialized state bytes per customer (what the worker's RocksDB
   table stores), replay RSS at 100k and 1M customers (each in a subprocess),
   and the worker's RSS after the end-to-end run.

Results go to a JSON file and to the generated section of
``docs/benchmarks.md`` (between ``<!-- bench:start -->`` and
``<!-- bench:end -->``). Kafka, Faust and the engine are imported only
inside the functions that need them, so importing this module is cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["add_bench_parser", "main", "render_markdown", "run_bench", "update_doc"]

DOC_START = "<!-- bench:start -->"
DOC_END = "<!-- bench:end -->"

# The targets of issue 6.
TARGET_ENGINE_EPS = 200_000.0
TARGET_WORKER_RATIO = 0.5
TARGET_P99_MS = 250.0
TARGET_STATE_BYTES = 2048

SIM_START = "2026-01-01T00:00:00+00:00"
SIM_SEED = 1
# The latency section's steady background: logins from this many customers, so every
# partition keeps moving its watermark; every k-th event is a trigger instead.
LATENCY_BACKGROUND_CUSTOMERS = 2000

# Settings fields are CXSTREAM_<FIELD>; the broker's own variables share the prefix.
_NON_SETTINGS_VARS = ("CXSTREAM_CONFIG",)

_SMOKE = {
    "customers": 120,
    "days": 14,
    "e2e_events": 2000,
    "latency_duration": 3.0,
    "latency_rate": 100.0,
    "latency_trigger_share": 0.1,
    "memory_customers": "1000,3000",
    "memory_time_limit": 60.0,
    "profile_events": 2000,
    "partitions": 2,
}


# --------------------------------------------------------------------------- CLI


def add_bench_parser(subparsers: Any) -> None:
    """Register ``bench`` on the CLI's subparsers (``func`` is ``run_bench``)."""
    p = subparsers.add_parser(
        "bench", help="benchmarks: engine, end to end on the broker, latency, memory",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--profile-events", type=int, default=None,
                   help="events replayed under cProfile (default 30000)")
    p.add_argument("--from-json", type=Path, default=None, metavar="RESULTS",
                   help="measure nothing: re-render --docs from an earlier results file")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the event file and worker state go (default: a temp dir, removed)")


def main(argv: list[str] | None = None) -> int:
    """``python -m cxstream.bench``: the same options as ``cxstream bench``."""
    parser = argparse.ArgumentParser(prog="cxstream bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    return run_bench(parser.parse_args(argv))


def _opt(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    if value is not None:
        return value
    if getattr(args, "smoke", False) and name in _SMOKE:
        return _SMOKE[name]
    return default


def run_bench(args: argparse.Namespace) -> int:
    """Run every section not skipped, write the JSON (and the doc section)."""
    from cxstream.settings import Settings

    if getattr(args, "from_json", None) is not None:
        if args.docs is None:
            raise SystemExit("cxstream bench: --from-json needs --docs")
        update_doc(args.docs, render_markdown(json.loads(args.from_json.read_text())))
        _say(f"doc: {args.docs} (from {args.from_json})")
        return 0
    smoke = bool(args.smoke)
    base = Settings.from_env(_settings_environ(), config_file=getattr(args, "config", None))
    partitions = int(_opt(args, "partitions", base.topic_partitions))
    base = base.model_copy(update={"topic_partitions": partitions})
    customers = int(_opt(args, "customers", 2000))
    days = int(_opt(args, "days", 60))
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="cxstream-bench-")) if own_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "generated_at": _now(),
        "smoke": smoke,
        "machine": machine_info(),
        "command": "cxstream bench " + " ".join(shlex.quote(a) for a in _argv()),
        "commands": {},
    }
    started = time.monotonic()
    try:
        events_path = workdir / "events.jsonl"
        gen = write_events(events_path, customers, days)
        results["workload"] = gen
        results["commands"]["workload"] = (
            f"cxstream simulate --customers {customers} --days {days} --seed {SIM_SEED} "
            f"--start {SIM_START.replace('+00:00', 'Z')} --out events.jsonl"
            if gen["generator"] == "cxstream.simulator" else
            f"cxstream.generator: make_customers({customers}, {days}, seed={SIM_SEED}) "
            "+ generate_days(...)")
        _say(f"workload: {gen['events']:,} events, {customers:,} customers, {days} days "
             f"({gen['generator']})")

        results["engine"] = bench_engine(base, events_path)
        results["commands"]["engine"] = (
            f"cxstream replay events.jsonl --partitions {partitions}  "
            "(timed in-process as replay_file, with the two baseline loops)")
        _say(_engine_line(results["engine"]))
        if not args.skip_profile:
            results["profile"] = profile_replay(
                base, events_path, int(_opt(args, "profile_events", 30_000)))

        if not args.skip_e2e:
            with _broker(args.bootstrap, args.keep_broker) as (bootstrap, broker_note):
                results["broker"] = {"bootstrap": bootstrap, "how": broker_note}
                run_id = uuid.uuid4().hex[:8]
                e2e_settings = base.model_copy(update={
                    "kafka_bootstrap": bootstrap, "topic_prefix": f"bench{run_id}e",
                    "app_id": f"bench{run_id}e", "data_dir": workdir / "worker-e2e",
                    "web_port": _free_port(), "store": "rocksdb://", "log_level": "warning",
                })
                n = int(_opt(args, "e2e_events", 50_000))
                try:
                    results["e2e"] = bench_e2e(e2e_settings, events_path, n, workdir)
                finally:
                    _delete_topics(e2e_settings)
                results["e2e"]["ratio_worker_to_engine_replay"] = (
                    results["e2e"]["worker_eps"] / results["engine"]["replay_eps"])
                results["commands"]["e2e"] = (
                    f"cxstream publish (first {results['e2e']['events']:,} lines of events.jsonl); "
                    "raw aiokafka loop; CXSTREAM_STORE=rocksdb:// "
                    f"CXSTREAM_TOPIC_PARTITIONS={partitions} cxstream worker")
                _say(_e2e_line(results["e2e"]))
                if not args.skip_latency:
                    lat_settings = base.model_copy(update={
                        "kafka_bootstrap": bootstrap, "topic_prefix": f"bench{run_id}l",
                        "app_id": f"bench{run_id}l", "data_dir": workdir / "worker-latency",
                        "web_port": _free_port(), "store": "rocksdb://",
                        "log_level": "warning",
                        "allowed_lateness_seconds": float(args.latency_lateness),
                    })
                    worker_eps = results["e2e"]["worker_eps"]
                    rate = _opt(args, "latency_rate", None)
                    if rate is None:
                        rate = min(args.latency_max_rate, max(10.0, worker_eps / 2.0))
                    try:
                        results["latency"] = bench_latency(
                            lat_settings, workdir, float(rate),
                            float(_opt(args, "latency_duration", 30.0)),
                            float(_opt(args, "latency_trigger_share", 0.05)),
                            worker_eps, warmup=1.0 if smoke else 5.0)
                    finally:
                        _delete_topics(lat_settings)
                    results["commands"]["latency"] = (
                        f"CXSTREAM_ALLOWED_LATENESS_SECONDS={args.latency_lateness:g} "
                        f"cxstream worker; publish logins + NPS 0 answers at {rate:,.0f}/s "
                        "(event time = now); read the alert topic")
                    _say(_latency_line(results["latency"]))

        memory: dict[str, Any] = {"state": results["engine"].pop("_state_sizes")}
        if "e2e" in results:
            memory["worker"] = results["e2e"]["worker_memory"]
        if not args.skip_memory:
            counts = [int(x) for x in str(_opt(args, "memory_customers", "100000,1000000"))
                      .split(",") if x.strip()]
            limit = float(_opt(args, "memory_time_limit", 1200.0))
            memory["rss"] = []
            for count in counts:
                per = args.memory_events_per_customer or (3 if count < 500_000 else 1)
                row = bench_memory_rss(base, count, per, limit)
                memory["rss"].append(row)
                _say(f"memory: {count:,} customers x {per} events: peak RSS "
                     f"{row['rss_peak_bytes'] / 2**20:,.0f} MiB, "
                     f"{row['rss_bytes_per_customer']:,.0f} B/customer"
                     + ("" if row["complete"] else " (stopped at the time limit)"))
            results["commands"]["memory"] = (
                "python -c 'cxstream.bench._memory_child(...)' per customer count "
                "(a fresh process each)")
        results["memory"] = memory
    finally:
        results["seconds"] = round(time.monotonic() - started, 1)
        results["machine"]["loadavg_end"] = list(os.getloadavg())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    _say(f"results: {args.out}")
    if args.docs is not None:
        update_doc(args.docs, render_markdown(results))
        _say(f"doc: {args.docs}")
    return 0


def _argv() -> list[str]:
    argv = sys.argv[1:]
    if argv and argv[0] == "bench":
        argv = argv[1:]
    return argv


def _settings_environ() -> dict[str, str]:
    """The environment minus CXSTREAM_* variables that are not settings (CXSTREAM_HOME…)."""
    from cxstream.settings import Settings

    fields = set(Settings.model_fields)
    return {k: v for k, v in os.environ.items()
            if not k.startswith("CXSTREAM_") or k in _NON_SETTINGS_VARS
            or k[len("CXSTREAM_"):].lower() in fields}


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    from importlib import metadata

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": None,
        "mem_total_bytes": None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "loadavg_start": list(os.getloadavg()),
        "versions": {},
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_bytes"] = int(line.split()[1]) * 1024
                break
    for dist in ("cxstream", "faust-streaming", "aiokafka", "orjson", "pydantic", "rocksdict",
                 "uvloop"):
        try:
            info["versions"][dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info["versions"][dist] = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        first = (out.stderr or out.stdout).splitlines()
        info["java"] = first[0] if first else None
    return info


# --------------------------------------------------------------------------- workload


def write_events(path: Path, customers: int, days: int) -> dict[str, Any]:
    """Write a deterministic JSON Lines workload; the richer simulator if it works."""
    from cxstream.schemas.events import event_to_json

    start = datetime.fromisoformat(SIM_START).timestamp()
    n = 0
    generator = "cxstream.simulator"
    t0 = time.perf_counter()
    try:
        from cxstream.simulator import simulate

        with path.open("wb") as fh:
            for ev in simulate(customers, days, SIM_SEED, start):
                fh.write(event_to_json(ev) + b"\n")
                n += 1
    except Exception as exc:  # the simulator is optional: fall back to the small generator
        _say(f"simulator unusable ({type(exc).__name__}: {exc}); using cxstream.generator")
        from cxstream.generator import generate_days, make_customers

        generator = "cxstream.generator"
        n = 0
        with path.open("wb") as fh:
            for todays in generate_days(make_customers(customers, days, SIM_SEED), days, start,
                                        SIM_SEED):
                for ev in todays:
                    fh.write(event_to_json(ev) + b"\n")
                    n += 1
    return {"generator": generator, "customers": customers, "days": days, "seed": SIM_SEED,
            "start": SIM_START, "events": n, "file_bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - t0, 2)}


# --------------------------------------------------------------------------- 1) engine


def bench_engine(settings: Any, path: Path) -> dict[str, Any]:
    """One process: bare orjson loop, parse+validate loop, full replay; events/s and ratios."""
    import orjson

    from cxstream.agents.partitioning import partitioner_for
    from cxstream.engine import Engine
    from cxstream.replay import Replayer
    from cxstream.replaycmd import read_events
    from cxstream.schemas.events import parse_event

    def bare() -> int:
        n = 0
        loads = orjson.loads
        with path.open("rb") as fh:
            for line in fh:
                loads(line)
                n += 1
        return n

    def validated() -> int:
        n = 0
        with path.open("rb") as fh:
            for line in fh:
                parse_event(line.rstrip(b"\r\n"))
                n += 1
        return n

    # The fast loops take well under a second: best of three against timer noise.
    bare_s, n = _best_of(3, bare)
    parse_s, _ = _best_of(2, validated)
    # Exactly what replay_file(settings, path) does, keeping the replayer for its state.
    parts = settings.topic_partitions
    replayer = Replayer(Engine(settings.engine_config()), parts, partitioner_for(parts))
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    result = replayer.run(read_events(path))
    replay_s = time.perf_counter() - t0
    replay_cpu = time.process_time() - cpu0
    replay_eps = result.events / replay_s
    out = {
        "events": n,
        "partitions": parts,
        "orjson_loads_eps": n / bare_s,
        "parse_validate_eps": n / parse_s,
        "replay_eps": replay_eps,
        "replay_seconds": replay_s,
        "replay_cpu_seconds": replay_cpu,
        "replay_cpu_share": replay_cpu / replay_s if replay_s else None,
        "replay_eps_per_cpu_second": result.events / replay_cpu if replay_cpu else None,
        "replay_us_per_event": 1e6 * replay_s / result.events,
        "ratio_replay_to_orjson": replay_eps / (n / bare_s),
        "ratio_replay_to_parse": replay_eps / (n / parse_s),
        "applied": result.applied,
        "late": result.late,
        "duplicates": result.duplicates,
        "alerts": len(result.alerts),
        "customers": replayer.customers,
        "target_eps": TARGET_ENGINE_EPS,
        "meets_target": replay_eps >= TARGET_ENGINE_EPS,
        "_state_sizes": state_sizes(replayer),
    }
    return out


def _best_of(k: int, fn: Any) -> tuple[float, Any]:
    best = math.inf
    value = None
    for _ in range(k):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def state_sizes(replayer: Any) -> dict[str, Any]:
    """Serialized state per customer (the bytes the worker's RocksDB table stores)."""
    import orjson

    sizes: list[int] = []
    deep: list[int] = []
    for store in replayer.stores:
        for i, st in enumerate(store.values()):
            sizes.append(len(orjson.dumps(st.to_wire())))
            if i % 10 == 0:
                deep.append(deep_sizeof(st))
    if not sizes:
        return {"customers": 0}
    sizes.sort()
    return {
        "customers": len(sizes),
        "serialized_median_bytes": statistics.median(sizes),
        "serialized_mean_bytes": statistics.fmean(sizes),
        "serialized_p90_bytes": _quantile(sizes, 0.90),
        "serialized_p99_bytes": _quantile(sizes, 0.99),
        "serialized_max_bytes": sizes[-1],
        "in_memory_median_bytes": statistics.median(deep) if deep else None,
        "in_memory_sampled": len(deep),
        "target_bytes": TARGET_STATE_BYTES,
        "meets_target": _quantile(sizes, 0.99) <= TARGET_STATE_BYTES,
    }


def deep_sizeof(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of Python objects reachable from ``obj`` (containers, slots), counted once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_sizeof(k, seen) + deep_sizeof(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_sizeof(x, seen) for x in obj)
    else:
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                size += deep_sizeof(getattr(obj, name), seen)
    return size


def profile_replay(settings: Any, path: Path, limit: int, top: int = 20) -> dict[str, Any]:
    """cProfile of replaying the first ``limit`` events: the top functions by own time."""
    import cProfile
    import itertools
    import pstats

    from cxstream.agents.partitioning import partitioner_for
    from cxstream.engine import Engine
    from cxstream.replay import Replayer
    from cxstream.replaycmd import read_events

    parts = settings.topic_partitions
    replayer = Replayer(Engine(settings.engine_config()), parts, partitioner_for(parts))
    prof = cProfile.Profile()
    prof.enable()
    replayer.run(itertools.islice(read_events(path), limit))
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(file)}:{line}({name})", "calls": nc,
                     "own_seconds": tt, "cumulative_seconds": ct,
                     "own_share": tt / total if total else 0.0})
    rows.sort(key=lambda r: r["own_seconds"], reverse=True)
    return {"tool": "cProfile (deterministic; inflates call-heavy code)",
            "events": replayer.result.events, "total_seconds": total, "top": rows[:top]}


def _short(file: str) -> str:
    if file.startswith("~") or file.startswith("<"):
        return file
    parts = Path(file).parts
    for anchor in ("cxstream", "agents", "schemas"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return "/".join(parts[i:])
    return Path(file).name


# --------------------------------------------------------------------------- broker helpers


@contextlib.contextmanager
def _broker(bootstrap: str | None, keep: bool) -> Iterator[tuple[str, str]]:
    """The broker to use: the one given, the local one if running, else start it."""
    if bootstrap:
        yield bootstrap, "given (--bootstrap)"
        return
    from cxstream.broker import BrokerConfig, down, status, up

    cfg = BrokerConfig.from_env()
    if status(cfg).running:
        yield cfg.bootstrap, f"reused the running local broker ({cfg.home})"
        return
    _say(f"starting the local broker on {cfg.bootstrap} ({cfg.home})")
    up(cfg, timeout_s=120)
    try:
        yield cfg.bootstrap, f"started for this run and stopped after ({cfg.home})"
    finally:
        if keep:
            _say(f"leaving the broker running on {cfg.bootstrap}")
        else:
            down(cfg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings_env(settings: Any) -> dict[str, str]:
    """The environment a worker subprocess needs to run with ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    return env | settings.to_env()


class _Worker:
    """A ``cxstream worker`` subprocess in its own session, its log in a file."""

    def __init__(self, settings: Any, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cxstream.cli", "worker"],
            env=_settings_env(settings), stdout=self._log, stderr=subprocess.STDOUT,
            cwd=log_path.parent, start_new_session=True,
        )

    def scrape(self) -> dict[str, float]:
        """``/metrics`` summed by sample name (labels added up)."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.settings.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                sums[s.name] = sums.get(s.name, 0.0) + float(s.value)
        return sums

    def dead_letters_by_reason(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.settings.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "cxstream_dead_letters_total":
                    out[s.labels.get("reason", "")] = float(s.value)
        return out

    def handled(self, sums: dict[str, float]) -> float:
        """Input messages the worker is done with: applied, dead-lettered or duplicate."""
        return (sums.get("cxstream_events_processed_total", 0.0)
                + sums.get("cxstream_dead_letters_total", 0.0)
                + sums.get("cxstream_duplicate_events_total", 0.0))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                self.scrape()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout:.0f}s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log_tail()}")

    def memory(self) -> dict[str, int | None]:
        """VmRSS / VmHWM of the worker process, bytes."""
        out: dict[str, int | None] = {"rss_bytes": None, "rss_peak_bytes": None}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out["rss_bytes"] = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    out["rss_peak_bytes"] = int(line.split()[1]) * 1024
        return out

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def _delete_topics(settings: Any) -> None:
    """Best effort: remove the run's topics so repeated runs do not fill the broker."""

    async def go() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        from cxstream.agents.security import kafka_options
        from cxstream.agents.topics import topic_specs

        admin = AIOKafkaAdminClient(**kafka_options(settings))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            names = [t for t in existing
                     if t in topic_specs(settings) or t.startswith(settings.app_id + "-")]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    try:
        asyncio.run(asyncio.wait_for(go(), 30))
    except Exception as exc:  # cleanup must not hide the results
        _say(f"could not delete the run's topics: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- 2) end to end


def bench_e2e(settings: Any, events_path: Path, n: int, workdir: Path) -> dict[str, Any]:
    """Publish ``n`` events, then a raw aiokafka loop and one worker over the same topics."""
    from cxstream.agents.publisher import publish_lines

    lines = []
    with events_path.open("rb") as fh:
        for line in fh:
            lines.append(line)
            if len(lines) >= n:
                break
    n = len(lines)
    t0 = time.perf_counter()
    sent, invalid = asyncio.run(publish_lines(settings, lines))
    publish_s = time.perf_counter() - t0
    if sent != n:
        raise RuntimeError(f"published {sent} of {n} events ({invalid} invalid)")
    _say(f"e2e: published {n:,} events in {publish_s:.1f}s; raw aiokafka loop…")
    # Two passes (the second reads warm pages); the faster one counts.
    passes = [asyncio.run(_raw_loop(settings, n, timeout=max(60.0, n / 500.0)))
              for _ in range(2)]
    raw = max(passes, key=lambda p: p["eps"])
    raw["passes_eps"] = [p["eps"] for p in passes]
    _say(f"e2e: raw loop {raw['eps']:,.0f} events/s; worker (RocksDB)…")
    worker = _Worker(settings, workdir / "worker-e2e.log")
    try:
        run = _watch_worker(worker, n, timeout=max(120.0, n / 100.0))
        mem = worker.memory()
        sums = worker.scrape()
    finally:
        worker.stop()
    return {
        "events": n,
        "partitions": settings.topic_partitions,
        "store": settings.store,
        "publish_eps": n / publish_s,
        "raw_aiokafka_eps": raw["eps"],
        "raw_aiokafka": raw,
        "worker_eps": run["eps"],
        "worker": run,
        "ratio_worker_to_raw": run["eps"] / raw["eps"] if raw["eps"] else None,
        "target_ratio": TARGET_WORKER_RATIO,
        "meets_target": bool(raw["eps"]) and run["eps"] / raw["eps"] >= TARGET_WORKER_RATIO,
        "dead_letters": sums.get("cxstream_dead_letters_total", 0.0),
        "duplicates": sums.get("cxstream_duplicate_events_total", 0.0),
        "alerts": sums.get("cxstream_alerts_total", 0.0),
        "worker_memory": {**mem, "customers": int(sums.get("cxstream_table_customers", 0.0)),
                          "events": n},
    }


async def _raw_loop(settings: Any, n: int, timeout: float) -> dict[str, Any]:
    """AIOKafkaConsumer over the input topics from the beginning, orjson.loads each value."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    from cxstream.agents.security import kafka_options

    consumer = AIOKafkaConsumer(
        *settings.input_topics.values(), **kafka_options(settings), group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    count = 0
    first_batch = 0
    t_first: float | None = None
    loads = orjson.loads
    try:
        t_begin = time.perf_counter()
        deadline = time.monotonic() + timeout
        while count < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got = 0
            for msgs in batch.values():
                for m in msgs:
                    loads(m.value)
                    got += 1
            if got and t_first is None:
                t_first = time.perf_counter()
                first_batch = got
            count += got
        t_end = time.perf_counter()
    finally:
        await consumer.stop()
    if count < n:
        raise RuntimeError(f"raw loop read {count} of {n} events in {timeout:.0f}s")
    # From the first fetch request: aiokafka prefetches in the background, so timing
    # from the first batch's arrival would mostly time decoding of buffered records.
    return {"events": count, "eps": count / (t_end - t_begin), "seconds": t_end - t_begin,
            "first_batch_seconds": (t_first - t_begin) if t_first is not None else None,
            "first_batch_records": first_batch,
            "basis": "from the first fetch request (after start) to the last record decoded"}


def _watch_worker(worker: _Worker, n: int, timeout: float) -> dict[str, Any]:
    """Poll /metrics until the worker has handled ``n`` messages; its sustained rate."""
    t_launch = time.monotonic()
    worker.wait_ready(timeout=90.0)
    t_ready = time.monotonic()
    deadline = t_ready + timeout
    prev_t, prev_c = t_ready, 0.0
    t0: float | None = None
    c0 = 0.0
    while True:
        worker.check_alive()
        now = time.monotonic()
        handled = worker.handled(worker.scrape())
        if handled > 0 and t0 is None:
            t0, c0 = (now, handled) if handled < n else (prev_t, prev_c)
        if handled >= n:
            t1 = now
            break
        if now > deadline:
            raise RuntimeError(f"worker handled {handled:.0f} of {n} in {timeout:.0f}s:\n"
                               f"{worker.log_tail()}")
        prev_t, prev_c = now, handled
        time.sleep(0.1 if n < 10_000 else 0.25)
    assert t0 is not None
    return {"eps": (n - c0) / (t1 - t0) if t1 > t0 else n / (t1 - t_ready),
            "seconds": t1 - t0, "startup_seconds": t0 - t_launch,
            "basis": "from the first /metrics poll showing progress to the poll showing all N "
                     "(applied + dead letters + duplicates)"}


# --------------------------------------------------------------------------- 3) latency


def bench_latency(settings: Any, workdir: Path, rate: float, duration: float,
                  trigger_share: float, worker_eps: float | None,
                  warmup: float = 5.0) -> dict[str, Any]:
    """Event-to-alert latency at a fixed rate: publish wall time → alert arrival."""
    worker = _Worker(settings, workdir / "worker-latency.log")
    try:
        worker.wait_ready(timeout=90.0)
        out = asyncio.run(_latency_run(settings, worker, rate, duration, trigger_share,
                                       warmup))
        sums = worker.scrape()
        out["dead_letters"] = sums.get("cxstream_dead_letters_total", 0.0)
        out["dead_letters_by_reason"] = worker.dead_letters_by_reason()
        out["events_applied"] = sums.get("cxstream_events_processed_total", 0.0)
    finally:
        worker.stop()
    out["worker_max_eps"] = worker_eps
    out["rate_share_of_max"] = rate / worker_eps if worker_eps else None
    return out


async def _latency_run(settings: Any, worker: _Worker, rate: float, duration: float,
                       trigger_share: float, warmup: float) -> dict[str, Any]:
    import orjson
    from aiokafka import AIOKafkaConsumer

    from cxstream.agents.publisher import EventPublisher
    from cxstream.agents.security import kafka_options
    from cxstream.events import Event
    from cxstream.schemas.events import event_to_json

    loop = asyncio.get_running_loop()
    sent_at: dict[str, float] = {}
    arrived: dict[str, float] = {}
    produced: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        settings.topic("alerts"), **kafka_options(settings), group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()

    async def consume() -> None:
        async for msg in consumer:
            now = time.time()
            alert = orjson.loads(msg.value)
            cid = alert.get("customer_id")
            if cid in sent_at and cid not in arrived and alert.get("kind") == "feedback":
                arrived[cid] = now
                produced[cid] = msg.timestamp / 1000.0  # the worker's send (CreateTime)

    reader = asyncio.create_task(consume())
    every = max(1, round(1.0 / trigger_share)) if trigger_share > 0 else 0
    segments = ("starter", "pro", "enterprise")
    seq = 0
    triggers = 0

    async def pace(pub: EventPublisher, seconds: float, measure: bool,
                   until: Any = None) -> tuple[int, float]:
        """Send at ``rate`` for ``seconds`` (or until ``until()``); every k-th a trigger."""
        nonlocal seq, triggers
        start = time.monotonic()
        sent = 0
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= seconds or (until is not None and sent and until()):
                return sent, elapsed
            due = int(elapsed * rate) + 1
            while sent < due:
                seq += 1
                now = time.time()
                if measure and every and seq % every == 0:
                    triggers += 1
                    cid = f"trig{triggers:07d}"
                    ev = Event(f"lt-{seq}", cid, "survey.response", now,
                               segment=segments[triggers % 3], survey="nps", score=0)
                    raw = event_to_json(ev)
                    sent_at[cid] = time.time()
                else:
                    cid = f"bg{seq % LATENCY_BACKGROUND_CUSTOMERS:05d}"
                    ev = Event(f"lb-{seq}", cid, "login", now,
                               segment=segments[seq % LATENCY_BACKGROUND_CUSTOMERS % 3],
                               channel="web")
                    raw = event_to_json(ev)
                await pub.send(raw)
                sent += 1
            await asyncio.sleep(0.002)

    try:
        async with EventPublisher(settings) as pub:
            # Warm-up: background logins until the worker owns its partitions and moves.
            progressed = {"n": 0.0, "checked": 0.0}

            def worker_moving() -> bool:
                now = time.monotonic()
                if now - progressed["checked"] < 0.5:
                    return False
                progressed["checked"] = now
                progressed["n"] = worker.handled(worker.scrape())
                return progressed["n"] >= max(20.0, rate)

            await pace(pub, 60.0, measure=False, until=worker_moving)
            await pace(pub, warmup, measure=False)
            sent, elapsed = await pace(pub, duration, measure=True)
            # A trigger is decided once a later event moves its partition's watermark
            # past it: keep the background going for a little while.
            await pace(pub, min(2.0, warmup), measure=False)
            await pub.flush()
            # A trigger dead-lettered as late never alerts: do not wait forever.
            wait_until = loop.time() + 2.0 * min(5.0, warmup)
            while len(arrived) < len(sent_at) and loop.time() < wait_until:
                await asyncio.sleep(0.1)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await consumer.stop()
    lat_ms = sorted(1000.0 * (arrived[c] - sent_at[c]) for c in arrived)
    # Where the time goes: publish -> the worker's send of the alert (its record's
    # CreateTime, same clock on one machine), and that send -> arrival here.
    to_worker_send = sorted(1000.0 * (produced[c] - sent_at[c]) for c in arrived)
    to_arrival = sorted(1000.0 * (arrived[c] - produced[c]) for c in arrived)
    return {
        "rate_target_eps": rate,
        "rate_achieved_eps": sent / elapsed if elapsed else None,
        "duration_seconds": elapsed,
        "trigger_share": trigger_share,
        "warmup_seconds": warmup,
        "background_customers": LATENCY_BACKGROUND_CUSTOMERS,
        "triggers_sent": len(sent_at),
        "alerts_received": len(arrived),
        "allowed_lateness_seconds": settings.allowed_lateness_seconds,
        "p50_ms": _quantile(lat_ms, 0.50) if lat_ms else None,
        "p90_ms": _quantile(lat_ms, 0.90) if lat_ms else None,
        "p99_ms": _quantile(lat_ms, 0.99) if lat_ms else None,
        "max_ms": lat_ms[-1] if lat_ms else None,
        "min_ms": lat_ms[0] if lat_ms else None,
        "publish_to_alert_send_p50_ms": _quantile(to_worker_send, 0.5) if lat_ms else None,
        "publish_to_alert_send_p99_ms": _quantile(to_worker_send, 0.99) if lat_ms else None,
        "alert_send_to_arrival_p50_ms": _quantile(to_arrival, 0.5) if lat_ms else None,
        "alert_send_to_arrival_p99_ms": _quantile(to_arrival, 0.99) if lat_ms else None,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": bool(lat_ms) and _quantile(lat_ms, 0.99) < TARGET_P99_MS
        and len(arrived) == len(sent_at),
    }


def _quantile(sorted_values: list[float] | list[int], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[k])


# --------------------------------------------------------------------------- 4) memory


def bench_memory_rss(settings: Any, customers: int, per_customer: int,
                     time_limit: float) -> dict[str, Any]:
    """Replay ``customers`` x ``per_customer`` events in a fresh process; its RSS."""
    code = ("import sys; from cxstream.bench import _memory_child; "
            "_memory_child(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), "
            "int(sys.argv[4]), float(sys.argv[5]))")
    cmd = [sys.executable, "-c", code, str(customers), str(per_customer), str(time_limit),
           str(settings.topic_partitions), str(settings.allowed_lateness_seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=time_limit + 300,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory run for {customers} customers failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _proc_status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def _memory_child(customers: int, per_customer: int, time_limit: float, partitions: int,
                  lateness: float) -> None:
    """Body of the RSS subprocess: prints one JSON line."""
    import gc
    import random

    import orjson

    from cxstream.agents.partitioning import partitioner_for
    from cxstream.engine import Engine
    from cxstream.events import Event
    from cxstream.replay import Replayer
    from cxstream.settings import Settings

    settings = Settings.model_validate({"topic_partitions": partitions,
                                        "allowed_lateness_seconds": lateness})
    replayer = Replayer(Engine(settings.engine_config()), partitions, partitioner_for(partitions))
    gc.collect()
    base = _proc_status()["VmRSS"]
    start = datetime.fromisoformat("2026-03-02T00:00:00+00:00").timestamp()
    total = customers * per_customer
    step = 86_400.0 / total  # every customer's events spread over one day
    kinds = ("login", "email.sent", "email.opened")
    segments = ("starter", "pro", "enterprise")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    deadline = time.monotonic() + time_limit
    fed = 0
    complete = True
    feed = replayer.feed
    for j in range(total):
        i = j % customers
        k = j // customers
        kind = kinds[k % 3]
        t = start + j * step
        if kind == "login":
            ev = Event(f"e{j}", f"m{i:07d}", "login", t, segment=segments[i % 3],
                       channel="web")
        else:
            ev = Event(f"e{j}", f"m{i:07d}", kind, t, segment=segments[i % 3],  # type: ignore[arg-type]
                       message_id=f"msg{i}", campaign="weekly")
        feed(ev)
        fed += 1
        if fed % 5000 == 0 and time.monotonic() > deadline:
            complete = False
            break
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - cpu0
    gc.collect()
    status = _proc_status()
    held = replayer.customers
    rng = random.Random(1)
    states = [st for store in replayer.stores for st in store.values()]
    sample = rng.sample(states, min(2000, len(states))) if states else []
    ser = sorted(len(orjson.dumps(st.to_wire())) for st in sample)
    deep = sorted(deep_sizeof(st) for st in sample)
    print(json.dumps({
        "customers_requested": customers,
        "customers": held,
        "events_per_customer": per_customer,
        "events": fed,
        "complete": complete,
        "seconds": seconds,
        "eps": fed / seconds if seconds else None,
        "cpu_seconds": cpu_seconds,
        "eps_per_cpu_second": fed / cpu_seconds if cpu_seconds else None,
        "rss_baseline_bytes": base,
        "rss_bytes": status["VmRSS"],
        "rss_peak_bytes": status["VmHWM"],
        "rss_bytes_per_customer": (status["VmRSS"] - base) / held if held else None,
        "state_serialized_median_bytes": statistics.median(ser) if ser else None,
        "state_in_memory_median_bytes": statistics.median(deep) if deep else None,
    }))


# --------------------------------------------------------------------------- report


def _fmt_eps(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f} ev/s"


def _fmt_bytes(x: float | None) -> str:
    if x is None:
        return "–"
    if x >= 2**30:
        return f"{x / 2**30:,.2f} GiB"
    if x >= 2**20:
        return f"{x / 2**20:,.0f} MiB"
    if x >= 10 * 2**10:
        return f"{x / 2**10:,.1f} KiB"
    return f"{x:,.0f} B"


def _met(flag: bool | None) -> str:
    return "–" if flag is None else ("**yes**" if flag else "**no**")


def _engine_line(e: dict[str, Any]) -> str:
    return (f"engine: replay {_fmt_eps(e['replay_eps'])} vs orjson "
            f"{_fmt_eps(e['orjson_loads_eps'])} ({e['ratio_replay_to_orjson']:.2%}), "
            "parse+validate "
            f"{_fmt_eps(e['parse_validate_eps'])}")


def _e2e_line(e: dict[str, Any]) -> str:
    return (f"e2e: worker {_fmt_eps(e['worker_eps'])} vs raw aiokafka "
            f"{_fmt_eps(e['raw_aiokafka_eps'])} (ratio {e['ratio_worker_to_raw']:.3f})")


def _latency_line(lat: dict[str, Any]) -> str:
    if lat["p50_ms"] is None:
        return f"latency: no alert arrived ({lat['triggers_sent']} triggers sent)"
    return (f"latency at {lat['rate_achieved_eps']:,.0f} ev/s: p50 {lat['p50_ms']:,.0f} ms, "
            f"p99 {lat['p99_ms']:,.0f} ms ({lat['alerts_received']}/{lat['triggers_sent']} "
            "alerts)")


def render_markdown(r: dict[str, Any]) -> str:
    """The generated section of docs/benchmarks.md: machine, results table, commands."""
    m = r["machine"]
    lines = [
        f"_Generated by `{r['command']}` on {r['generated_at']}"
        f"{' (smoke sizes: not a measurement)' if r.get('smoke') else ''}; "
        f"the whole run took {r.get('seconds', 0):,.0f} s._",
        "",
        f"**Machine**: {m.get('cpu_model') or 'unknown CPU'}, {m.get('nproc')} vCPUs, "
        f"{_fmt_bytes(m.get('mem_total_bytes'))} RAM, {m.get('os')}; Python {m.get('python')}, "
        + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
        + (f"; {m['java']}" if m.get("java") else "")
        + f". Load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_start'])}"
        + (f", at end {', '.join(f'{x:.2f}' for x in m['loadavg_end'])}"
           if m.get("loadavg_end") else "") + " (other jobs share this machine).",
        "",
    ]
    w = r.get("workload")
    if w:
        lines += [f"**Workload**: {w['events']:,} events from {w['customers']:,} customers over "
                  f"{w['days']} days ({w['generator']}, seed {w['seed']}), "
                  f"{_fmt_bytes(w['file_bytes'])} of JSON Lines.", ""]
    lines += ["| # | measure | result | baseline in the same run | ratio | target | met |",
              "|---|---|---|---|---|---|---|"]
    e = r.get("engine")
    if e:
        cpu_eps = e["events"] / e["replay_cpu_seconds"]
        lines.append(
            f"| 1 | engine replay, one core ({e['events']:,} events, "
            f"{e['partitions']} partitions) | {_fmt_eps(e['replay_eps'])} "
            f"({e['replay_us_per_event']:,.0f} µs/event); {cpu_eps:,.0f} per CPU-second "
            f"(the replay had {e['replay_cpu_share']:.0%} of a core) | orjson.loads loop "
            f"{_fmt_eps(e['orjson_loads_eps'])}; parse+validate {_fmt_eps(e['parse_validate_eps'])}"
            f" | {e['ratio_replay_to_orjson']:.2%} of orjson; {e['ratio_replay_to_parse']:.1%} of "
            f"parse+validate | ≥ {TARGET_ENGINE_EPS:,.0f} ev/s | {_met(e['meets_target'])} |")
    x = r.get("e2e")
    if x:
        lines.append(
            f"| 2 | one worker end to end, {x['store']} tables + changelogs "
            f"({x['events']:,} events, {x['partitions']} partitions) | "
            f"{_fmt_eps(x['worker_eps'])} | raw aiokafka consume + orjson.loads "
            f"{_fmt_eps(x['raw_aiokafka_eps'])}; engine replay (row 1) "
            f"{_fmt_eps(e['replay_eps']) if e else '–'} | {x['ratio_worker_to_raw']:.4f} of raw"
            + (f"; {x['ratio_worker_to_engine_replay']:.1%} of replay"
               if x.get("ratio_worker_to_engine_replay") else "")
            + f" | ≥ {TARGET_WORKER_RATIO} of raw | {_met(x['meets_target'])} |")
    lat = r.get("latency")
    if lat and lat.get("p99_ms") is not None:
        share = lat.get("rate_share_of_max")
        lines.append(
            f"| 3 | event → alert latency at {lat['rate_achieved_eps']:,.0f} ev/s"
            f"{f' ({share:.0%} of the worker max)' if share else ''}, lateness "
            f"{lat['allowed_lateness_seconds']:g} s | p50 {lat['p50_ms']:,.0f} ms, "
            f"p90 {lat['p90_ms']:,.0f} ms, p99 {lat['p99_ms']:,.0f} ms, max {lat['max_ms']:,.0f} ms"
            f" | {lat['alerts_received']:,} of {lat['triggers_sent']:,} alerts received; "
            f"publish → worker's alert send p50 {lat['publish_to_alert_send_p50_ms']:,.0f} ms / "
            f"p99 {lat['publish_to_alert_send_p99_ms']:,.0f} ms, alert send → arrival p50 "
            f"{lat['alert_send_to_arrival_p50_ms']:,.0f} ms / p99 "
            f"{lat['alert_send_to_arrival_p99_ms']:,.0f} ms; {lat.get('dead_letters', 0):,.0f} "
            f"dead letters | – | p99 < {TARGET_P99_MS:,.0f} ms | {_met(lat['meets_target'])} |")
    mem = r.get("memory", {})
    st = mem.get("state")
    if st and st.get("customers"):
        lines.append(
            f"| 4a | state per customer, serialized (RocksDB value) after the replay "
            f"({st['customers']:,} customers) | median {_fmt_bytes(st['serialized_median_bytes'])},"
            f" p99 {_fmt_bytes(st['serialized_p99_bytes'])}, max "
            f"{_fmt_bytes(st['serialized_max_bytes'])} | in memory (Python objects) median "
            f"{_fmt_bytes(st['in_memory_median_bytes'])} | – | ≤ {TARGET_STATE_BYTES:,} B | "
            f"{_met(st['meets_target'])} |")
    for row in mem.get("rss", []):
        note = "" if row["complete"] else f" (time limit: {row['customers']:,} reached)"
        lines.append(
            f"| 4b | replay process RSS, {row['customers_requested']:,} customers × "
            f"{row['events_per_customer']} event{'s' if row['events_per_customer'] > 1 else ''}"
            f"{note} | {_fmt_bytes(row['rss_bytes'])} (peak {_fmt_bytes(row['rss_peak_bytes'])});"
            f" {_fmt_bytes(row['rss_bytes_per_customer'])}/customer over the "
            f"{_fmt_bytes(row['rss_baseline_bytes'])} baseline; replay took "
            f"{row['seconds']:,.0f} s ({_fmt_eps(row['eps'])}) | serialized state median "
            f"{_fmt_bytes(row['state_serialized_median_bytes'])}, in memory median "
            f"{_fmt_bytes(row['state_in_memory_median_bytes'])} | – | – | – |")
    wm = mem.get("worker")
    if wm and wm.get("rss_bytes"):
        lines.append(
            f"| 4c | worker RSS after the end-to-end run ({wm['customers']:,} customers, "
            f"{wm['events']:,} events) | {_fmt_bytes(wm['rss_bytes'])} (peak "
            f"{_fmt_bytes(wm['rss_peak_bytes'])}) | – | – | – | – |")
    lines.append("")
    prof = r.get("profile")
    if prof:
        lines += [f"**Profile** ({prof['tool']}, replay of {prof['events']:,} events, "
                  f"{prof['total_seconds']:.1f} s under the profiler), top functions by own time:",
                  "",
                  "| function | calls | own s | own share | cumulative s |",
                  "|---|---|---|---|---|"]
        for row in prof["top"][:15]:
            lines.append(f"| `{row['function']}` | {row['calls']:,} | {row['own_seconds']:.2f} | "
                         f"{row['own_share']:.1%} | {row['cumulative_seconds']:.2f} |")
        lines.append("")
    cmds = r.get("commands", {})
    if cmds:
        lines += ["**Commands**:", "", "```sh", r["command"]]
        lines += [f"# {name}: {cmd}" for name, cmd in cmds.items()]
        lines += ["```", ""]
    return "\n".join(lines)


def update_doc(path: Path, section: str) -> None:
    """Replace what is between the markers (or create the doc with just the markers)."""
    block = f"{DOC_START}\n{section.rstrip()}\n{DOC_END}"
    if path.exists():
        text = path.read_text(encoding="utf-8")
        a, b = text.find(DOC_START), text.find(DOC_END)
        if a != -1 and b > a:
            text = text[:a] + block + text[b + len(DOC_END):]
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = f"# Benchmarks\n\n{block}\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
