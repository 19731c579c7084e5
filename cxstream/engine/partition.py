"""One Kafka partition's customers: stream time, lateness and the inactivity sweep.

A customer who never sends another event must still be alerted, so event time
has to advance without them. It advances per partition with the other
customers' events (like Kafka Streams' stream time per task): after each
event the processor computes the watermark and *sweeps* every customer whose
next decision is due by then, using a heap of due times.

In the worker the sweep runs inside the processing of a stream event of that
same partition. That is deliberate: Faust only allows table writes during
stream iteration and sends each change to the changelog partition of the
event being processed. Because a partition's sweep touches only that
partition's customers, their changes land in the right changelog partition
and survive a restart; a timer-driven sweep would write outside any event,
which Faust refuses.

**Several inputs, one stream time.** The worker reads one topic per event
family, and which of them the consumer happens to read first must not decide
what is late. So ``StreamClock`` merges its inputs by *publish time* (the
Kafka record timestamp) the way Kafka Streams synchronises a task's partitions:
an event counts towards the stream time only once every input is known to have
delivered everything published before it, either because a later record of
that input was read or because the input was read to its end by a fetch made
after that time. "Late" then means *published* after the stream had moved on
by more than the allowed lateness, never *consumed* after another topic.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxstream.engine.alerts import Alert
from cxstream.engine.config import DAY_SECONDS
from cxstream.engine.engine import (
    MAX_PENDING,
    MAX_PENDING_WAITING,
    Engine,
    ModelSource,
    event_id_hash,
)
from cxstream.engine.events import Event
from cxstream.engine.learning import WEEK, LearningRow, Marker, boundary_after, boundary_at
from cxstream.engine.metrics import MetricDelta
from cxstream.engine.participation import ParticipationModel
from cxstream.engine.scoring import HealthSnapshot
from cxstream.engine.state import CustomerState, StateStore

__all__ = ["Outcome", "PartitionProcessor", "StreamClock", "Versions", "is_newer"]

# Held events are kept per bucket of publish time (at least 10 ms wide), at most
# _MAX_HELD buckets: past that, they merge into half as many wider ones. A bucket
# is released when every input has passed its end, so merging only delays a
# release (by at most 1/128 of the span held: ~11 minutes for a day of skew
# between inputs); and the clock, saved with every run, stays a few KB.
_MIN_BUCKET_S = 0.01
_MAX_HELD = 256


class StreamClock:
    """Event-time watermark of one partition, its inputs merged by publish time.

    Each input has a *frontier*: a publish time before which it is known to have
    delivered everything. An event published at ``p`` is *held* until every
    input's frontier has passed ``p``; then its event time counts towards the
    stream time. Watermark = stream time − allowed lateness, never lower than
    before. An event's contribution is capped at ``p`` + the lateness, so a
    producer whose clock runs ahead cannot push the stream past on-time events.
    """

    __slots__ = ("_frontier", "_held", "_keys", "_lateness", "_width", "stream_time",
                 "watermark")

    def __init__(self, lateness_seconds: float, sources: Iterable[str] = (),
                 floor: float = -math.inf) -> None:
        self._lateness = lateness_seconds
        self._frontier: dict[str, float] = dict.fromkeys(sources, -math.inf)
        self._held: dict[float, float] = {}  # bucket (publish time) -> highest contribution
        self._keys: list[float] = []  # heap of the held buckets
        self._width = _MIN_BUCKET_S  # of new buckets; grows when too many are held
        self.watermark = floor
        self.stream_time = floor + lateness_seconds

    def expect(self, source: str) -> None:
        """``source`` is an input: nothing counts before it has reported (``observe``/``idle``)."""
        self._frontier.setdefault(source, -math.inf)

    @property
    def held(self) -> int:
        """How many buckets of events wait for a slower input."""
        return len(self._held)

    @property
    def frontier(self) -> float:
        """The publish time every input has delivered up to."""
        return min(self._frontier.values()) if self._frontier else math.inf

    def observe(self, source: str, published_at: float | None, occurred_at: float) -> None:
        """An event of ``source`` was read: that input has delivered everything published
        *before* ``published_at`` (more may follow with the same timestamp: a burst
        counts together). Without a publish time, the event counts at once (replay:
        one input, read in order)."""
        if published_at is None:
            if occurred_at > self.stream_time:
                self.stream_time = occurred_at
            return
        if published_at > self._frontier.get(source, -math.inf):
            self._frontier[source] = published_at
        value = min(occurred_at, published_at + self._lateness)
        if value <= self.stream_time:
            return
        if published_at < self.frontier:
            self.stream_time = value
            return
        key = math.ceil(published_at / self._width) * self._width
        held = self._held.get(key)
        if held is None:
            heapq.heappush(self._keys, key)
            self._held[key] = value
            if len(self._held) > _MAX_HELD:
                self._merge()
        elif value > held:
            self._held[key] = value

    def idle(self, source: str, published_before: float) -> None:
        """``source`` has delivered everything published before ``published_before``
        (it was read to its end by a fetch made then)."""
        if published_before > self._frontier.get(source, -math.inf):
            self._frontier[source] = published_before

    def advance(self) -> float:
        """Count every held event that all inputs have passed; return the watermark."""
        keys = self._keys
        if keys:
            frontier = self.frontier
            while keys and keys[0] < frontier:
                value = self._held.pop(heapq.heappop(keys))
                if value > self.stream_time:
                    self.stream_time = value
            if not keys:
                self._width = _MIN_BUCKET_S
        wm = self.stream_time - self._lateness
        if wm > self.watermark:
            self.watermark = wm
        return self.watermark

    def _merge(self) -> None:
        """Merge the held buckets into at most half as many, each ending later."""
        keys = self._keys
        span = max(keys) - min(keys)
        self._width = max(self._width, 2.0 ** math.ceil(math.log2(2 * span / _MAX_HELD)))
        merged: dict[float, float] = {}
        for key, value in self._held.items():
            wide = math.ceil(key / self._width) * self._width
            merged[wide] = max(merged.get(wide, -math.inf), value)
        self._held = merged
        self._keys = sorted(merged)

    def to_dict(self) -> dict[str, Any]:
        """The clock's state, to survive a restart (see ``from_dict``)."""
        return {"w": _finite(self.watermark), "s": _finite(self.stream_time),
                "f": {s: _finite(t) for s, t in self._frontier.items()},
                "h": [[k, v] for k, v in self._held.items()], "b": self._width}

    @classmethod
    def from_dict(cls, d: dict[str, Any], lateness_seconds: float) -> StreamClock:
        """The clock ``to_dict`` saved; of an older format, only its watermark."""
        clock = cls(lateness_seconds, floor=_inf(d.get("w")))
        if "f" not in d:
            return clock
        clock.stream_time = _inf(d["s"])
        clock._frontier = {s: _inf(t) for s, t in d["f"].items()}
        clock._held = {float(k): float(v) for k, v in d["h"]}
        clock._keys = sorted(clock._held)
        clock._width = float(d["b"])
        return clock


