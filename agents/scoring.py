"""The score step of the worker: input messages in, engine outcomes published.

Holds one ``PartitionProcessor`` per assigned partition, restored from the
changelogged table the first time a partition is seen after a rebalance, so a
restarted or newly assigned worker carries on from the table's state.

**Runs.** The agent takes messages in batches; the messages of one topic
partition in a batch are processed one by one, in order, and *commit* as one
run: one outbox record, one table write per changed customer, one metric-delta
message per segment. Per message that would be about five produced records
(record, its tombstone, state, delta, health); per run it is about one per
changed customer, which is what lets one worker keep up with a backlog.

**The outbox** (issue 7). Processing is at-least-once: after a crash or a
rebalance everything after the group's committed offset is delivered again.
The table state can be ahead of what was published (a ``kill -9`` loses the
producer's buffer but not RocksDB), so a redelivered message must not simply be
skipped as a repeat: its outputs may never have left. And a state can also be
*behind* (recovery replays changelog records over the local store), so
processing it again could decide the same thing at another moment. So every
run that changed or published anything first writes an outbox record to the
customers table, under ``\\x00o|<partition>|<topic>|<offset of its last
message>``: the states it changed and everything it published, dead letters
included. Only then are the states written and the outputs sent. When a
message at or below a live record's offset comes again, nothing is decided
again: the recorded states are put back where the table holds an older
version, and the recorded outputs are sent again (alerts keep their
``(alert_id, seq)``; metric deltas carry their run in a ``cx-src`` header, and
the metrics agent folds each run once). Records below the group's committed
offset are deleted as processing goes on. The record lives in the same table,
hence the same changelog partition, as the states, written before them, so any
changelog prefix that holds one of a run's states holds its record too.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from faust.streams import _current_event
from faust.types import TP

from cxstream.agents.ingest import dead_letter, decode
from cxstream.agents.sensors import ServiceMetrics
from cxstream.agents.tables import INTERNAL_PREFIX, TableStore
from cxstream.engine.alerts import Alert, rfc3339
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.learning import Empty, Learner, LearningRow, row_to_list
from cxstream.engine.metrics import MetricDelta
from cxstream.engine.participation import ParticipationModel
from cxstream.engine.partition import Outcome, PartitionProcessor, StreamClock
from cxstream.engine.scoring import HealthSnapshot
from cxstream.engine.state import CustomerState
from cxstream.errors import InvalidEvent

__all__ = ["CLOCK_SAVE_EVERY", "DELTA_SOURCE_HEADER", "OUTBOX_CLEAN_EVERY", "POISON_ATTEMPTS",
           "RISK_KINDS", "Scorer", "clock_key", "delta_source", "model_key", "outbox_key",
           "route_deltas"]

log = logging.getLogger(__name__)
# The kinds that put a customer on ``GET /at-risk``: the learned churn risk (the
# default output) and the low health score.
RISK_KINDS = frozenset({"churn_risk", "at_risk"})
# A deterministic failure fails every time; a transient one (memory, a store
# hiccup) rarely twice. Three attempts, then the event is dead-lettered and the
# partition moves on.
POISON_ATTEMPTS = 3
# Events between checkpoints of a partition's stream clock in the table.
CLOCK_SAVE_EVERY = 100
# Runs of a partition between deletions of its committed outbox records.
OUTBOX_CLEAN_EVERY = 50
# A run commits early once its outbox record would pass this size (estimated), so
# the record and each metric-delta message stay well under Kafka's 1 MB message limit.
RUN_MAX_BYTES = 256 * 1024
# Estimated encoded size of a metric-delta row and of an alert or health snapshot.
_DELTA_BYTES = 100
_ROWS_PER_MESSAGE = 2_000  # learning rows per message: ~200 KB
_OUTPUT_BYTES = 800
# Header of a metric-delta message: the input message it came from,
# ``<family>/<partition>|<offset>`` (see ``delta_source``).
DELTA_SOURCE_HEADER = "cx-src"
_OUTBOX = INTERNAL_PREFIX + "o|"
# Suffix of the source of what a repeated message's clock step decided (a sweep).
_SWEPT = "~"
# A tick follows held events after the publish grace plus this, and backs off to at most
# TICK_MAX_S while a slower input keeps them held.
TICK_AFTER_S = 0.05
TICK_MAX_S = 5.0


def late_reason(occurred_at: float, watermark: float, published_at: float,
                lateness: float) -> str:
    """Why an event is late, in words an operator can act on."""
    return (f"occurred_at {rfc3339(occurred_at)} is before the partition's watermark "
            f"{rfc3339(watermark)}: it was published ({rfc3339(published_at)}) after the "
            f"stream had moved on by more than the allowed lateness ({lateness:g}s)")


def _log_tick_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("sending a tick failed: %r (the next event moves the clock instead)",
                    task.exception())


def clock_key(partition: int) -> str:
    """Key of a partition's saved clock in the clocks table."""
    return str(partition)


