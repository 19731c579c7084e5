"""Memory section: replay RSS at many customers, each count in a fresh process."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cxstream.devtools.bench.engine import deep_sizeof

__all__ = ["bench_memory_rss"]


def bench_memory_rss(settings: Any, customers: int, per_customer: int,
                     time_limit: float) -> dict[str, Any]:
    """Replay ``customers`` x ``per_customer`` events in a fresh process; its RSS."""
    code = ("import sys; from cxstream.devtools.bench.memory import _memory_child; "
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
    from cxstream.engine.engine import Engine
    from cxstream.engine.events import Event
    from cxstream.engine.replayer import Replayer
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
