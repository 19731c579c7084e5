"""The engine: one customer's state and one event in, a ``Decision`` out.

``Engine.apply`` deduplicates an event, counts it into the additive metric
deltas at once, and queues it in the customer's ``pending`` rows.
``Engine.advance`` then *settles* the customer up to a watermark: pending
rows at or before it are applied in event-time order, and the signals, the
health score and every alert kind are evaluated at each of them and at every
deadline in between (the moment an inactivity line or a ticket's overdue line
is crossed). So every decision is stamped with the event time it belongs to
and is the same whatever the arrival order within the allowed lateness, and
whether the sweep or the customer's own next event brought it. Nothing here
does I/O or reads a clock.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxstream.engine import episodes, measures, participation, signals
from cxstream.engine.alerts import Alert
from cxstream.engine.churn import ChurnModel
from cxstream.engine.churn import observe as churn_observation
from cxstream.engine.config import DAY_SECONDS, EngineConfig
from cxstream.engine.events import Event
from cxstream.engine.features import features, pack
from cxstream.engine.learning import WEEK, Cancellation, LearningRow, Snapshot, boundary_after
from cxstream.engine.metrics import MetricDelta
from cxstream.engine.participation import ParticipationModel
from cxstream.engine.scoring import HealthSnapshot, health
from cxstream.engine.state import CustomerState

__all__ = ["MAX_PENDING", "MAX_PENDING_WAITING", "Decision", "Engine", "ModelSource",
           "event_id_hash", "event_row"]

# Events held per customer until the watermark passes them. In steady state a
# customer has a handful within the lateness; while one input topic's backlog
# holds the watermark back, the others' events queue up, and settling early in
# arrival order would break replay equality, so the cap is generous (~12 KB of
# state at most, transiently) and only bounds a flood.
MAX_PENDING = 256
# While a partition's decisions wait for a churn model version (the slowest
# partition has not passed a week boundary yet), its events queue for as long as
# the skew between partitions lasts: a rebalance in an accelerated backfill is
# weeks of event time. Settling early there would decide without the version
# replay uses, so the bound is higher (~200 KB of state, transiently); what still
# overflows settles early and is counted (``Decision.settled_early``).
MAX_PENDING_WAITING = 4096
_CANCELLED = signals.TYPE_CODE["subscription.cancelled"]
_KIND_CODE = {kind: i for i, kind in enumerate(signals.KINDS)}  # short, for ``published``


def event_id_hash(event_id: str) -> int:
    """A stable 48-bit fingerprint of an event id (Python's ``hash`` is salted per process).

    48 bits keep the state small; among one customer's few dozen remembered
    ids a false match has odds of about 1 in 10^11 per event.
    """
    digest = hashlib.blake2b(event_id.encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


def event_row(event: Event, fingerprint: int, include_comments: bool = False) -> list[object]:
    """The compact pending row ``[t, fingerprint, type code, a, b]`` of an event.

    A survey comment is personal data: it is kept (as a sixth element) only
    when ``include_comments`` is on.
    """
    a: object = None
    b: object = None
    if event.type == "login":
        a = signals.seat_bit(event.user_id)
    elif event.type.startswith("ticket."):
        a = event.ticket_id
        b = event.handle_seconds
    elif event.type == "survey.response":
        a, b = event.survey, event.score
        if include_comments and event.comment:
            return [event.occurred_at, fingerprint, signals.TYPE_CODE[event.type], a, b,
                    event.comment]
    return [event.occurred_at, fingerprint, signals.TYPE_CODE[event.type], a, b]


@dataclass(slots=True)
class Decision:
    """What one event (or one sweep) changed and what it says to publish."""

    state: CustomerState
    alerts: list[Alert] = field(default_factory=list)
    metrics: list[MetricDelta] = field(default_factory=list)
    duplicate: bool = False
    rows: list[LearningRow] = field(default_factory=list)
    settled_early: int = 0  # events settled before the watermark passed them (a flood)


class ModelSource(Protocol):
    """Where the churn model version in force at an event time comes from."""

    def model_at(self, t: float) -> ChurnModel | None: ...


class _Ctx:
    """What one settling needs besides the state: the partition's participation model,
    the churn model source, and the learning rows it produces."""

    __slots__ = ("learner", "model", "rows")

    def __init__(self, model: ParticipationModel | None, learner: ModelSource | None) -> None:
        self.model = model
        self.learner = learner
        self.rows: list[LearningRow] = []


class Engine:
    """Pure decision logic shared by replay and the streaming worker."""

    __slots__ = ("config", "suppressed")

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        # Raises held back by cooldown or the cap, a running count for the ops metric.
        self.suppressed = 0

    def apply(
        self, state: CustomerState | None, event: Event, watermark: float | None,
        model: ParticipationModel | None = None, learner: ModelSource | None = None,
        max_pending: int = MAX_PENDING,
    ) -> Decision:
        """Accept one (not late) event: dedupe, count, queue, and settle up to ``watermark``.

        ``model``: the partition's learned participation thresholds (see
        ``participation.py``); without one, participation is neither learned
        nor alerted on. ``learner``: where churn models come from
        (``learning.py``); with one, the customer's weekly feature snapshots and
        cancellations are learning rows of the decision, and ``churn_risk`` uses
        the version in force. ``max_pending``: events held for the watermark beyond
        which the oldest settles early (see ``MAX_PENDING``).
        """
        ctx = _Ctx(model, learner)
        t = event.occurred_at
        st = state
        if st is None:
            # A new customer starts settled at the watermark: nothing before it is theirs.
            st = CustomerState(event.customer_id, first_seen_at=t, max_seen_at=t,
                               settled_at=watermark, evaluated_at=watermark)
        fingerprint = event_id_hash(event.event_id)
        if fingerprint in st.recent_ids:
            return Decision(st, duplicate=True)
        alerts: list[Alert] = []
        deltas: list[MetricDelta] = []
        if watermark is not None:
            self._advance(st, watermark, alerts, deltas, ctx)

        st.recent_ids.append(fingerprint)
        if len(st.recent_ids) > self.config.dedupe_ids:
            del st.recent_ids[0]
        if learner is not None and (st.churn_next is None
                                    or st.churn_next == boundary_after(st.first_seen_at)):
            # No snapshot taken yet: the first is due at the first week boundary after the
            # earliest event, whichever event happened to arrive first.
            st.churn_next = boundary_after(min(t, st.first_seen_at))
        if t < st.first_seen_at:
            st.first_seen_at = t
        if t > st.max_seen_at:
            st.max_seen_at = t
        st.events += 1
        if event.segment is not None:
            st.segment = event.segment
        bisect.insort(st.pending, event_row(event, fingerprint, self.config.include_comments))
        early = 0
        if len(st.pending) > max_pending:
            # A flood with no watermark progress: settle the oldest early to stay bounded.
            self._settle_row(st, st.pending.pop(0), alerts, deltas, ctx)
            early = 1
        return Decision(st, alerts, deltas, rows=ctx.rows, settled_early=early)

    def advance(self, st: CustomerState, watermark: float,
                model: ParticipationModel | None = None, learner: ModelSource | None = None,
                rows: list[LearningRow] | None = None,
                ) -> tuple[list[Alert], list[MetricDelta]]:
        """Settle a customer up to ``watermark`` (idempotent): the alerts and metric deltas
        (learning rows, with a ``learner``, into ``rows``)."""
        alerts: list[Alert] = []
        deltas: list[MetricDelta] = []
        ctx = _Ctx(model, learner)
        self._advance(st, watermark, alerts, deltas, ctx)
        if rows is not None:
            rows.extend(ctx.rows)
        return alerts, deltas

    def _advance(self, st: CustomerState, watermark: float, alerts: list[Alert],
                 deltas: list[MetricDelta], ctx: _Ctx) -> None:
        if st.settled_at is not None and watermark <= st.settled_at:
            return
        st.settled_at = watermark
        pending = st.pending
        # Strictly before the watermark: an event exactly at it may still arrive,
        # and is settled with its peers at the next advance, whatever the order.
        while pending and pending[0][0] < watermark:
            self._settle_row(st, pending.pop(0), alerts, deltas, ctx)
        self._run_deadlines(st, watermark, alerts, deltas, ctx)

    def _settle_row(self, st: CustomerState, row: list[Any], alerts: list[Alert],
                    deltas: list[MetricDelta], ctx: _Ctx) -> None:
        t = float(row[0])
        self._run_deadlines(st, t, alerts, deltas, ctx)
        deltas.extend(measures.event_deltas(st, row, self.config))
        signals.apply_event(st, row, self._profile(st))
        if row[2] == _CANCELLED:
            if ctx.model is not None:
                self._label_snapshots(st, t, ctx.model, deltas, churned=True)
            if ctx.learner is not None:
                ctx.rows.append(Cancellation(st.customer_id, t))
            if st.episodes:
                alerts.extend(episodes.close_all(st, t, st.score, self._profile(st)))
        self._evaluate(st, t, alerts, deltas, ctx)

    def snapshot(self, st: CustomerState) -> HealthSnapshot:
        """The customer's health as of its last evaluation, with the inputs behind it."""
        at = st.evaluated_at
        inputs = signals.score_inputs(st, at, self._profile(st)) if at is not None else {}
        return HealthSnapshot.of(st.customer_id, st.segment, st.score, at, st.episodes, inputs)

    def changed_health(self, st: CustomerState) -> HealthSnapshot | None:
        """A snapshot if the rounded score or the open alerts changed since the last one."""
        key = [None if st.score is None else round(st.score),
               sorted(f"{_KIND_CODE[k]}{ep.severity[0]}" for k, ep in st.episodes.items())]
        if key == st.published or st.score is None:
            return None
        st.published = key
        return self.snapshot(st)

    def due_at(self, st: CustomerState) -> float | None:
        """The time that, once the watermark is past it, ``advance`` decides at."""
        after = st.evaluated_at if st.evaluated_at is not None else -math.inf
        due = signals.next_deadline(st, self._profile(st), after)
        if st.churn_next is not None and (due is None or st.churn_next < due):
            due = st.churn_next
        if st.pending and (due is None or st.pending[0][0] < due):
            due = st.pending[0][0]
        return due

    def _profile(self, st: CustomerState) -> signals.Profile:
        return self.config.profile_for(st.segment)

    def _run_deadlines(self, st: CustomerState, until: float, alerts: list[Alert],
                       deltas: list[MetricDelta], ctx: _Ctx) -> None:
        prof = self._profile(st)
        while True:
            after = st.evaluated_at if st.evaluated_at is not None else -math.inf
            deadline = signals.next_deadline(st, prof, after)
            snap = st.churn_next
            if snap is not None and snap < until and (deadline is None or snap <= deadline):
                self._snapshot(st, snap, prof, ctx)  # before an evaluation at the same time
                continue
            if deadline is None or deadline >= until:  # at ``until`` itself: the caller's turn
                return
            self._evaluate(st, deadline, alerts, deltas, ctx)

    def _snapshot(self, st: CustomerState, t: float, prof: signals.Profile, ctx: _Ctx) -> None:
        """The weekly learning snapshot at boundary ``t`` (none after a cancellation)."""
        st.churn_next = t + WEEK
        if ctx.learner is not None and st.cancelled_at is None:
            ctx.rows.append(Snapshot(st.customer_id, t, st.segment,
                                     pack(features(st, t, prof))))

    def _label_snapshots(self, st: CustomerState, t: float, model: ParticipationModel,
                         deltas: list[MetricDelta], churned: bool) -> None:
        """Label participation snapshots: all of them (``churned``) or the matured ones."""
        keep = []
        horizon = participation.HORIZON_DAYS * DAY_SECONDS
        for snap in st.part_snaps:
            if churned or t - snap[0] > horizon:
                level = int(snap[1])
                model.add(st.segment, level, churned, t)
                deltas.extend(measures.participation_deltas(st, level, churned, t))
            else:
                keep.append(snap)
        st.part_snaps = keep

    def _participation(self, st: CustomerState, t: float, model: ParticipationModel,
                       deltas: list[MetricDelta]) -> signals.Observation:
        """Label and take snapshots, then compare participation with the learned threshold."""
        if st.part_snaps:
            self._label_snapshots(st, t, model, deltas, churned=False)
        tenure_days = (t - st.first_seen_at) / DAY_SECONDS
        if tenure_days < participation.WINDOW_DAYS or st.cancelled_at is not None:
            return participation.inactive()
        level = participation.participation_days(st, t)
        if st.part_next is None or t >= st.part_next:
            st.part_snaps.append([t, level])
            del st.part_snaps[:-participation.MAX_SNAPSHOTS]
            st.part_next = t + participation.SNAPSHOT_EVERY_DAYS * DAY_SECONDS
        learned = model.threshold(st.segment, t)
        return participation.observe(level, learned, self._profile(st),
                                     "participation" in st.episodes)

    def _evaluate(self, st: CustomerState, t: float, alerts: list[Alert],
                  deltas: list[MetricDelta], ctx: _Ctx) -> None:
        model = ctx.model
        prof = self._profile(st)
        weeks = signals.week_counts(st, t)
        inputs = signals.score_inputs(st, t, prof, weeks)
        score = health(inputs, prof.weights)
        st.score = score
        day = int(t // DAY_SECONDS)
        hist = st.score_hist
        # A new customer's score moves as its first data arrives; drops count once
        # the customer has a score_drop_days history.
        if t - st.first_seen_at >= prof.score_drop_days * DAY_SECONDS:
            if hist and hist[-1][0] == day:
                hist[-1][1] = max(hist[-1][1], score)
            else:
                hist.append([day, score])
        while hist and hist[0][0] <= day - prof.score_drop_days:
            del hist[0]
        observations = signals.observe(st, t, prof, score, inputs, weeks, prof.kinds)
        observations["participation"] = (self._participation(st, t, model, deltas)
                                         if model is not None else participation.inactive())
        if "churn_risk" in prof.alert_kinds:
            observations["churn_risk"] = churn_observation(
                st, t, prof, ctx.learner.model_at(t) if ctx.learner is not None else None,
                observations["inactivity"])
        for kind in prof.alert_kinds:
            alert, suppressed = episodes.transition(st, kind, observations[kind], t, score, prof)
            if alert is not None:
                alerts.append(alert)
                if alert.kind == "at_risk" and alert.state == "raised":
                    deltas.extend(measures.at_risk_delta(st, t, self.config))
            self.suppressed += suppressed
        st.evaluated_at = t