def model_key(partition: int) -> str:
    """Key of a partition's learned participation model in the customers table.

    In the customers table, not the clocks table: it changes with the states of
    the message that taught it, so it is in that message's outbox record and on
    the same changelog partition as those states.
    """
    return f"{INTERNAL_PREFIX}m|{partition}"


def outbox_key(partition: int, topic: str, offset: int) -> str:
    """Key of a message's outbox record in the customers table."""
    return f"{_OUTBOX}{partition}|{topic}|{offset}"


def delta_source(topic: str, partition: int) -> str:
    """A short, stable name of one input topic partition: ``logins/3``."""
    return f"{topic.rsplit('.', 1)[-1]}/{partition}"


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
        committed: Callable[[str, int], int | None] = lambda topic, partition: None,
        *,
        inputs: Sequence[str] = (),
        polled: Callable[[Any], float | None] = lambda tp: None,
        grace_seconds: float = 0.25,
        ticks: Callable[[int], Awaitable[None]] | None = None,
        ticks_topic: str | None = None,
        learner: Learner | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.topics = topics
        self.metrics = metrics
        self.partition_of = partition_of
        self.highwater = highwater
        # When the consumer last fetched a topic partition (its highwater with it), in
        # seconds, and how long a publish may take to land: see ``_refresh_idle``.
        self.polled = polled
        self.grace_seconds = grace_seconds
        self.inputs = list(inputs)  # the event topics; each holds the stream time back
        # The churn learner, shared by this worker's partitions; fed with their own rows
        # at once and with every partition's rows by the learning follower (app.py).
        self.learner = learner
        self._reported_empty: set[int] = set()
        self.clocks = clocks  # a partition's stream clock, checkpointed (see _save_clock)
        self.probe = probe
        # The group's committed offset of an input topic partition, as this worker
        # last committed it (None if unknown): outbox records below it are deleted.
        self.committed = committed
        self.processors: dict[int, PartitionProcessor] = {}
        # (partition, topic) -> offsets with an outbox record, in order (dict as ordered set)
        self._outbox: dict[tuple[int, str], dict[int, None]] = {}
        # (partition, topic) -> committed offset when the partition was assigned
        self._committed_at_assign: dict[tuple[int, str], int] = {}
        # partition -> {topic: offset of the last message taken from it}
        self._seen: dict[int, dict[str, int]] = {}
        self._since_clean: dict[int, int] = {}
        # partition -> sequence number of its next outbox record (processing order)
        self._seq: dict[int, int] = {}
        self._unsaved: dict[int, int] = {}
        # Ticks: a message to a partition of the ticks topic, sent when events wait for
        # a slower input and nothing else would come to release them (see ``_tick``).
        self.send_tick = ticks
        self.ticks_topic = ticks_topic
        self._tick_due: dict[int, float] = {}  # partition -> delay of its pending tick
        self._tick_wait: dict[int, float] = {}  # partition -> delay of its next tick
        self.at_risk: dict[str, HealthSnapshot] = {}
        # True once the tables are recovered after the latest rebalance and every
        # owned partition is indexed; lookups answer 503 until then.
        self.ready = False

    def forget(self) -> None:
        """Drop in-memory indexes after a rebalance; they are rebuilt from the table."""
        self.processors.clear()
        self.at_risk.clear()
        self._outbox.clear()
        self._committed_at_assign.clear()
        self._seen.clear()
        self._since_clean.clear()
        self._seq.clear()
        self._reported_empty.clear()
        self.ready = False

    def note_risk(self, snap: HealthSnapshot) -> None:
        """Keep the in-memory at-risk index (customers with an open ``RISK_KINDS`` episode)."""
        if any(kind in RISK_KINDS for kind, *_ in snap.open_alerts):
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
            committed: Mapping[str, int] = getattr(backlog, "committed", {})
            model = self.table.get(model_key(partition))
            proc = PartitionProcessor.restore(
                self.engine, store, self._restore_clock(partition, committed),
                ParticipationModel.from_dict(orjson.loads(model)) if model is not None else None,
                learner=self.learner, partition=partition)
            for st in store.values():
                if not RISK_KINDS.isdisjoint(st.episodes):
                    self.note_risk(self.engine.snapshot(st))
            for topic in self.inputs:
                proc.clock.expect(topic)
            for topic, offset in committed.items():
                self._committed_at_assign[(partition, topic)] = offset
            self._index_outbox(partition)
            self.processors[partition] = proc
            if not backlog and proc.customers == 0:
                await self._report_empty(partition)
        return proc

    async def _report_empty(self, partition: int) -> None:
        """No customers and nothing to read: the learner need not wait for this partition
        (it reports again as soon as it has something). Not in the outbox: losing it in a
        crash only means saying it again on the next assignment."""
        if self.learner is None or partition in self._reported_empty:
            return
        self._reported_empty.add(partition)
        rows: list[LearningRow] = [Empty(partition)]
        self.learner.add(rows, partition)
        await self.topics.learning.send(value=orjson.dumps([row_to_list(r) for r in rows]),
                                        partition=partition)
        if self.learner.train_ready():
            self.wake()

    def _restore_clock(self, partition: int, committed: Mapping[str, int]) -> StreamClock:
        """The saved clock, unless it saw messages the group has not committed.

        Those come again, and a clock that already moved past them could call
        them late. Then the clock starts afresh (a lower watermark only delays
        decisions; the customers' states stop repeats).
        """
        lateness = self.engine.config.allowed_lateness_seconds
        raw = self.clocks.get(clock_key(partition))
        saved = orjson.loads(raw) if raw is not None else None
        if saved is None or "clock" not in saved:
            return StreamClock(lateness)
        seen: dict[str, int] = saved["seen"]
        if any(offset >= committed.get(topic, 0) for topic, offset in seen.items()):
            log.info("partition %d: saved clock is ahead of the committed offsets; "
                     "starting the clock afresh", partition)
            return StreamClock(lateness)
        return StreamClock.from_dict(saved["clock"], lateness)

    def _index_outbox(self, partition: int) -> None:
        """Find the partition's outbox records (left by an earlier owner or run)."""
        prefix = f"{_OUTBOX}{partition}|"
        found: dict[str, list[int]] = {}
        for key in list(self.table.keys()):
            k = key.decode() if isinstance(key, bytes) else key
            if k.startswith(prefix):
                topic, _, offset = k[len(prefix):].rpartition("|")
                found.setdefault(topic, []).append(int(offset))
        for topic, offsets in found.items():
            self._outbox[(partition, topic)] = dict.fromkeys(sorted(offsets))

    def _process(self, proc: PartitionProcessor, event: Event, source: str,
                 published_at: float, offset: int) -> Outcome:
        """Process with bounded retries; a failed attempt leaves no state behind."""
        store: TableStore = proc.store  # type: ignore[assignment]
        for attempt in range(1, POISON_ATTEMPTS + 1):
            store.hold()
            try:
                out = proc.process(event, source=source, published_at=published_at,
                                   position=offset)
            except Exception:
                store.drop()
                if attempt == POISON_ATTEMPTS:
                    raise
                log.warning("processing %s failed (attempt %d), retrying", event.event_id,
                            attempt, exc_info=True)
                continue
            store.release()
            return out
        raise AssertionError("unreachable")

    def _save_clock(self, partition: int, proc: PartitionProcessor, messages: int) -> None:
        """Checkpoint the partition's clock in the table every so often.

        An older checkpoint only restores a lower watermark (decisions later,
        never an event wrongly late), so it need not be written per event.
        """
        n = self._unsaved.get(partition, 0) + messages
        if n < CLOCK_SAVE_EVERY:
            self._unsaved[partition] = n
            return
        self._unsaved[partition] = 0
        self.clocks[clock_key(partition)] = orjson.dumps(
            {"clock": proc.clock.to_dict(), "seen": self._seen.get(partition, {})})

    def _refresh_idle(self, partition: int, proc: PartitionProcessor) -> bool:
        """Tell the clock which inputs have nothing unread, and since when; returns
        whether none of them has anything unread.

        An input is read to its end when the next offset to process reaches the
        highwater of the consumer's last fetch of it. Everything published before
        that fetch (less ``grace_seconds`` for the time a publish takes to land, and
        for clocks a little apart) has then been processed, so the input's frontier
        moves to that time. The poll time is read before the highwater: if a fetch
        lands in between, the pair is only more cautious.
        """
        seen = self._seen.get(partition, {})
        all_idle = True
        for topic in self.inputs:
            tp = TP(topic, partition)
            polled = self.polled(tp)
            end = self.highwater(tp)
            if polled is None or end is None:
                all_idle = False
                continue
            last = seen.get(topic)
            after = last + 1 if last is not None else self._committed_at_assign.get(
                (partition, topic))
            if after is not None and after >= end:
                proc.idle(topic, polled - self.grace_seconds)
            else:
                all_idle = False
        return all_idle

    def _recorded(self, partition: int, topic: str, offset: int) -> bool:
        """Whether a live outbox record covers the message (it was processed before).

        Records cover consecutive runs of a topic partition's offsets, and every
        run that changed or published anything has one, so everything up to the
        last recorded offset was processed; a run without a record had no effect.
        """
        offsets = self._outbox.get((partition, topic))
        return offsets is not None and bool(offsets) and offset <= next(reversed(offsets))

    async def handle_batch(self, events: Sequence[Any]) -> None:
        """Process a batch of input messages (Faust events); every message ends
        published or dead-lettered.

        The messages of each topic partition are processed in their order, and
        each run of them commits once: one outbox record, one write per changed
        customer, one metric-delta message per segment, the latest health
        snapshot per customer. Partitions and topics are independent streams,
        so handling one topic partition's messages before another's is just one
        more arrival order, which the engine's event-time clock makes irrelevant.
        """
        started = time.perf_counter()
        runs: dict[tuple[int, str], list[Any]] = {}
        for ev in events:
            runs.setdefault((ev.message.partition, ev.message.topic), []).append(ev)
        for (partition, topic), run in runs.items():
            # Table reads and writes go to the store and changelog partition of
            # Faust's current event; a batch mixes partitions.
            token = _current_event.set(weakref.ref(run[0]))
            try:
                await self._handle_run(partition, topic, run)
            finally:
                _current_event.reset(token)
            elapsed = time.perf_counter() - started
            for _ in run:  # dead letters count too: taking a message off the topic is the work
                self.metrics.latency.observe(elapsed)
        self._schedule_ticks()

    def wake(self) -> None:
        """New churn model versions: the partitions that waited for one may decide on."""
        for partition, proc in self.processors.items():
            if proc.waiting:
                self._tick_wait.pop(partition, None)
        self._schedule_ticks()

    def _schedule_ticks(self) -> None:
        """Ask for a tick for every partition whose clock holds events back.

        Held events wait for a slower input's frontier, which moves with the
        consumer's fetches, not with events; if no other message came, nothing
        would count them. A tick is a message like any other (it commits a run,
        so whatever its sweep decides reaches the outbox), sent to the
        partition's own tick topic partition after ``grace_seconds``. A tick that
        releases nothing asks for the next one twice as late, up to ``TICK_MAX_S``.
        """
        if self.send_tick is None:
            return
        loop = asyncio.get_running_loop()
        for partition, proc in self.processors.items():
            if not proc.clock.held and not proc.waiting:
                self._tick_wait.pop(partition, None)
                continue
            if partition in self._tick_due:
                continue
            wait = self._tick_wait.get(partition, self.grace_seconds + TICK_AFTER_S)
            self._tick_wait[partition] = min(TICK_MAX_S, 2 * wait)
            self._tick_due[partition] = wait
            loop.call_later(wait, self._tick, partition)

    def _tick(self, partition: int) -> None:
        self._tick_due.pop(partition, None)
        proc = self.processors.get(partition)
        if proc is None or not (proc.clock.held or proc.waiting) or self.send_tick is None:
            return
        task = asyncio.ensure_future(self.send_tick(partition))
        task.add_done_callback(_log_tick_failure)

    async def _handle_run(self, partition: int, topic: str, events: list[Any]) -> None:
        proc = await self.processor(partition)
        if partition not in self._seq:
            # First message since the partition was assigned: first put back and
            # publish again everything the uncommitted tail did before.
            await self._replay(partition, proc)
        seen = self._seen.setdefault(partition, {})
        idle = self._refresh_idle(partition, proc)
        run: _Run | None = None
        for ev in events:
            message, raw = ev.message, ev.value
            offset = message.offset
            repeat = self._recorded(partition, topic, offset)
            if run is not None and run.repeat != repeat:
                await self._commit(proc, partition, run)
                run = None
            if run is None:
                # A redelivered message was processed before: its outputs were
                # published again by _replay. Its clock steps are a source of their own.
                run = _Run(topic + _SWEPT if repeat else topic, repeat)
            seen[topic] = offset
            run.offset = offset
            run.messages += 1
            self._handle_message(proc, run, message, raw, repeat)
            if run.size() + proc.store.pending_bytes > RUN_MAX_BYTES:  # type: ignore[attr-defined]
                await self._commit(proc, partition, run)
                run = None
        if run is not None:
            await self._commit(proc, partition, run)
        if idle and proc.customers == 0:
            await self._report_empty(partition)

    def _handle_message(self, proc: PartitionProcessor, run: _Run, message: Any,
                        raw: bytes | None, repeat: bool) -> None:
        """Process one message into ``run`` (its states pending in the store)."""
        if message.topic == self.ticks_topic:
            if not repeat:  # a tick only asks for the clock to move on
                run.add(self._held(proc, proc.advance))
            return
        try:
            event = decode(raw)
        except InvalidEvent as exc:
            if not repeat:  # a repeat's dead letter is in its outbox record
                self._dead(run, message, raw, exc)
            return
        # Publish time: the record's timestamp (by default the producer's send time), never
        # ahead of this worker's clock: a producer whose clock runs ahead must not hold
        # every other input's events back.
        now = time.time()
        published = min(message.timestamp or now, now)
        m = self.metrics
        if repeat:
            # It still moves the clock as it did the first time.
            m.duplicates.inc()
            run.add(self._held(proc, lambda: proc.repeat(message.topic, published,
                                                          event.occurred_at)))
            return
        try:
            out = self._process(proc, event, message.topic, published, message.offset)
        except Exception as exc:  # a poison pill: an event the engine cannot process
            self._dead(run, message, raw, InvalidEvent(
                f"processing failed {POISON_ATTEMPTS} times: {type(exc).__name__}: {exc}",
                code="processing_error"))
            return
        if out.future:
            self._dead(run, message, raw, InvalidEvent(
                f"occurred_at {rfc3339(event.occurred_at)} is more than "
                f"{self.engine.config.max_future_seconds:g}s after it was published "
                f"({rfc3339(published)}): a clock is wrong", code="future"))
            return
        if out.late:
            self._dead(run, message, raw, InvalidEvent(late_reason(
                event.occurred_at, proc.clock.watermark, published,
                self.engine.config.allowed_lateness_seconds), code="late"))
            return
        if out.duplicate:  # no effect of its own; still moved the clock
            m.duplicates.inc()
        else:
            m.events.labels(event.type).inc()
        if out.new_customer:
            m.customers.inc()
        if out.settled_early:
            m.settled_early.inc(out.settled_early)
        run.add(out)

    @staticmethod
    def _held(proc: PartitionProcessor, step: Callable[[], Outcome]) -> Outcome:
        """Run a clock step with its writes held like an event's (dropped if it fails)."""
        store: TableStore = proc.store  # type: ignore[assignment]
        store.hold()
        try:
            out = step()
        except Exception:
            store.drop()
            raise
        store.release()
        return out

    async def _commit(self, proc: PartitionProcessor, partition: int, run: _Run) -> None:
        """Record, write and publish what processing one run of messages did."""
        store: TableStore = proc.store  # type: ignore[assignment]
        states = store.take()
        self._save_clock(partition, proc, run.messages)
        if proc.clock.watermark > -math.inf:
            self.metrics.watermark.set(max(p.clock.watermark for p in self.processors.values()))
        if not states and not run.dead and not run.alerts and not run.deltas and not run.rows:
            self._maybe_clean(partition)  # nothing changed, nothing to publish
            return
        m = self.metrics
        sends: list[tuple[bytes, bytes | None, bytes]] = []
        for alert in run.alerts:
            sends.append((b"a", alert.customer_id.encode(), orjson.dumps(alert.to_dict())))
            m.alerts.labels(alert.kind, alert.state).inc()
        for snap in run.health.values():  # the health topic is compacted by customer
            sends.append((b"h", snap.customer_id.encode(), orjson.dumps(snap.to_dict())))
            self.note_risk(snap)
        for route, rows in route_deltas(run.deltas).items():
            sends.append((b"d", route, orjson.dumps(rows)))
        # To the learning topic partition of this partition, in messages of bounded size.
        for i in range(0, len(run.rows), _ROWS_PER_MESSAGE):
            sends.append((b"l", str(partition).encode(), orjson.dumps(
                [row_to_list(r) for r in run.rows[i:i + _ROWS_PER_MESSAGE]])))
        sends.extend(run.dead)
        seq = self._seq.get(partition, 0)
        self._seq[partition] = seq + 1
        # The record first, then the states: whatever of this run's states survive
        # a crash, its record survives too.
        model = orjson.dumps(proc.model.to_dict()) if proc.model.dirty else None
        self.table[outbox_key(partition, run.source, run.offset)] = _outbox_record(
            seq, proc.clock.to_dict(), states, sends, model)
        self._outbox.setdefault((partition, run.source), {})[run.offset] = None
        store.write(states)
        if model is not None:  # outcomes are rare; the model is saved with each one
            self.table[model_key(partition)] = model
            proc.model.dirty = False
        await self._send(sends, delta_source(run.source, partition), run.offset)
        if run.rows and self.learner is not None:
            self.learner.add(run.rows, partition)
            if self.learner.train_ready():
                self.wake()
        self._maybe_clean(partition)

    async def _send(self, sends: list[tuple[bytes, bytes | None, bytes]], source: str,
                    offset: int) -> None:
        topics = self.topics
        header = {DELTA_SOURCE_HEADER: f"{source}|{offset}".encode()}
        for kind, key, value in sends:
            if kind == b"a":
                await topics.alerts.send(key=key, value=value)
            elif kind == b"h":
                await topics.health.send(key=key, value=value)
            elif kind == b"d":
                await topics.deltas.send(key=key, value=value, headers=header)
            elif kind == b"l":
                await topics.learning.send(value=value, partition=int(key or b"0"))
            else:
                await topics.deadletters.send(key=key, value=value)

    async def _replay(self, partition: int, proc: PartitionProcessor) -> None:
        """Put back and publish again the outbox records at or after the committed offsets.

        In the order they were first made: every state ends at its latest recorded
        version, and the clock at the one of the latest record, i.e. where the
        partition was when the previous owner stopped.
        """
        records = []
        last_seq = -1
        for (p, source), offsets in self._outbox.items():
            if p != partition:
                continue
            committed = self._committed_at_assign.get((partition, source.rstrip(_SWEPT)), 0)
            for offset in offsets:
                raw = self.table.get(outbox_key(partition, source, offset))
                if raw is None:
                    continue
                record = orjson.loads(raw)
                last_seq = max(last_seq, record["q"])
                if offset >= committed:
                    records.append((record["q"], source, offset, record))
        self._seq[partition] = last_seq + 1
        if not records:
            return
        records.sort(key=lambda r: r[0])
        for _, source, offset, record in records:
            states = [CustomerState.from_wire(d) for d in record["s"]]
            if "m" in record:
                proc.model = ParticipationModel.from_dict(record["m"])
            for st in proc.reinstate(states):
                if not RISK_KINDS.isdisjoint(st.episodes):
                    self.note_risk(self.engine.snapshot(st))
                else:
                    self.at_risk.pop(st.customer_id, None)
            await self._send([_decode_send(s) for s in record["o"]],
                             delta_source(source, partition), offset)
        proc.clock = StreamClock.from_dict(records[-1][3]["c"],
                                           self.engine.config.allowed_lateness_seconds)
        for topic in self.inputs:
            proc.clock.expect(topic)
        log.info("partition %d: published again the outputs of %d uncommitted runs",
                 partition, len(records))

    def _maybe_clean(self, partition: int) -> None:
        """Every so often, delete the partition's outbox records the group committed."""
        n = self._since_clean.get(partition, 0) + 1
        if n < OUTBOX_CLEAN_EVERY:
            self._since_clean[partition] = n
            return
        self._since_clean[partition] = 0
        for (p, topic), offsets in self._outbox.items():
            if p != partition or not offsets:
                continue
            base = topic.rstrip(_SWEPT)
            now = self.committed(base, partition)
            committed = max(now if now is not None else -1,
                            self._committed_at_assign.get((partition, base), -1))
            while offsets:
                first = next(iter(offsets))
                if first >= committed:
                    break
                del offsets[first]
                del self.table[outbox_key(partition, topic, first)]

    def _dead(self, run: _Run, message: Any, raw: bytes | None, error: InvalidEvent) -> None:
        """Dead-letter a message with the run's outputs (so its record has it too)."""
        letter = dead_letter(raw, error, topic=message.topic, partition=message.partition,
                             offset=message.offset, key=message.key)
        run.dead.append((b"x", message.key, letter))
        run.dead_bytes += len(letter)
        self.metrics.dead_letters.labels(error.code).inc()


