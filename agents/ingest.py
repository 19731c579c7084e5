"""Turning raw Kafka messages into engine events, or into dead letters.

Nothing that arrives is dropped: a message that is not a valid event becomes
a dead letter carrying its original bytes, where it came from, and why.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cxstream.engine.events import Event
from cxstream.errors import InvalidEvent
from cxstream.schemas.events import parse_event
from cxstream.schemas.outputs import dead_letter_for

__all__ = ["dead_letter", "decode"]


def decode(raw: bytes | None) -> Event:
    """Validate one message value; raises ``InvalidEvent`` with a reason."""
    if raw is None:
        raise InvalidEvent("message has no value (tombstone)", code="empty")
    return parse_event(raw)


def dead_letter(
    raw: bytes | None,
    error: InvalidEvent,
    *,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
) -> bytes:
    """The dead-letter record (``schemas/json/dead-letter.schema.json``) as JSON bytes."""
    record = dead_letter_for(raw or b"", error, received_at=datetime.now(UTC), topic=topic,
                             partition=partition, offset=offset, key=key)
    return record.model_dump_json().encode()
