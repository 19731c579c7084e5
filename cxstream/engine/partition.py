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

``StreamClock`` merges several inputs (the worker reads one topic per event
family): while an input still has a backlog, its own stream time holds the
watermark back, so a fast topic cannot make a slow topic's events late.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from cxstream.engine.alerts import Alert
from cxstream.engine.config import DAY_SECONDS
from cxstream.engine.engine import Engine, event_id_hash
from cxstream.engine.events import Event
from cxstream.engine.metrics import MetricDelta
from cxstream.engine.participation import ParticipationModel
from cxstream.engine.scoring import HealthSnapshot
from cxstream.engine.state import CustomerState, StateStore

__all__ = ["Outcome", "PartitionProcessor", "StreamClock", "is_newer"]


class StreamClock:
    """Event-time watermark of one partition over one or more inputs."""

    __slots__ = ("_caught_up", "_lateness", "_times", "watermark")

    def __init__(self, lateness_seconds: float, floor: float = -math.inf) -> None:
        self._lateness = lateness_seconds
        self._times: dict[str, float] = {}
        self._caught_up: dict[str, bool] = {}
        self.watermark = floor

    def to_dict(self) -> dict[str, Any]:
        """The clock's state, to survive a restart (see ``from_dict``)."""
        return {"w": self.watermark if self.watermark > -math.inf else None,
                "t": {s: (t if t > -math.inf else None) for s, t in self._times.items()},
                "c": self._caught_up}

    @classmethod
    def from_dict(cls, d: dict[str, Any], lateness_seconds: float) -> StreamClock:
        clock = cls(lateness_seconds, d["w"] if d["w"] is not None else -math.inf)
        clock._times = {s: (t if t is not None else -math.inf) for s, t in d["t"].items()}
        clock._caught_up = dict(d["c"])
        return clock

    def hold(self, source: str) -> None:
        """Hold the watermark until ``source`` delivers (it is known to have a backlog)."""
        if source not in self._times:
            self._times[source] = -math.inf
        self._caught_up[source] = False

    def observe(self, source: str, occurred_at: float, caught_up: bool = False) -> float:
        """Note an event from ``source``; return the (monotonic) watermark.

        :param caught_up: the source has nothing more to read right now; its
            stream time then stops holding the watermark back.
        """
        prev = self._times.get(source)
        if prev is None or occurred_at > prev:
            self._times[source] = occurred_at
        self._caught_up[source] = caught_up
        return self._advance()

    def release(self, source: str) -> float:
        """``source`` has nothing more to read right now, though its last record told
        nothing new (a repeat): it stops holding the watermark back; return it."""
        if source in self._caught_up:
            self._caught_up[source] = True
        return self._advance()

    def _advance(self) -> float:
        if not self._times:
            return self.watermark
        behind = [t for s, t in self._times.items() if not self._caught_up[s]]
        stream_time = min(behind) if behind else max(self._times.values())
        wm = stream_time - self._lateness
        if wm > self.watermark:
            self.watermark = wm
        return self.watermark


@dataclass(slots=True)
class Outcome:
    """What processing one input event produced."""

    alerts: list[Alert] = field(default_factory=list)
    metrics: list[MetricDelta] = field(default_factory=list)
    health: list[HealthSnapshot] = field(default_factory=list)
    late: bool = False
    duplicate: bool = False
    new_customer: bool = False


class PartitionProcessor:
    """Applies a partition's events in arrival order and sweeps due customers."""

    __slots__ = ("_due", "_scheduled", "clock", "engine", "model", "store", "track_health")

    def __init__(self, engine: Engine, store: StateStore, clock: StreamClock,
                 track_health: bool = True, model: ParticipationModel | None = None) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        # What this partition's customers taught about participation and churn.
        self.model = model if model is not None else ParticipationModel()
        self.track_health = track_health  # the worker publishes health; replay reads it at the end
        self._due: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}

    @classmethod
    def restore(cls, engine: Engine, store: StateStore, clock: StreamClock | None = None,
                model: ParticipationModel | None = None) -> PartitionProcessor:
        """Rebuild the due heap from stored states, with the clock saved with them.

        Without a saved clock the watermark restarts at the highest point any
        customer was settled to. Either way it is never ahead of where it was;
        a saved clock also remembers which input was behind, so an input's
        backlog stays on time after a restart.
        """
        lateness = engine.config.allowed_lateness_seconds
        floor = -math.inf
        proc = cls(engine, store, clock or StreamClock(lateness), model=model)
        for st in store.values():
            if st.settled_at is not None and st.settled_at > floor:
                floor = st.settled_at
            proc._schedule(st.customer_id, engine.due_at(st))
        if clock is None:
            proc.clock.watermark = floor
        return proc

    def process(self, event: Event, source: str = "input", caught_up: bool = False,
                position: int | None = None) -> Outcome:
        """Apply one event, then sweep every customer due by the new watermark.

        :param position: the message's offset in ``source``; a message at or
            below the customer's last applied position is a redelivery.
        """
        wm = self.clock.watermark
        state = self.store.get(event.customer_id)
        # A repeat is a repeat even when it is also old: redelivery after a restart
        # must have no effect, not land in the dead-letter topic.
        if state is not None and (
            (position is not None and state.positions.get(source, -1) >= position)
            or event_id_hash(event.event_id) in state.recent_ids
        ):
            return self._repeat(source, caught_up, wm)
        if event.occurred_at < wm:
            return Outcome(late=True)
        decision = self.engine.apply(state, event, wm if wm > -math.inf else None, self.model)
        if decision.duplicate:
            return self._repeat(source, caught_up, wm)
        if position is not None:
            decision.state.positions[source] = position
        out = Outcome(decision.alerts, decision.metrics, new_customer=state is None)
        self._note_health(decision.state, out.health)
        self.store.put(decision.state)
        self._schedule(event.customer_id, self.engine.due_at(decision.state))
        self._advance(wm, self.clock.observe(source, event.occurred_at, caught_up), out)
        return out

    def _advance(self, wm: float, new_wm: float, out: Outcome) -> None:
        """Sweep from watermark ``wm`` to ``new_wm``, a day at a time: every outcome of a
        day is learned before any decision of the next (participation.py), whatever
        the arrival order."""
        if new_wm <= wm:
            return
        if wm > -math.inf:
            day_end = (wm // DAY_SECONDS + 1) * DAY_SECONDS
            while day_end < new_wm:
                self.sweep(day_end, out)
                day_end += DAY_SECONDS
        self.sweep(new_wm, out)

    def _repeat(self, source: str, caught_up: bool, wm: float) -> Outcome:
        """A repeat has no effect of its own, but the last record of a held input
        still releases it: a new owner re-reading what the previous one applied
        (an uncommitted tail) may see nothing but repeats up to the input's end, and
        the input would hold the watermark back forever. Whatever the release lets
        the watermark pass is swept as usual."""
        out = Outcome(duplicate=True)
        if caught_up:
            # Not its time: a repeat may differ in body.
            self._advance(wm, self.clock.release(source), out)
        return out

    def observe(self, source: str, occurred_at: float, caught_up: bool = False) -> Outcome:
        """Let a repeated event move the clock (and sweep), without applying it.

        After a restart the repeats of the uncommitted tail still tell whether
        their input has caught up; without them the watermark could stay held
        by an input whose remaining messages are all repeats.
        """
        wm = self.clock.watermark
        out = Outcome(duplicate=True)
        self._advance(wm, self.clock.observe(source, occurred_at, caught_up), out)
        return out

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
            found, deltas = self.engine.advance(st, watermark, self.model)
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