class _Run:
    """What a run of one topic partition's messages produced, until it commits."""

    __slots__ = ("alerts", "dead", "dead_bytes", "deltas", "health", "messages", "offset",
                 "repeat", "rows", "source")

    def __init__(self, source: str, repeat: bool) -> None:
        self.source = source  # the topic, or topic + "~" for a run of repeats
        self.repeat = repeat
        self.offset = -1  # of its last message: the run's outbox key and delta position
        self.messages = 0
        self.alerts: list[Alert] = []
        self.deltas: list[MetricDelta] = []
        self.health: dict[str, HealthSnapshot] = {}
        self.rows: list[LearningRow] = []  # for the churn learner
        self.dead: list[tuple[bytes, bytes | None, bytes]] = []  # dead letters, as sends
        self.dead_bytes = 0

    def size(self) -> int:
        """Estimated encoded size of its outputs (its states are in the store)."""
        return (self.dead_bytes + _DELTA_BYTES * (len(self.deltas) + len(self.rows))
                + _OUTPUT_BYTES * (len(self.alerts) + len(self.health)))

    def add(self, out: Outcome) -> None:
        self.alerts.extend(out.alerts)
        self.deltas.extend(out.metrics)
        self.rows.extend(out.rows)
        for snap in out.health:
            self.health[snap.customer_id] = snap


