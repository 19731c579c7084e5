"""Latency section: event-to-alert p50/p99 at a fixed rate below saturation."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import Any

from cxstream.devtools.bench.common import LATENCY_BACKGROUND_CUSTOMERS, TARGET_P99_MS
from cxstream.devtools.bench.worker import WorkerProcess

__all__ = ["bench_latency", "quantile"]


def bench_latency(settings: Any, workdir: Path, rate: float, duration: float,
                  trigger_share: float, worker_eps: float | None,
                  warmup: float = 5.0) -> dict[str, Any]:
    """Event-to-alert latency at a fixed rate: publish wall time → alert arrival."""
    worker = WorkerProcess(settings, workdir / "worker-latency.log")
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


async def _latency_run(settings: Any, worker: WorkerProcess, rate: float, duration: float,
                       trigger_share: float, warmup: float) -> dict[str, Any]:
    import orjson
    from aiokafka import AIOKafkaConsumer

    from cxstream.agents.publisher import EventPublisher
    from cxstream.agents.security import kafka_options
    from cxstream.engine.events import Event
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
        "p50_ms": quantile(lat_ms, 0.50) if lat_ms else None,
        "p90_ms": quantile(lat_ms, 0.90) if lat_ms else None,
        "p99_ms": quantile(lat_ms, 0.99) if lat_ms else None,
        "max_ms": lat_ms[-1] if lat_ms else None,
        "min_ms": lat_ms[0] if lat_ms else None,
        "publish_to_alert_send_p50_ms": quantile(to_worker_send, 0.5) if lat_ms else None,
        "publish_to_alert_send_p99_ms": quantile(to_worker_send, 0.99) if lat_ms else None,
        "alert_send_to_arrival_p50_ms": quantile(to_arrival, 0.5) if lat_ms else None,
        "alert_send_to_arrival_p99_ms": quantile(to_arrival, 0.99) if lat_ms else None,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": bool(lat_ms) and quantile(lat_ms, 0.99) < TARGET_P99_MS
        and len(arrived) == len(sent_at),
    }


def quantile(sorted_values: list[float] | list[int], q: float) -> float:
    """Nearest-rank quantile of an ascending list."""
    if not sorted_values:
        raise ValueError("no values")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[k])
