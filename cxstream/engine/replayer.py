"""Replay: run the engine over events from a file, exactly as the worker would.

Events are routed to partitions with the same partitioner the publisher uses
(Kafka's murmur2 on the customer id), and each partition keeps its own stream
time, so replay and the streaming worker decide the same alerts for the same
events. Metric deltas are summed across partitions, as the worker's metrics
agent does after re-keying them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cxstream.engine.alerts import Alert
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.metrics import MetricBook
from cxstream.engine.partition import PartitionProcessor, StreamClock
from cxstream.engine.scoring import HealthSnapshot
from cxstream.engine.state import DictStore

__all__ = ["ReplayResult", "Replayer"]


@dataclass(slots=True)
class ReplayResult:
    """Alerts in decision order, final metric values and counts."""

    alerts: list[Alert] = field(default_factory=list)
    metrics: MetricBook = field(default_factory=MetricBook)
    events: int = 0
    applied: int = 0
    late: int = 0
    duplicates: int = 0
    late_events: list[Event] = field(default_factory=list)
    health: dict[str, HealthSnapshot] = field(default_factory=dict)


class Replayer:
    """Feeds events to one ``PartitionProcessor`` per partition."""

    def __init__(
        self,
        engine: Engine,
        partitions: int = 1,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        if partitions > 1 and partition_of is None:
            raise ValueError("partition_of is required with more than one partition")
        self.partition_of = partition_of or (lambda _customer_id: 0)
        self.stores = [DictStore() for _ in range(partitions)]
        lateness = engine.config.allowed_lateness_seconds
        self.processors = [
            PartitionProcessor(engine, store, StreamClock(lateness), track_health=False)
            for store in self.stores
        ]
        self.result = ReplayResult()

    def feed(self, event: Event) -> list[Alert]:
        """Process one event; returns the alerts it decided."""
        res = self.result
        res.events += 1
        out = self.processors[self.partition_of(event.customer_id)].process(event)
        if out.late:
            res.late += 1
            res.late_events.append(event)
            return []
        if out.duplicate:
            res.duplicates += 1
            return []
        res.applied += 1
        for delta in out.metrics:
            res.metrics.add(delta)
        res.alerts.extend(out.alerts)
        return out.alerts

    def run(self, events: Iterable[Event]) -> ReplayResult:
        """Feed every event and return the result (with every customer's final health)."""
        for event in events:
            self.feed(event)
        engine = self.processors[0].engine
        for store in self.stores:
            for st in store.values():
                if st.score is not None:
                    self.result.health[st.customer_id] = engine.snapshot(st)
        return self.result

    @property
    def customers(self) -> int:
        """How many customers have state."""
        return sum(len(s) for s in self.stores)
