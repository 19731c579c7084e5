"""Scoring at-risk alerts against churn truth, and two rules of thumb to compare with.

``evaluate`` turns a stream of alerts and a truth table into the brief's four
numbers: precision, recall at a minimum lead, lead time (median and p10) and
alert volume. The exact choices, all in event time:

* Evaluated period ``P = [start + warmup_days, end]`` of the events. Only
  ``raised`` alerts decided inside ``P`` count, and only churners whose
  ``churned_at`` is inside ``P``. The warm-up lets every rule see enough history
  before it is judged (the 28-day-drop rule needs 35 days); it is 0 by default.
* An alert *precedes* a churn when ``churned_at - horizon <= decided_at <= churned_at``.
* Precision = alerted customers with at least one preceding alert / judged
  alerted customers. Alerted customers are those with at least one raised alert
  in ``P``. An alerted customer who is not a hit and has not churned, and all of
  whose alerts are in the last ``horizon`` days of ``P``, is *censored* (the
  outcome is not known yet) and left out. Alerts decided after the churn are
  not hits: a customer alerted only after cancelling counts against precision
  (``post_churn_only`` says how many).
* Recall = churners with a raised alert decided in
  ``[churned_at - horizon, churned_at - min_lead]`` / churners. An alert more
  than ``horizon`` days ahead is not counted as foreseeing this churn.
* Lead time = ``churned_at`` minus the first preceding alert's ``decided_at``,
  in days, over churners with a preceding alert (any lead, also under
  ``min_lead``). p10 is the 10th percentile with linear interpolation
  (numpy's default), the short-notice end.
* Alert volume = raised alerts in ``P`` / (customers / 1,000) / (length of ``P``
  in weeks).

The baselines are plain rules over the event stream: ``no_login_alerts`` (no
login for 14 days, one alert per silent stretch) and ``activity_drop_alerts``
(logins plus email opens in the trailing 7 days, times 4, down more than 50%
on the 28 days before, checked at every UTC midnight, one alert per episode).
Both read events in event-time order and keep a few numbers per customer.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxstream.engine.alerts import rfc3339
from cxstream.engine.config import DAY_SECONDS

__all__ = [
    "AlertLike",
    "EventLike",
    "RaisedAlert",
    "Report",
    "TruthRow",
    "activity_drop_alerts",
    "evaluate",
    "no_login_alerts",
    "percentile",
]

WEEK_SECONDS = 7 * DAY_SECONDS


class AlertLike(Protocol):
    """What evaluation reads from an alert (``cxstream.alerts.Alert`` has it)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def decided_at(self) -> float: ...


class EventLike(Protocol):
    """What the baselines read from an event (``cxstream.events.Event`` has it)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """A baseline's alert: one customer, the event time it was decided at."""

    customer_id: str
    decided_at: float
    kind: str = "baseline"
    state: str = "raised"


