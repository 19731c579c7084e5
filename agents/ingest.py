"""Turning raw Kafka messages into engine events, or into dead letters.

Nothing that arrives is dropped: a message that is not a valid event becomes
a dead letter carrying its original bytes, where it came from, and why.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from cxstream.alerts import rfc3339
from cxstream.errors import InvalidEvent
from cxstream.events import Event
from cxstream.schemas.events import parse_event

__all__ = ["dead_letter", "decode"]


def decode(raw: bytes | None) -> Event:
    """Validate one message value; raises ``InvalidEvent`` with a reason."""
    if raw is None:
        raise InvalidEvent("message has no value (tombstone)", code="empty")
    return parse_event(raw)


def dead_letter(
    raw: bytes | None,
    *,
    code: str,
    reason: str,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
) -> bytes:
    """The dead-letter record (``schemas/json/dead-letter.schema.json``) as JSON bytes."""
    record: dict[str, Any] = {
        "reason": reason,
        "code": code,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "key": key.decode("utf-8", errors="replace") if key is not None else None,
        "payload_b64": base64.b64encode(raw or b"").decode("ascii"),
        "received_at": rfc3339(time.time()),
    }
    return orjson.dumps(record)