def _finite(t: float) -> float | None:
    return t if t > -math.inf else None


def _inf(t: float | None) -> float:
    return -math.inf if t is None else float(t)


@dataclass(slots=True)
class Outcome:
    """What processing one input event produced."""

    alerts: list[Alert] = field(default_factory=list)
    metrics: list[MetricDelta] = field(default_factory=list)
    health: list[HealthSnapshot] = field(default_factory=list)
    rows: list[LearningRow] = field(default_factory=list)  # for the churn learner
    late: bool = False
    future: bool = False
    duplicate: bool = False
    new_customer: bool = False
    settled_early: int = 0  # see ``engine.MAX_PENDING``: replay may differ for these


class Versions(ModelSource, Protocol):
    """The churn learner as a partition sees it: the version in force at a time, and
    until when every version a decision needs is settled."""

    def ready_until(self) -> float: ...


class PartitionProcessor:
    """Applies a partition's events in arrival order and sweeps due customers.

    ``decided``: decisions are made for every event time strictly before it. It
    follows the watermark, but never past ``learner.ready_until()`` when the
    learned churn risk alerts: a decision waits for the model version it needs.
    """

    __slots__ = ("_due", "_scheduled", "clock", "customers", "decided", "engine", "learner",
                 "model", "partition", "started", "store", "track_health")

    def __init__(self, engine: Engine, store: StateStore, clock: StreamClock,
                 track_health: bool = True, model: ParticipationModel | None = None,
                 learner: Versions | None = None, partition: int = 0) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        # What this partition's customers taught about participation and churn.
        self.model = model if model is not None else ParticipationModel()
        self.learner = learner
        self.partition = partition
        self.track_health = track_health  # the worker publishes health; replay reads it at the end
        self.decided = clock.watermark
        self.started = clock.watermark  # the first point decisions were made up to
        self.customers = 0  # how many customers the store holds
        self._due: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}

    @classmethod
    def restore(cls, engine: Engine, store: StateStore, clock: StreamClock | None = None,
                model: ParticipationModel | None = None, learner: Versions | None = None,
                partition: int = 0) -> PartitionProcessor:
        """Rebuild the due heap from stored states, with the clock saved with them.

        Without a saved clock the watermark restarts at the highest point any
        customer was settled to. Either way it is never ahead of where it was;
        decisions resume where the customers were settled to.
        """
        lateness = engine.config.allowed_lateness_seconds
        floor = -math.inf
        proc = cls(engine, store, clock or StreamClock(lateness), model=model, learner=learner,
                   partition=partition)
        for st in store.values():
            if st.settled_at is not None and st.settled_at > floor:
                floor = st.settled_at
            proc._schedule(st.customer_id, engine.due_at(st))
            proc.customers += 1
        if clock is None:
            proc.clock = StreamClock(lateness, floor=floor)
        proc.decided = min(proc.clock.watermark, floor) if floor > -math.inf else floor
        proc.started = proc.decided
        return proc

    def process(self, event: Event, source: str = "input", published_at: float | None = None,
                position: int | None = None, now: float | None = None) -> Outcome:
        """Apply one event, then sweep every customer due by the new watermark.

        :param published_at: when the event was published (the Kafka record
            timestamp), which orders it among the inputs; without one it counts in
            arrival order (replay).
        :param now: the clock an event may not be dated more than
            ``max_future_seconds`` after (default: ``published_at``); a later one is
            refused as ``future`` and moves no clock. Neither: no such check.
        :param position: the message's offset in ``source``; a message at or
            below the customer's last applied position is a redelivery.
        """
        published = published_at
        reference = now if now is not None else published_at
        state = self.store.get(event.customer_id)
        # A repeat is a repeat even when it is also old: redelivery after a restart
        # must have no effect, not land in the dead-letter topic. A redelivered message
        # is the same record, so it moves the clock as it did; another record with a
        # known event id may differ in body, so only its publish time counts.
        if state is not None:
            if position is not None and state.positions.get(source, -1) >= position:
                return self.repeat(source, published, event.occurred_at)
            if event_id_hash(event.event_id) in state.recent_ids:
                return self.repeat(source, published)
        if (reference is not None
                and event.occurred_at > reference + self.engine.config.max_future_seconds):
            return Outcome(future=True)
        if event.occurred_at < self.clock.watermark:
            return Outcome(late=True)
        decided = self.decided
        decision = self.engine.apply(state, event, decided if decided > -math.inf else None,
                                     self.model, self.learner,
                                     MAX_PENDING_WAITING if self.waiting else MAX_PENDING)
        if decision.duplicate:
            return self.repeat(source, published)
        if position is not None:
            decision.state.positions[source] = position
        out = Outcome(decision.alerts, decision.metrics, rows=decision.rows,
                      new_customer=state is None, settled_early=decision.settled_early)
        if state is None:
            if self.customers == 0 and self.learner is not None:
                # The first customer: this partition now holds versions back (it may have
                # said it was empty); before this event's week it had nothing to settle.
                out.rows.insert(0, Marker(self.partition, boundary_at(event.occurred_at)))
            self.customers += 1
        self._note_health(decision.state, out.health)
        self.store.put(decision.state)
        self._schedule(event.customer_id, self.engine.due_at(decision.state))
        self.clock.observe(source, published, event.occurred_at)
        self.clock.advance()
        self._catch_up(out)
        return out

    def idle(self, source: str, published_before: float) -> None:
        """``source`` has nothing unread published before ``published_before``
        (see ``StreamClock.idle``); ``advance`` then counts what that releases."""
        self.clock.idle(source, published_before)

    def advance(self) -> Outcome:
        """Count whatever the inputs' frontiers release (and whatever model versions
        arrived allow), and decide up to there."""
        out = Outcome()
        self.clock.advance()
        self._catch_up(out)
        return out

    @property
    def waiting(self) -> bool:
        """Whether decisions wait for a churn model version (the watermark is further)."""
        return self.decided < self.clock.watermark

    def _cap(self) -> float:
        if self.learner is None or not self.engine.config.learns_churn:
            return math.inf
        cap = self.learner.ready_until()
        if cap == math.inf and self.started > -math.inf:
            # Nothing reported anywhere yet: no version is needed before a horizon has
            # passed since this partition's start.
            horizon = self.engine.config.learning.horizon_days * DAY_SECONDS
            cap = boundary_after(self.started) + horizon
        return cap

    def _catch_up(self, out: Outcome) -> None:
        """Decide from ``decided`` up to the watermark (or the learner's cap), a day at a
        time: every outcome of a day is learned before any decision of the next
        (participation.py), whatever the arrival order. Passing a week boundary is
        reported to the learner (``Marker``)."""
        old = self.decided
        new = min(self.clock.watermark, self._cap())
        if new <= old:
            return
        if old > -math.inf:
            day_end = (old // DAY_SECONDS + 1) * DAY_SECONDS
            while day_end < new:
                self.sweep(day_end, out)
                day_end += DAY_SECONDS
        self.sweep(new, out)
        self.decided = new
        if self.started == -math.inf:
            self.started = new
        if self.learner is not None:
            last = boundary_at(math.nextafter(new, -math.inf))  # settled strictly before new
            first = last if old == -math.inf else boundary_at(old)
            if first < old:
                first += WEEK
            b = first
            while b <= last:
                out.rows.append(Marker(self.partition, b))
                b += WEEK

    def repeat(self, source: str, published_at: float | None,
               occurred_at: float = -math.inf) -> Outcome:
        """A repeat has no effect of its own, but its input has delivered it: a new owner
        re-reading what the previous one applied (an uncommitted tail) may see nothing
        but repeats, and must still move on. ``occurred_at``: the event time it counted
        with the first time, when it is the same record delivered again."""
        out = Outcome(duplicate=True)
        self.clock.observe(source, published_at, occurred_at)
        self.clock.advance()
        self._catch_up(out)
        return out

    def settle(self, until: float) -> Outcome:
        """Decide everything due strictly before ``until`` (end of input: no more events
        will come), as far as the learner allows. Moves the watermark there if it is
        behind."""
        if until > self.clock.watermark:
            self.clock.watermark = until
            self.clock.stream_time = max(self.clock.stream_time,
                                         until + self.engine.config.allowed_lateness_seconds)
        return self.advance()

    def reinstate(self, states: list[CustomerState]) -> list[CustomerState]:
        """Put back states recorded after an earlier processing of a message.

        Used when a message is delivered again: the states it produced are put
        back wherever the store holds an older version of that customer (and
        nothing is decided again). Returns the states that were put.
        """
        put = []
        for st in states:
            current = self.store.get(st.customer_id)
            if current is None or is_newer(st, current):
                self.store.put(st)
                self._schedule(st.customer_id, self.engine.due_at(st))
                put.append(st)
        return put

    def _note_health(self, st: CustomerState, into: list[HealthSnapshot]) -> None:
        if not self.track_health:
            return
        snap = self.engine.changed_health(st)
        if snap is not None:
            into.append(snap)

    def sweep(self, watermark: float, out: Outcome | None = None) -> Outcome:
        """Decide for every customer whose next decision is due by ``watermark``."""
        out = out if out is not None else Outcome()
        alerts = out.alerts
        due = self._due
        while due and due[0][0] < watermark:  # decisions are taken strictly before it
            at, customer_id = heapq.heappop(due)
            if self._scheduled.get(customer_id) != at:
                continue  # superseded by an earlier entry for the same customer
            del self._scheduled[customer_id]
            st = self.store.get(customer_id)
            if st is None:
                continue
            real = self.engine.due_at(st)
            if real is None or real >= watermark:
                self._schedule(customer_id, real)  # activity moved it on; no write needed
                continue
            found, deltas = self.engine.advance(st, watermark, self.model, self.learner,
                                                out.rows)
            alerts.extend(found)
            out.metrics.extend(deltas)
            self._note_health(st, out.health)
            self.store.put(st)
            self._schedule(customer_id, self.engine.due_at(st))
        return out

    def _schedule(self, customer_id: str, at: float | None) -> None:
        if at is None:
            return
        current = self._scheduled.get(customer_id)
        if current is None or at < current:
            self._scheduled[customer_id] = at
            heapq.heappush(self._due, (at, customer_id))

    def __len__(self) -> int:
        return len(self._scheduled)


def _version(st: CustomerState) -> tuple[float, int]:
    return (st.settled_at if st.settled_at is not None else -math.inf, st.events)


def is_newer(a: CustomerState, b: CustomerState) -> bool:
    """Whether ``a`` is a later version than ``b`` of the same customer's state.

    A customer's state only moves forward: the applied position per input
    only grows, and so do ``settled_at`` and the event count; every change
    moves one of them (an applied event counts and records its position, a
    sweep raises ``settled_at``). Of two versions from one history, the later
    one is at least as far in every one of them, and further in one.
    """
    pa, pb = a.positions, b.positions
    if any(pa.get(src, -1) < off for src, off in pb.items()):
        return False
    va, vb = _version(a), _version(b)
    if any(x < y for x, y in zip(va, vb, strict=True)):
        return False
    return va != vb or any(pa.get(src, -1) > pb.get(src, -1) for src in pa)