@dataclass(frozen=True, slots=True)
class TruthRow:
    """One customer's label; ``fate`` and ``segment`` are optional extras for breakdowns."""

    customer_id: str
    churned: bool
    churned_at: float | None
    fate: str | None = None
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """The scores of one alert stream over one evaluated period."""

    period_start: float
    period_end: float
    customers: int
    horizon_days: float
    min_lead_days: float
    raised_alerts: int
    alerted_customers: int
    judged_customers: int
    true_positives: int
    censored_customers: int
    post_churn_only: int
    precision: float | None
    churners: int
    caught: int
    recall: float | None
    lead_samples: int
    median_lead_days: float | None
    p10_lead_days: float | None
    alerts_per_1k_per_week: float
    recall_by_fate: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (times as RFC 3339)."""
        return {
            "period_start": rfc3339(self.period_start),
            "period_end": rfc3339(self.period_end),
            "customers": self.customers,
            "horizon_days": self.horizon_days,
            "min_lead_days": self.min_lead_days,
            "raised_alerts": self.raised_alerts,
            "alerted_customers": self.alerted_customers,
            "judged_customers": self.judged_customers,
            "true_positives": self.true_positives,
            "censored_customers": self.censored_customers,
            "post_churn_only": self.post_churn_only,
            "precision": self.precision,
            "churners": self.churners,
            "caught": self.caught,
            "recall": self.recall,
            "lead_samples": self.lead_samples,
            "median_lead_days": self.median_lead_days,
            "p10_lead_days": self.p10_lead_days,
            "alerts_per_1k_per_week": self.alerts_per_1k_per_week,
            "recall_by_fate": {k: {"caught": c, "churners": n}
                               for k, (c, n) in sorted(self.recall_by_fate.items())},
        }


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of non-empty ``values``, linear between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def evaluate(
    alerts: Iterable[AlertLike],
    truth: Iterable[TruthRow],
    events_window: tuple[float, float],
    customers: int,
    horizon_days: float = 30.0,
    min_lead_days: float = 7.0,
    warmup_days: float = 0.0,
    kinds: Collection[str] | None = None,
) -> Report:
    """Precision, recall at ``min_lead_days``, lead time and volume of ``alerts`` (see module).

    :param kinds: score only alerts of these kinds (default: every kind).
    """
    start, end = events_window
    p_start = start + warmup_days * DAY_SECONDS
    if not p_start < end:
        raise ValueError("the evaluated period is empty (window shorter than the warm-up)")
    if customers <= 0:
        raise ValueError("customers must be > 0")
    horizon = horizon_days * DAY_SECONDS
    min_lead = min_lead_days * DAY_SECONDS

    by_customer: dict[str, list[float]] = {}
    raised = 0
    for a in alerts:
        if a.state != "raised" or not p_start <= a.decided_at <= end:
            continue
        if kinds is not None and a.kind not in kinds:
            continue
        raised += 1
        by_customer.setdefault(a.customer_id, []).append(a.decided_at)
    for times in by_customer.values():
        times.sort()

    churn_at: dict[str, float] = {}
    fates: dict[str, str] = {}
    for row in truth:
        if row.churned and row.churned_at is not None:
            churn_at[row.customer_id] = row.churned_at
            fates[row.customer_id] = row.fate or "churned"

    # Precision over alerted customers.
    hits = censored = post_churn = 0
    for cid, times in by_customer.items():
        c_at = churn_at.get(cid)
        if c_at is not None and any(c_at - horizon <= t <= c_at for t in times):
            hits += 1
        elif c_at is not None and c_at <= end:
            if times[0] > c_at:
                post_churn += 1
        elif times[0] > end - horizon:
            censored += 1
    judged = len(by_customer) - censored

    # Recall and lead time over churners in the period.
    churners = caught = 0
    leads: list[float] = []
    by_fate: dict[str, list[int]] = {}
    for cid, c_at in churn_at.items():
        if not p_start <= c_at <= end:
            continue
        churners += 1
        fate = by_fate.setdefault(fates[cid], [0, 0])
        fate[1] += 1
        times = by_customer.get(cid, [])
        preceding = [t for t in times if c_at - horizon <= t <= c_at]
        if preceding:
            leads.append((c_at - preceding[0]) / DAY_SECONDS)
        if any(t <= c_at - min_lead for t in preceding):
            caught += 1
            fate[0] += 1

    weeks = (end - p_start) / WEEK_SECONDS
    return Report(
        period_start=p_start,
        period_end=end,
        customers=customers,
        horizon_days=horizon_days,
        min_lead_days=min_lead_days,
        raised_alerts=raised,
        alerted_customers=len(by_customer),
        judged_customers=judged,
        true_positives=hits,
        censored_customers=censored,
        post_churn_only=post_churn,
        precision=hits / judged if judged else None,
        churners=churners,
        caught=caught,
        recall=caught / churners if churners else None,
        lead_samples=len(leads),
        median_lead_days=percentile(leads, 0.5) if leads else None,
        p10_lead_days=percentile(leads, 0.1) if leads else None,
        alerts_per_1k_per_week=raised / (customers / 1000.0) / weeks,
        recall_by_fate={k: (v[0], v[1]) for k, v in by_fate.items()},
    )


# -- baselines -------------------------------------------------------------------------------


def no_login_alerts(
    events: Iterable[EventLike], days: float = 14.0, end: float | None = None
) -> list[RaisedAlert]:
    """One alert per stretch of ``days`` without a login, decided when the stretch is reached.

    The stretch counts from the customer's last login, or from their first event of any
    kind if they never logged in (as the engine counts from first sight). Stretches
    still open at ``end`` (default: the last event time) are alerted if already long
    enough. A cancelled customer is not watched (nobody alerts CS about an account that
    has left) until a new trial, conversion or renewal. Events must come in event-time
    order per customer.
    """
    gap = days * DAY_SECONDS
    last: dict[str, float] = {}
    gone: set[str] = set()  # cancelled customers
    out: list[RaisedAlert] = []
    latest = -math.inf

    def close(cid: str, base: float, until: float) -> None:
        if base + gap <= until:
            out.append(RaisedAlert(cid, base + gap, "no_login"))

    for ev in events:
        t = ev.occurred_at
        if t > latest:
            latest = t
        cid = ev.customer_id
        kind = ev.type
        if kind == "subscription.cancelled":
            base = last.pop(cid, None)
            if base is not None:
                close(cid, base, t)
            gone.add(cid)
            continue
        if cid in gone:
            if kind not in _BACK:
                continue
            gone.discard(cid)
        base = last.get(cid)
        if base is None:
            last[cid] = t
            continue
        if kind != "login" or t <= base:
            continue
        close(cid, base, t)
        last[cid] = t
    stop = latest if end is None else end
    for cid, base in last.items():
        close(cid, base, stop)
    out.sort(key=lambda a: (a.decided_at, a.customer_id))
    return out


# Events that bring a cancelled customer back under watch.
_BACK = frozenset({"subscription.trial_started", "subscription.converted",
                   "subscription.renewed"})


class _DropTracker:
    """Daily activity counts of the last 35 days and the episode flag of one customer."""

    __slots__ = ("checked", "first_day", "gone", "history", "in_episode")

    def __init__(self, day: int) -> None:
        self.first_day = day
        self.checked = day - 1  # last day whose midnight check ran
        self.history: deque[list[int]] = deque()  # [day, count], oldest first
        self.in_episode = False
        self.gone = False  # cancelled: not watched until a trial, conversion or renewal


def activity_drop_alerts(
    events: Iterable[EventLike],
    drop: float = 0.5,
    recent_days: int = 7,
    prior_days: int = 28,
    min_prior: int = 4,
    end: float | None = None,
) -> list[RaisedAlert]:
    """Alert when activity over the last ``recent_days``, scaled to ``prior_days``, fell by more
    than ``drop`` against the ``prior_days`` before; once per episode.

    Activity is logins plus email opens. The check runs at every UTC midnight (event
    time) once the customer has been seen for ``recent_days + prior_days`` days; the
    episode ends on the first check where the fall is ``drop`` or less. A drop needs a
    baseline: at least ``min_prior`` activities (one a week) in the prior window, or a
    low-activity customer would alert on every quiet week. A cancelled customer is not
    watched until a new trial, conversion or renewal. Events must come in event-time
    order; checks run up to ``end`` (default: the last event time).
    """
    span = recent_days + prior_days
    trackers: dict[str, _DropTracker] = {}
    out: list[RaisedAlert] = []
    latest = -math.inf

    def check_until(cid: str, tr: _DropTracker, last_day: int) -> None:
        """Run the midnight checks of days ``tr.checked + 1 .. last_day``."""
        day = max(tr.checked + 1, tr.first_day + span - 1)
        while day <= last_day:
            hist = tr.history
            while hist and hist[0][0] <= day - span:
                hist.popleft()
            if not hist and not tr.in_episode:
                break  # nothing in the windows: no check can fire until new activity
            recent = prior = 0
            for d, n in hist:
                if d > day - recent_days:
                    recent += n
                else:
                    prior += n
            fell = prior >= min_prior and recent * prior_days < (1.0 - drop) * prior * recent_days
            if fell and not tr.in_episode and not tr.gone:
                out.append(RaisedAlert(cid, (day + 1) * DAY_SECONDS, "activity_drop"))
            tr.in_episode = fell
            day += 1
        tr.checked = last_day

    for ev in events:
        t = ev.occurred_at
        if t > latest:
            latest = t
        day = int(t // DAY_SECONDS)
        cid = ev.customer_id
        tr = trackers.get(cid)
        if tr is None:
            tr = trackers[cid] = _DropTracker(day)
        if day - 1 > tr.checked:
            check_until(cid, tr, day - 1)
        if ev.type == "subscription.cancelled":
            tr.gone = True
        elif ev.type in _BACK:
            tr.gone = False
        if ev.type not in ("login", "email.opened"):
            continue
        hist = tr.history
        if hist and hist[-1][0] == day:
            hist[-1][1] += 1
        elif not hist or hist[-1][0] < day:
            hist.append([day, 1])
    stop = latest if end is None else end
    last_day = int(stop // DAY_SECONDS) - 1  # the last midnight at or before ``stop``
    for cid, tr in trackers.items():
        if last_day > tr.checked:
            check_until(cid, tr, last_day)
    out.sort(key=lambda a: (a.decided_at, a.customer_id))
    return out

