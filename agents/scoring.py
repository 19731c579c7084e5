"""The score step of the worker: one message in, engine outcome published.

Holds one ``PartitionProcessor`` per assigned partition, restored from the
changelogged table the first time a partition is seen after a rebalance, so a
restarted or newly assigned worker carries on from the table's state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from cxstream.alerts import rfc3339
from cxstream.engine import Engine
from cxstream.errors import InvalidEvent
from cxstream.metrics import MetricDelta
from cxstream.partition import PartitionProcessor
from cxstream.scoring import HealthSnapshot

from .ingest import decode, dead_letter
from .sensors import ServiceMetrics
from .tables import TableStore

__all__ = ["Scorer", "route_deltas"]


def route_deltas(deltas: list[MetricDelta]) -> dict[bytes, list[list[Any]]]:
    """Group deltas by segment, the key of the deltas topic.

    One segment's windows all land on one partition of the metrics agent,
    which derived metrics (stickiness, churn) need; ``*`` is the all-segments
    total (never a valid segment name).
    """
    routes: dict[bytes, list[list[Any]]] = {}
    for d in deltas:
        key = (d.segment if d.segment is not None else "*").encode()
        routes.setdefault(key, []).append(d.to_list())
    return routes


class Scorer:
    """Decode → ``PartitionProcessor.process`` → send, for one message at a time."""

    def __init__(
        self,
        engine: Engine,
        table: Any,
        topics: Any,
        metrics: ServiceMetrics,
        partition_of: Callable[[str], int],
        highwater: Callable[[Any], int | None],
        probe: Callable[[int], Awaitable[dict[str, int]]],
    ) -> None:
        self.engine = engine
        self.table = table
        self.topics = topics
        self.metrics = metrics
        self.partition_of = partition_of
        self.highwater = highwater
        self.probe = probe
        self.processors: dict[int, PartitionProcessor] = {}
        self._ends: dict[tuple[str, int], int] = {}
        self.at_risk: dict[str, HealthSnapshot] = {}

    def forget(self) -> None:
        """Drop in-memory indexes after a rebalance; they are rebuilt from the table."""
        self.processors.clear()
        self._ends.clear()
        self.at_risk.clear()

    def note_risk(self, snap: HealthSnapshot) -> None:
        """Keep the in-memory at-risk index (customers with an open at_risk episode)."""
        if any(kind == "at_risk" for kind, *_ in snap.open_alerts):
            self.at_risk[snap.customer_id] = snap
        else:
            self.at_risk.pop(snap.customer_id, None)

    async def processor(self, partition: int) -> PartitionProcessor:
        """The partition's processor, restored from the table and told of backlogs."""
        proc = self.processors.get(partition)
        if proc is None:
            store = TableStore(self.table, lambda cid: self.partition_of(cid) == partition)
            backlog = await self.probe(partition)
            if partition in self.processors:  # built by someone else while we awaited
                return self.processors[partition]
            proc = PartitionProcessor.restore(self.engine, store)
            for st in store.values():
                if "at_risk" in st.episodes:
                    self.note_risk(self.engine.snapshot(st))
            for topic, end in backlog.items():
                proc.clock.hold(topic)
                self._ends[(topic, partition)] = end
            self.processors[partition] = proc
        return proc

    def caught_up(self, tp: Any, offset: int) -> bool:
        """Whether ``offset`` is the last record of ``tp`` known right now."""
        end = max(self._ends.get((tp.topic, tp.partition), 0), self.highwater(tp) or 0)
        return offset + 1 >= end

    async def handle(self, message: Any, raw: bytes | None) -> None:
        """Process one input message; every path ends published or dead-lettered."""
        started = time.perf_counter()
        try:
            event = decode(raw)
        except InvalidEvent as exc:
            await self._dead(message, raw, exc)
            return
        proc = await self.processor(message.partition)
        caught_up = self.caught_up(message.tp, message.offset)
        out = proc.process(event, source=message.topic, caught_up=caught_up)
        m = self.metrics
        if out.late:
            wm = proc.clock.watermark
            await self._dead(message, raw, InvalidEvent(
                f"occurred_at {rfc3339(event.occurred_at)} is before the partition's watermark "
                f"{rfc3339(wm)} (allowed lateness "
                f"{self.engine.config.allowed_lateness_seconds:g}s)", code="late"))
            return
        if out.duplicate:
            m.duplicates.inc()
            return
        m.events.labels(event.type).inc()
        topics = self.topics
        for alert in out.alerts:
            await topics.alerts.send(key=alert.customer_id.encode(),
                                     value=orjson.dumps(alert.to_dict()))
            m.alerts.labels(alert.kind, alert.state).inc()
        for snap in out.health:
            await topics.health.send(key=snap.customer_id.encode(),
                                     value=orjson.dumps(snap.to_dict()))
            self.note_risk(snap)
        for route, rows in route_deltas(out.metrics).items():
            await topics.deltas.send(key=route, value=orjson.dumps(rows))
        if proc.clock.watermark > -math.inf:
            m.watermark.set(max(p.clock.watermark for p in self.processors.values()))
        m.latency.observe(time.perf_counter() - started)

    async def _dead(self, message: Any, raw: bytes | None, error: InvalidEvent) -> None:
        await self.topics.deadletters.send(
            key=message.key,
            value=dead_letter(raw, error, topic=message.topic, partition=message.partition,
                              offset=message.offset, key=message.key),
        )
        self.metrics.dead_letters.labels(error.code).inc()
