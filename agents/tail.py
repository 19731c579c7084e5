"""``cxstream alerts tail``: follow the alert topic and print alerts for people."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from cxstream.agents.security import kafka_options
from cxstream.settings import Settings

__all__ = ["format_alert", "tail_alerts"]

_MARK = {"raised": "!", "escalated": "!!", "resolved": "ok"}


def format_alert(alert: dict[str, Any]) -> str:
    """One line per alert transition: when, who, what, why."""
    reasons = alert.get("reasons") or []
    why = "; ".join(str(r.get("message")) for r in reasons if isinstance(r, dict))
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