def _decode_send(entry: list[Any]) -> tuple[bytes, bytes | None, bytes]:
    """An outbox record's ``[kind, key, value]`` back as bytes (see ``_outbox_record``)."""
    kind, key, value = entry
    if kind == "x":  # a dead letter keeps its message's raw key, and its value is a string
        return b"x", None if key is None else base64.b64decode(key), value.encode()
    return kind.encode(), key.encode(), orjson.dumps(value)


def _outbox_record(seq: int, clock: dict[str, Any], states: dict[str, bytes],
                   sends: list[tuple[bytes, bytes | None, bytes]], model: bytes | None) -> bytes:
    """``{"q": seq, "c": clock, "s": [state, ...], "o": [[kind, key, value], ...]}``, plus
    ``"m"``: the partition's participation model when this run changed it; from
    already-encoded parts. A dead letter (kind ``x``) keeps its message's key in
    base64 (any bytes, or null) and its JSON value as a string."""
    outs = []
    for kind, key, value in sends:
        if kind == b"x":
            k = b"null" if key is None else b'"' + base64.b64encode(key) + b'"'
            outs.append(b'["x",' + k + b"," + orjson.dumps(value.decode()) + b"]")
        else:
            assert key is not None
            outs.append(b'["' + kind + b'",' + orjson.dumps(key.decode()) + b"," + value + b"]")
    extra = b',"m":' + model if model is not None else b""
    return (b'{"q":' + str(seq).encode() + b',"c":' + orjson.dumps(clock) + b',"s":['
            + b",".join(states.values()) + b'],"o":[' + b",".join(outs) + b"]" + extra + b"}")
