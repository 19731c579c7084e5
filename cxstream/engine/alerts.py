"""Alert episodes: what an alert is, and how its identity is derived.

An episode is one stretch of risk for one customer and one kind: it is raised,
may escalate, and is resolved. Every message of an episode carries the same
``alert_id``, derived only from customer, kind and the event time the episode
started, so a restart or a replay of the same events yields the same id.
``seq`` numbers the transitions within the episode; consumers deduplicate on
``(alert_id, seq)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["Alert", "AlertState", "Reason", "Severity", "alert_id", "rfc3339", "SEVERITY_RANK"]

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

AlertState = Literal["raised", "escalated", "resolved"]
Severity = Literal["info", "warning", "critical"]


def rfc3339(ts: float) -> str:
    """Format POSIX seconds as RFC 3339 UTC with a ``Z`` (millisecond precision)."""
    dt = datetime.fromtimestamp(round(ts, 3), tz=UTC)
    text = dt.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def alert_id(customer_id: str, kind: str, started_at: float) -> str:
    """Deterministic episode id: the same customer, kind and start give the same id."""
    started_ms = round(started_at * 1000)
    material = f"{customer_id}\x1f{kind}\x1f{started_ms}".encode()
    return hashlib.blake2b(material, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an alert changed: a code, what was observed, the line it crossed, a sentence."""

    code: str
    value: float | None
    threshold: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The wire form."""
        return {
            "code": self.code,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Alert:
    """One transition of an alert episode; ``decided_at`` is event time."""

    alert_id: str
    customer_id: str
    kind: str
    state: AlertState
    severity: Severity
    health_score: float | None
    reasons: tuple[Reason, ...]
    decided_at: float
    segment: str | None
    seq: int

    def to_dict(self) -> dict[str, Any]:
        """The wire form documented in ``schemas/json/alert.schema.json``."""
        return {
            "alert_id": self.alert_id,
            "customer_id": self.customer_id,
            "kind": self.kind,
            "state": self.state,
            "severity": self.severity,
            "health_score": self.health_score,
            "reasons": [r.to_dict() for r in self.reasons],
            "decided_at": rfc3339(self.decided_at),
            "segment": self.segment,
            "seq": self.seq,
        }
