"""Which metric deltas a settled event produces, per customer, in event-time order.

Runs before the signals see the event, on the customer's state as it was:
distinct-customer counts need to know which windows the customer already
counted itself in; TTR and FCR need the ticket as it was opened and replied
to; trial-to-paid credits a conversion to the window its trial started in
(the cohort). This module keeps that bookkeeping in the state too.
"""

from __future__ import annotations

from typing import Any

from cxstream.engine.config import DAY_SECONDS, EngineConfig
from cxstream.engine.events import ACTIVITY_TYPES, EVENT_TYPES
from cxstream.engine.metrics import MetricDelta, rolling_windows, window_of
from cxstream.engine.state import CustomerState

__all__ = ["at_risk_delta", "event_deltas", "participation_deltas"]

_CAP = 8  # ticket records kept per customer


class _Out:
    __slots__ = ("cfg", "out", "segment")

    def __init__(self, cfg: EngineConfig, segment: str | None) -> None:
        self.cfg = cfg
        self.segment = segment
        self.out: list[MetricDelta] = []

    def window(self, metric: str, start: float, seconds: int, num: float, den: float = 0.0,
               sample: float | None = None) -> None:
        self.out.append(MetricDelta(metric, None, start, seconds, num, den, sample))
        if self.segment is not None:
            self.out.append(MetricDelta(metric, self.segment, start, seconds, num, den, sample))

    def add(self, metric: str, t: float, num: float, den: float = 0.0,
            sample: float | None = None, rolling: bool = True) -> None:
        for seconds in self.cfg.metric_windows_seconds:
            self.window(metric, window_of(t, seconds), seconds, num, den, sample)
        if rolling:
            day = window_of(t, int(DAY_SECONDS))
            for days in self.cfg.rolling_windows_days:
                for start in rolling_windows(day, days, None):
                    self.window(metric, start, days * int(DAY_SECONDS), num, den, sample)


def event_deltas(st: CustomerState, row: list[Any], cfg: EngineConfig) -> list[MetricDelta]:
    """Deltas for one settled event row; updates the state's metric bookkeeping."""
    t, _fp, code, a, b = row[:5]
    kind = EVENT_TYPES[code]
    o = _Out(cfg, st.segment)
    if kind in ACTIVITY_TYPES:
        _active(st, t, o)
    if kind in ("email.sent", "email.bounced", "email.opened"):
        num, den = {"email.sent": (0.0, 1.0), "email.bounced": (0.0, -1.0),
                    "email.opened": (1.0, 0.0)}[kind]
        o.add("email_open_rate", t, num, den, rolling=False)
    elif kind == "survey.response" and b is not None:
        if a == "nps":
            o.add("nps", t, 1.0 if b >= 9 else -1.0 if b <= 6 else 0.0, 1.0)
        elif a == "csat":
            o.add("csat", t, 1.0 if b >= 4 else 0.0, 1.0)
        elif a == "ces":
            o.add("ces", t, float(b), 1.0)
    elif kind.startswith("ticket."):
        _ticket(st, t, kind, a, b, o)
    elif kind == "subscription.cancelled":
        o.add("cancellations", t, 1.0)
    elif kind == "subscription.trial_started":
        st.trial_started_at = t
        o.add("trial_to_paid", t, 0.0, 1.0)
    elif kind == "subscription.converted" and st.trial_started_at is not None:
        o.add("trial_to_paid", st.trial_started_at, 1.0, 0.0)
        st.trial_started_at = None
    return o.out


def at_risk_delta(st: CustomerState, t: float, cfg: EngineConfig) -> list[MetricDelta]:
    """A customer newly at risk, counted in the windows of the event time it was raised."""
    o = _Out(cfg, st.segment)
    o.add("at_risk_raised", t, 1.0, rolling=False)
    return o.out


def participation_deltas(st: CustomerState, level: int, churned: bool, t: float
                         ) -> list[MetricDelta]:
    """A labelled participation snapshot, for the pooled thresholds (all time, not windowed).

    ``numerator``: 1 if the snapshot was followed by churn; ``sample``: its
    participation level; ``denominator``: the event time it was labelled at.
    """
    num = 1.0 if churned else 0.0
    out = [MetricDelta("participation", None, 0.0, 0, num, t, float(level))]
    if st.segment is not None:
        out.append(MetricDelta("participation", st.segment, 0.0, 0, num, t, float(level)))
    return out


def _active(st: CustomerState, t: float, o: _Out) -> None:
    for seconds in o.cfg.metric_windows_seconds:
        start = window_of(t, seconds)
        if st.counted.get(seconds) != start:
            st.counted[seconds] = start
            o.window("active_customers", start, seconds, 1.0)
    day_seconds = int(DAY_SECONDS)
    day = window_of(t, day_seconds)
    last = st.last_active_day * DAY_SECONDS if st.last_active_day is not None else None
    if last is not None and last >= day:
        return
    for days in o.cfg.rolling_windows_days:
        for start in rolling_windows(day, days, last):
            o.window("active_customers", start, days * day_seconds, 1.0)


def _ticket(st: CustomerState, t: float, kind: str, ticket_id: str, handle: Any,
            o: _Out) -> None:
    if handle is not None:
        o.add("aht", t, float(handle), 1.0)
    rec = st.tickets.get(ticket_id)
    if kind == "ticket.opened":
        if rec is None:
            st.tickets[ticket_id] = [t, 0, False, None, False]
            if len(st.tickets) > _CAP:
                oldest = min(st.tickets, key=lambda k: (st.tickets[k][0], k))
                del st.tickets[oldest]
        return
    if rec is None:
        return  # opened before the records we keep, or never seen opening
    opened_at, replies, reopened, resolved_at, fcr = rec
    if kind == "ticket.replied":
        rec[1] = replies + 1
    elif kind == "ticket.reopened":
        rec[2] = True
        if fcr and resolved_at is not None:
            # Counted as resolved at first contact, but it came back: take it back,
            # in the window where it was counted.
            o.add("fcr", resolved_at, -1.0, 0.0)
            rec[4] = False
    elif kind == "ticket.resolved" and resolved_at is None:
        o.add("ttr", t, 0.0, 0.0, sample=t - opened_at)
        first_contact = not reopened and replies <= 1
        o.add("fcr", t, 1.0 if first_contact else 0.0, 1.0)
        rec[3] = t
        rec[4] = first_contact
