"""Engine section: replay against bare parse loops, state sizes, a profile of the replay."""

from __future__ import annotations

import math
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cxstream.devtools.bench.common import (
    SIM_SEED,
    SIM_START,
    TARGET_ENGINE_EPS,
    TARGET_STATE_BYTES,
    say,
)
from cxstream.devtools.bench.latency import quantile
from cxstream.devtools.bench.learning import bench_learning

__all__ = ["bench_engine", "deep_sizeof", "profile_replay", "state_sizes", "write_events"]


def write_events(path: Path, customers: int, days: int) -> dict[str, Any]:
    """Write a deterministic JSON Lines workload; the richer simulator if it works."""
    from cxstream.schemas.events import event_to_json

    start = datetime.fromisoformat(SIM_START).timestamp()
    n = 0
    generator = "cxstream.sim.simulator"
    t0 = time.perf_counter()
    try:
        from cxstream.sim.simulator import simulate

        with path.open("wb") as fh:
            for ev in simulate(customers, days, SIM_SEED, start):
                fh.write(event_to_json(ev) + b"\n")
                n += 1
    except Exception as exc:  # the simulator is optional: fall back to the small generator
        say(f"simulator unusable ({type(exc).__name__}: {exc}); using cxstream.sim.generator")
        from cxstream.sim.generator import generate_days, make_customers

        generator = "cxstream.sim.generator"
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


def bench_engine(settings: Any, path: Path, learn_customers: int = 100_000) -> dict[str, Any]:
    """One process: bare orjson loop, parse+validate loop, full replay (the learned churn
    risk on); events/s and ratios; then the learning section on the replayed customers."""
    import orjson

    from cxstream.agents.partitioning import partitioner_for
    from cxstream.engine.engine import Engine
    from cxstream.engine.replayer import Replayer
    from cxstream.replay import ReplayFile, read_events
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
    from cxstream.learn.fit import logistic_fit

    parts = settings.topic_partitions
    replayer = Replayer(Engine(settings.engine_config()), parts, partitioner_for(parts),
                        fit=logistic_fit)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    result = replayer.run(read_events(ReplayFile(path)))
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
        "model_versions": sum(v is not None for v in replayer.learner.versions.values()),
        "learning": bench_learning(replayer, settings, learn_customers),
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
        "serialized_p90_bytes": quantile(sizes, 0.90),
        "serialized_p99_bytes": quantile(sizes, 0.99),
        "serialized_max_bytes": sizes[-1],
        "in_memory_median_bytes": statistics.median(deep) if deep else None,
        "in_memory_sampled": len(deep),
        "target_bytes": TARGET_STATE_BYTES,
        "meets_target": quantile(sizes, 0.99) <= TARGET_STATE_BYTES,
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
    from cxstream.engine.engine import Engine
    from cxstream.engine.replayer import Replayer
    from cxstream.replay import ReplayFile, read_events

    parts = settings.topic_partitions
    replayer = Replayer(Engine(settings.engine_config()), parts, partitioner_for(parts))
    prof = cProfile.Profile()
    prof.enable()
    replayer.run(itertools.islice(read_events(ReplayFile(path)), limit))
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
