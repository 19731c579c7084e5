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
import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxstream.devtools.bench.common import SIM_SEED, SIM_START, say
from cxstream.devtools.bench.engine import bench_engine, profile_replay, write_events
from cxstream.devtools.bench.latency import bench_latency
from cxstream.devtools.bench.memory import bench_memory_rss
from cxstream.devtools.bench.report import (
    e2e_line,
    engine_line,
    latency_line,
    render_markdown,
    update_doc,
)
from cxstream.devtools.bench.worker import bench_e2e, delete_topics, free_port, local_broker
from cxstream.settings import ProfileModel

__all__ = ["run_bench"]

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
    "learn_customers": 2000,
}


# --------------------------------------------------------------------------- CLI


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
        say(f"doc: {args.docs} (from {args.from_json})")
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
            if gen["generator"] == "cxstream.sim.simulator" else
            f"cxstream.sim.generator: make_customers({customers}, {days}, seed={SIM_SEED}) "
            "+ generate_days(...)")
        say(f"workload: {gen['events']:,} events, {customers:,} customers, {days} days "
             f"({gen['generator']})")

        results["engine"] = bench_engine(base, events_path,
                                         int(_opt(args, "learn_customers", 100_000)))
        results["commands"]["engine"] = (
            f"cxstream replay events.jsonl --partitions {partitions}  "
            "(timed in-process as replay_file, with the two baseline loops)")
        say(engine_line(results["engine"]))
        if not args.skip_profile:
            results["profile"] = profile_replay(
                base, events_path, int(_opt(args, "profile_events", 30_000)))

        if not args.skip_e2e:
            with local_broker(args.bootstrap, args.keep_broker) as (bootstrap, broker_note):
                results["broker"] = {"bootstrap": bootstrap, "how": broker_note}
                run_id = uuid.uuid4().hex[:8]
                e2e_settings = base.model_copy(update={
                    "kafka_bootstrap": bootstrap, "topic_prefix": f"bench{run_id}e",
                    "app_id": f"bench{run_id}e", "data_dir": workdir / "worker-e2e",
                    "web_port": free_port(), "store": "rocksdb://", "log_level": "warning",
                })
                n = int(_opt(args, "e2e_events", 50_000))
                try:
                    results["e2e"] = bench_e2e(e2e_settings, events_path, n, workdir)
                finally:
                    delete_topics(e2e_settings)
                results["e2e"]["ratio_worker_to_engine_replay"] = (
                    results["e2e"]["worker_eps"] / results["engine"]["replay_eps"])
                results["commands"]["e2e"] = (
                    f"cxstream publish (first {results['e2e']['events']:,} lines of events.jsonl); "
                    "raw aiokafka loop; CXSTREAM_STORE=rocksdb:// "
                    f"CXSTREAM_TOPIC_PARTITIONS={partitions} cxstream worker")
                say(e2e_line(results["e2e"]))
                if not args.skip_latency:
                    lat_settings = base.model_copy(update={
                        "kafka_bootstrap": bootstrap, "topic_prefix": f"bench{run_id}l",
                        "app_id": f"bench{run_id}l", "data_dir": workdir / "worker-latency",
                        "web_port": free_port(), "store": "rocksdb://",
                        "log_level": "warning",
                        "allowed_lateness_seconds": float(args.latency_lateness),
                        # The trigger is an NPS 0 answer: the feedback kind decides on it.
                        "profile": ProfileModel(**{**dict(base.profile),
                                                   "alert_kinds": ("feedback",)}),
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
                        delete_topics(lat_settings)
                    results["commands"]["latency"] = (
                        f"CXSTREAM_ALLOWED_LATENESS_SECONDS={args.latency_lateness:g} "
                        f"cxstream worker; publish logins + NPS 0 answers at {rate:,.0f}/s "
                        "(event time = now); read the alert topic")
                    say(latency_line(results["latency"]))

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
                say(f"memory: {count:,} customers x {per} events: peak RSS "
                     f"{row['rss_peak_bytes'] / 2**20:,.0f} MiB, "
                     f"{row['rss_bytes_per_customer']:,.0f} B/customer"
                     + ("" if row["complete"] else " (stopped at the time limit)"))
            results["commands"]["memory"] = (
                "python -c 'cxstream.devtools.bench.memory._memory_child(...)' per customer count "
                "(a fresh process each)")
        results["memory"] = memory
    finally:
        results["seconds"] = round(time.monotonic() - started, 1)
        results["machine"]["loadavg_end"] = list(os.getloadavg())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    say(f"results: {args.out}")
    if args.docs is not None:
        update_doc(args.docs, render_markdown(results))
        say(f"doc: {args.docs}")
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


# --------------------------------------------------------------------------- 1) engine


# --------------------------------------------------------------------------- broker helpers


# --------------------------------------------------------------------------- 2) end to end


# --------------------------------------------------------------------------- 3) latency


# --------------------------------------------------------------------------- 4) memory


# --------------------------------------------------------------------------- report


