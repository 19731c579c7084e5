"""The engine: one customer's state and one event in, a ``Decision`` out.

``Engine.apply`` deduplicates, updates the customer's state, records the
signals and the additive metric deltas, and brings the customer's alert
decisions up to the watermark it is given. ``Engine.advance`` does the last
part alone, for customers the sweep reaches without an event of their own.
Nothing here does I/O or reads a clock: the same inputs always give the same
``Decision``, which is what lets replay and the streaming worker agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cxstream import inactivity
from cxstream.alerts import Alert
from cxstream.config import EngineConfig
from cxstream.events import ACTIVITY_TYPES, Event
from cxstream.metrics import MetricDelta, window_of
from cxstream.state import CustomerState

__all__ = ["Decision", "Engine", "event_id_hash"]


def event_id_hash(event_id: str) -> int:
    """A stable 64-bit fingerprint of an event id (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


@dataclass(slots=True)
class Decision:
    """What one event (or one sweep) changed and what it says to publish."""

    state: CustomerState
    alerts: list[Alert] = field(default_factory=list)
    metrics: list[MetricDelta] = field(default_factory=list)
    duplicate: bool = False


class Engine:
    """Pure decision logic shared by replay and the streaming worker."""

    __slots__ = ("config",)

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def apply(
        self, state: CustomerState | None, event: Event, watermark: float | None
    ) -> Decision:
        """Apply one accepted (not late) event to a customer's state."""
        t = event.occurred_at
        st = state
        if st is None:
            # A new customer starts settled at the watermark: nothing before it is theirs.
            st = CustomerState(event.customer_id, first_seen_at=t, max_seen_at=t,
                               settled_at=watermark)
        fingerprint = event_id_hash(event.event_id)
        if fingerprint in st.recent_ids:
            return Decision(st, duplicate=True)
        alerts = self.advance(st, watermark) if watermark is not None else []

        st.recent_ids.append(fingerprint)
        if len(st.recent_ids) > self.config.dedupe_ids:
            del st.recent_ids[0]
        if t < st.first_seen_at:
            st.first_seen_at = t
        if t > st.max_seen_at:
            st.max_seen_at = t
        st.events += 1
        if event.segment is not None:
            st.segment = event.segment

        deltas: list[MetricDelta] = []
        if event.type in ACTIVITY_TYPES:
            inactivity.note_activity(st, t, self.config.inactivity_for(st.segment))
            self._count_active(st, t, deltas)
        elif event.type == "email.sent":
            self._delta(deltas, "email_open_rate", st.segment, t, 0.0, 1.0)
        elif event.type == "email.bounced":
            self._delta(deltas, "email_open_rate", st.segment, t, 0.0, -1.0)
        if event.type == "email.opened":
            self._delta(deltas, "email_open_rate", st.segment, t, 1.0, 0.0)
        return Decision(st, alerts, deltas)

    def advance(self, st: CustomerState, watermark: float) -> list[Alert]:
        """Bring a customer's decisions up to ``watermark`` (idempotent)."""
        if st.settled_at is not None and watermark <= st.settled_at:
            return []
        st.settled_at = watermark
        for seconds, starts in st.counted.items():
            starts[:] = [s for s in starts if s + seconds > watermark]
        return inactivity.settle(st, watermark, self.config.inactivity_for(st.segment))

    def due_at(self, st: CustomerState) -> float | None:
        """The next watermark at which ``advance`` would decide something."""
        return inactivity.due_at(st, self.config.inactivity_for(st.segment))

    def _count_active(self, st: CustomerState, t: float, deltas: list[MetricDelta]) -> None:
        for seconds in self.config.metric_windows_seconds:
            start = window_of(t, seconds)
            starts = st.counted.setdefault(seconds, [])
            if start not in starts:
                starts.append(start)
                self._delta(deltas, "active_customers", st.segment, t, 1.0, 0.0, (seconds,))

    def _delta(
        self,
        deltas: list[MetricDelta],
        metric: str,
        segment: str | None,
        t: float,
        num: float,
        den: float,
        windows: tuple[int, ...] | None = None,
    ) -> None:
        for seconds in windows or self.config.metric_windows_seconds:
            start = window_of(t, seconds)
            deltas.append(MetricDelta(metric, None, start, seconds, num, den))
            if segment is not None:
                deltas.append(MetricDelta(metric, segment, start, seconds, num, den))
