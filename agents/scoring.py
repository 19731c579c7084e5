"""The score step of the worker: one message in, engine outcome published.

Holds one ``PartitionProcessor`` per assigned partition, restored from the
changelogged table the first time a partition is seen after a rebalance, so a
restarted or newly assigned worker carries on from the table's state.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from cxstream.agents.ingest import dead_letter, decode
from cxstream.agents.sensors import ServiceMetrics
from cxstream.agents.tables import TableStore
from cxstream.alerts import rfc3339
from cxstream.engine import Engine
from cxstream.errors import InvalidEvent
from cxstream.events import Event
from cxstream.metrics import MetricDelta
from cxstream.participation import ParticipationModel
from cxstream.partition import Outcome, PartitionProcessor, StreamClock
from cxstream.scoring import HealthSnapshot

__all__ = ["CLOCK_SAVE_EVERY", "POISON_ATTEMPTS", "Scorer", "clock_key", "model_key",
           "route_deltas"]

log = logging.getLogger(__name__)
# A deterministic failure fails every time; a transient one (memory, a store
# hiccup) rarely twice. Three attempts, then the event is dead-lettered and the
# partition moves on.
POISON_ATTEMPTS = 3
# Events between checkpoints of a partition's stream clock in the table.
CLOCK_SAVE_EVERY = 100


def clock_key(partition: int) -> str:
    """Key of a partition's saved clock in the clocks table."""
    return str(partition)


def model_key(partition: int) -> str:
    """Key of a partition's learned participation model in the clocks table."""
    return f"participation:{partition}"


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
        clocks: Any,
    ) -> None:
        self.engine = engine
        self.table = table
        self.topics = topics
        self.metrics = metrics
        self.partition_of = partition_of
        self.highwater = highwater
        self.clocks = clocks  # a partition's stream clock, checkpointed (see _save_clock)
        self.probe = probe
        self.processors: dict[int, PartitionProcessor] = {}
        self._ends: dict[tuple[str, int], int] = {}
        self._unsaved: dict[int, int] = {}
        self.at_risk: dict[str, HealthSnapshot] = {}
        # True once the tables are recovered after the latest rebalance and every
        # owned partition is indexed; lookups answer 503 until then.
        self.ready = False

    def forget(self) -> None:
        """Drop in-memory indexes after a rebalance; they are rebuilt from the table."""
        self.processors.clear()
        self._ends.clear()
        self.at_risk.clear()
        self.ready = False

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
            saved = self.clocks.get(clock_key(partition))
            clock = (StreamClock.from_dict(orjson.loads(saved),
                                           self.engine.config.allowed_lateness_seconds)
                     if saved is not None else None)
            model = self.clocks.get(model_key(partition))
            proc = PartitionProcessor.restore(
                self.engine, store, clock,
                ParticipationModel.from_dict(orjson.loads(model)) if model is not None else None)
            for st in store.values():
                if "at_risk" in st.episodes:
                    self.note_risk(self.engine.snapshot(st))
            for topic, end in backlog.items():
                proc.clock.hold(topic)
                self._ends[(topic, partition)] = end
            self.processors[partition] = proc
        return proc

    def _process(self, proc: PartitionProcessor, event: Event, source: str,
                 caught_up: bool, offset: int) -> Outcome:
        """Process with bounded retries; the table is written only on success."""
        for attempt in range(1, POISON_ATTEMPTS + 1):
            try:
                return proc.process(event, source=source, caught_up=caught_up,
                                    position=offset)
            except Exception:
                if attempt == POISON_ATTEMPTS:
                    raise
                log.warning("processing %s failed (attempt %d), retrying", event.event_id,
                            attempt, exc_info=True)
        raise AssertionError("unreachable")

    def _save_clock(self, partition: int, proc: PartitionProcessor) -> None:
        """Checkpoint the partition's clock in the table every so often.

        An older checkpoint only restores a lower watermark (decisions later,
        never an event wrongly late), so it need not be written per event.
        """
        n = self._unsaved.get(partition, 0) + 1
        if n < CLOCK_SAVE_EVERY:
            self._unsaved[partition] = n
            return
        self._unsaved[partition] = 0
        self.clocks[clock_key(partition)] = orjson.dumps(proc.clock.to_dict())

    def caught_up(self, tp: Any, offset: int) -> bool:
        """Whether ``offset`` is the last record of ``tp`` known right now."""
        end = max(self._ends.get((tp.topic, tp.partition), 0), self.highwater(tp) or 0)
        return offset + 1 >= end

    async def handle(self, message: Any, raw: bytes | None) -> None:
        """Process one input message; every path ends published or dead-lettered."""
        started = time.perf_counter()
        try:
            await self._handle(message, raw)
        finally:
            # Dead letters count too: taking a message off the topic is the work.
            self.metrics.latency.observe(time.perf_counter() - started)

    async def _handle(self, message: Any, raw: bytes | None) -> None:
        try:
            event = decode(raw)
        except InvalidEvent as exc:
            await self._dead(message, raw, exc)
            return
        proc = await self.processor(message.partition)
        caught_up = self.caught_up(message.tp, message.offset)
        try:
            out = self._process(proc, event, message.topic, caught_up, message.offset)
        except Exception as exc:  # a poison pill: an event the engine cannot process
            await self._dead(message, raw, InvalidEvent(
                f"processing failed {POISON_ATTEMPTS} times: {type(exc).__name__}: {exc}",
                code="processing_error"))
            return
        m = self.metrics
        if out.late:
            wm = proc.clock.watermark
            await self._dead(message, raw, InvalidEvent(
                f"occurred_at {rfc3339(event.occurred_at)} is before the partition's watermark "
                f"{rfc3339(wm)} (allowed lateness "
                f"{self.engine.config.allowed_lateness_seconds:g}s)", code="late"))
            return
        if out.duplicate:  # no effect of its own; may still release a held input
            m.duplicates.inc()
        else:
            m.events.labels(event.type).inc()
        if out.new_customer:
            m.customers.inc()
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
        self._save_clock(message.partition, proc)
        if proc.model.dirty:  # outcomes are rare; the model is saved with each one
            self.clocks[model_key(message.partition)] = orjson.dumps(proc.model.to_dict())
            proc.model.dirty = False
        if proc.clock.watermark > -math.inf:
            m.watermark.set(max(p.clock.watermark for p in self.processors.values()))

    async def _dead(self, message: Any, raw: bytes | None, error: InvalidEvent) -> None:
        await self.topics.deadletters.send(
            key=message.key,
            value=dead_letter(raw, error, topic=message.topic, partition=message.partition,
                              offset=message.offset, key=message.key),
        )
        self.metrics.dead_letters.labels(error.code).inc()
