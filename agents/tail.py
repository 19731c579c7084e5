"""``cxstream alerts tail``: follow the alert topic and print alerts for people."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from cxstream.agents.security import kafka_options
from cxstream.errors import CxStreamError
from cxstream.settings import Settings

__all__ = ["format_alert", "latest_metric", "tail_alerts"]

_MARK = {"raised": "!", "escalated": "!!", "resolved": "ok"}


def format_alert(alert: dict[str, Any]) -> str:
    """One line per alert transition: when, who, what, why. A warm-up alert says so in a
    short tag; the line then gives the inactivity rule's reason, not the note."""
    reasons = [r for r in alert.get("reasons") or [] if isinstance(r, dict)]
    warm = any(r.get("code") == "fallback_inactivity" for r in reasons)
    why = ("(warm-up: inactivity rule) " if warm else "") + " ".join(
        str(r.get("message")) for r in reasons if r.get("code") != "fallback_inactivity")
    seg = alert.get("segment") or "-"
    return (
        f"{alert['decided_at']}  [{_MARK.get(str(alert['state']), '?'):>2}] "
        f"{str(alert['state']).upper():9} {alert['severity']:8} {alert['kind']:12} "
        f"{alert['customer_id']} ({seg})  {why}"
    )


async def tail_alerts(settings: Settings, *, from_beginning: bool = False,
                      limit: int | None = None) -> int:
    """Print alerts until interrupted (or ``limit`` alerts); returns how many."""
    consumer = AIOKafkaConsumer(
        settings.topic("alerts"),
        **kafka_options(settings),
        group_id=f"cxstream-tail-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        async for msg in consumer:
            print(format_alert(orjson.loads(msg.value)), flush=True)
            seen += 1
            if limit is not None and seen >= limit:
                break
    finally:
        await consumer.stop()
    return seen


async def latest_metric(settings: Settings, metric: str,
                        timeout: float = 30.0) -> dict[str | None, dict[str, Any]]:
    """The newest update of ``metric`` per segment on the metrics topic (read to its end)."""
    consumer = AIOKafkaConsumer(
        settings.topic("metrics"),
        **kafka_options(settings),
        group_id=None,  # every partition, no offsets committed
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    latest: dict[str | None, dict[str, Any]] = {}
    try:
        deadline = time.monotonic() + timeout
        ends: dict[Any, int] | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                for msg in msgs:
                    update = orjson.loads(msg.value) if msg.value is not None else {}
                    if update.get("metric") != metric:
                        continue
                    seg = update.get("segment")
                    if seg not in latest or update["window_end"] >= latest[seg]["window_end"]:
                        latest[seg] = update
            assigned = consumer.assignment()
            if ends is None and assigned:
                ends = await consumer.end_offsets(list(assigned))
            if ends is not None:
                positions = [await consumer.position(tp) for tp in ends]
                if all(pos >= end for pos, end in zip(positions, ends.values(), strict=True)):
                    return latest
        raise CxStreamError(f"could not read {settings.topic('metrics')} to its end "
                            f"within {timeout:g}s")
    finally:
        await consumer.stop()
