"""cxstream's wire contracts: pydantic models of the events it accepts and the messages it emits.

Import as ``cxstream.schemas`` (``schemas/`` is linked into the package, see STYLE.md
section 2). ``events`` turns bytes into engine events, ``outputs`` documents the alert,
metric and dead-letter messages, ``export`` writes their JSON Schemas to ``json/``.
May import the engine (to build its events) and ``cxstream.errors``; nothing else.
"""

from __future__ import annotations

from cxstream.schemas.events import (
    MAX_EVENT_BYTES,
    event_to_json,
    parse_event,
    validate_event_obj,
)
from cxstream.schemas.outputs import AlertOut, AlertReason, DeadLetterOut, MetricUpdateOut

__all__ = [
    "MAX_EVENT_BYTES",
    "AlertOut",
    "AlertReason",
    "DeadLetterOut",
    "MetricUpdateOut",
    "event_to_json",
    "parse_event",
    "validate_event_obj",
]
