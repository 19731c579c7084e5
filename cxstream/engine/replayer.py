"""Replay: run the engine over events from a file, exactly as the worker would.

Events are routed to partitions with the same partitioner the publisher uses
(Kafka's murmur2 on the customer id), and each partition keeps its own stream
time, so replay and the streaming worker decide the same alerts for the same
events. Metric deltas are summed across partitions, as the worker's metrics
agent does after re-keying them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cxstream.engine.alerts import Alert
from cxstream.engine.churn import ChurnModel
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.learning import Empty, Fit, Learner
from cxstream.engine.metrics import MetricBook
from cxstream.engine.partition import Outcome, PartitionProcessor, StreamClock
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
    future: int = 0
    duplicates: int = 0
    settled_early: int = 0  # flood-bounded early decisions (``engine.MAX_PENDING``)
    late_events: list[Event] = field(default_factory=list)
    future_events: list[Event] = field(default_factory=list)
    health: dict[str, HealthSnapshot] = field(default_factory=dict)
    # End of input: the event time decisions were settled up to, and what that decided.
    settled_to: float | None = None
    settled_alerts: int = 0
    # The events were fed in another order than their source's (a file sorted first).
    reordered: bool = False
    # The churn model versions settled, by boundary (None: warming up).
    versions: dict[float, ChurnModel | None] = field(default_factory=dict)


class Replayer:
    """Feeds events to one ``PartitionProcessor`` per partition."""

    def __init__(
        self,
        engine: Engine,
        partitions: int = 1,
        partition_of: Callable[[str], int] | None = None,
        now: float | None = None,
        fit: Fit | None = None,
    ) -> None:
        """:param now: the publish time of every event (the replay's wall clock): an
            event dated more than ``max_future_seconds`` after it is refused as
            ``future``. Without it, no event is in the future.
        :param fit: trains churn model versions (``cxstream.learn.fit.logistic_fit``);
            without it the learned churn risk stays in warm-up."""
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        if partitions > 1 and partition_of is None:
            raise ValueError("partition_of is required with more than one partition")
        self.partition_of = partition_of or (lambda _customer_id: 0)
        self.stores = [DictStore() for _ in range(partitions)]
        lateness = engine.config.allowed_lateness_seconds
        self.learner = Learner(partitions, fit, engine.config.learning)
        self.processors = [
            PartitionProcessor(engine, store, StreamClock(lateness), track_health=False,
                               learner=self.learner, partition=i)
            for i, store in enumerate(self.stores)
        ]
        self.now = now
        self.last_event_at = -math.inf
        self.result = ReplayResult()

    def feed(self, event: Event) -> list[Alert]:
        """Process one event; returns the alerts it decided."""
        res = self.result
        res.events += 1
        partition = self.partition_of(event.customer_id)
        out = self.processors[partition].process(event, now=self.now)
        if out.future:
            res.future += 1
            res.future_events.append(event)
            return []
        if out.late:
            res.late += 1
            res.late_events.append(event)
            return []
        if event.occurred_at > self.last_event_at:
            self.last_event_at = event.occurred_at
        if out.duplicate:
            res.duplicates += 1
        else:
            res.applied += 1
        res.settled_early += out.settled_early
        return self._take(out, partition)

    def _take(self, out: Outcome, partition: int) -> list[Alert]:
        for delta in out.metrics:
            self.result.metrics.add(delta)
        self.result.alerts.extend(out.alerts)
        alerts = out.alerts
        if out.rows:
            self.learner.add(out.rows, partition)
            alerts = alerts + self._learn()
        return alerts

    def _learn(self) -> list[Alert]:
        """Train every version the partitions allow, and let the partitions that waited
        for one decide on; repeat while that lets more versions train. A partition
        without customers holds nothing back (in event-time order, it has none
        before the versions that others wait for)."""
        alerts: list[Alert] = []
        for i, proc in enumerate(self.processors):
            if proc.customers == 0:
                self.learner.add([Empty(i)], i)
        while self.learner.train_ready():
            for i, proc in enumerate(self.processors):
                if proc.waiting:
                    out = proc.advance()
                    self._record(out, i)
                    alerts.extend(out.alerts)
        return alerts

    def _record(self, out: Outcome, partition: int) -> None:
        for delta in out.metrics:
            self.result.metrics.add(delta)
        self.result.alerts.extend(out.alerts)
        if out.rows:
            self.learner.add(out.rows, partition)

    def settle(self) -> list[Alert]:
        """End of input: decide everything due up to the last event time, in every
        partition (a live worker waits for the allowed lateness instead, because more
        may come). Nothing after the last event is invented."""
        if self.last_event_at == -math.inf:
            return []
        until = math.nextafter(self.last_event_at, math.inf)  # the last event itself too
        alerts: list[Alert] = []
        for i, proc in enumerate(self.processors):
            alerts.extend(self._take(proc.settle(until), i))
        self.result.settled_to = self.last_event_at
        self.result.settled_alerts += len(alerts)
        return alerts

    def run(self, events: Iterable[Event], settle: bool = False) -> ReplayResult:
        """Feed every event (and ``settle`` at the end if asked); return the result with
        every customer's final health."""
        for event in events:
            self.feed(event)
        if settle:
            self.settle()
        self.result.versions = dict(self.learner.versions)
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
