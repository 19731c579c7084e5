"""End-to-end section: one worker process against a raw aiokafka loop on the same topics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cxstream.devtools.bench.common import TARGET_WORKER_RATIO, say

__all__ = ["WorkerProcess", "bench_e2e", "delete_topics", "free_port", "local_broker",
           "settings_env"]


@contextlib.contextmanager
def local_broker(bootstrap: str | None, keep: bool) -> Iterator[tuple[str, str]]:
    """The broker to use: the one given, the local one if running, else start it."""
    if bootstrap:
        yield bootstrap, "given (--bootstrap)"
        return
    from cxstream.devtools.broker import BrokerConfig, down, status, up

    cfg = BrokerConfig.from_env()
    if status(cfg).running:
        yield cfg.bootstrap, f"reused the running local broker ({cfg.home})"
        return
    say(f"starting the local broker on {cfg.bootstrap} ({cfg.home})")
    up(cfg, timeout_s=120)
    try:
        yield cfg.bootstrap, f"started for this run and stopped after ({cfg.home})"
    finally:
        if keep:
            say(f"leaving the broker running on {cfg.bootstrap}")
        else:
            down(cfg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Any) -> dict[str, str]:
    """The environment a worker subprocess needs to run with ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    return env | settings.to_env()


class WorkerProcess:
    """A ``cxstream worker`` subprocess in its own session, its log in a file."""

    def __init__(self, settings: Any, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cxstream.cli", "worker"],
            env=settings_env(settings), stdout=self._log, stderr=subprocess.STDOUT,
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


def delete_topics(settings: Any) -> None:
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
        say(f"could not delete the run's topics: {type(exc).__name__}: {exc}")


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
    say(f"e2e: published {n:,} events in {publish_s:.1f}s; raw aiokafka loop…")
    # Two passes (the second reads warm pages); the faster one counts.
    passes = [asyncio.run(_raw_loop(settings, n, timeout=max(60.0, n / 500.0)))
              for _ in range(2)]
    raw = max(passes, key=lambda p: p["eps"])
    raw["passes_eps"] = [p["eps"] for p in passes]
    say(f"e2e: raw loop {raw['eps']:,.0f} events/s; worker (RocksDB)…")
    worker = WorkerProcess(settings, workdir / "worker-e2e.log")
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


def _watch_worker(worker: WorkerProcess, n: int, timeout: float) -> dict[str, Any]:
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
