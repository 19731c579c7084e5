"""The inactivity signal: no login and no email open for N days of event time.

Decisions are taken only up to the watermark, and each is stamped with the
event time it belongs to (the deadline, or the first activity after it), never
with the time it happened to be noticed. So the same events give the same
alerts whether they arrive in order or shuffled within the allowed lateness,
and whether the sweep or the customer's own next event brings the decision.
"""

from __future__ import annotations

import bisect

from cxstream.alerts import Alert, Reason, alert_id, rfc3339
from cxstream.config import DAY_SECONDS, InactivityRule
from cxstream.state import CustomerState, Episode

__all__ = ["KIND", "MAX_PENDING", "due_at", "note_activity", "settle"]

KIND = "inactivity"
# Activity times held while an episode is open and the watermark has not yet
# passed them. Real customers produce a handful within a few minutes of
# lateness; the cap bounds a flood, settling the oldest early.
MAX_PENDING = 16


def _base(st: CustomerState) -> float:
    return st.last_activity_at if st.last_activity_at is not None else st.first_seen_at


def note_activity(st: CustomerState, t: float, rule: InactivityRule) -> bool:
    """Record activity at event time ``t``; True if it must wait for the watermark.

    Activity that closes no gap (within ``rule.days`` of the last activity, no
    open episode) moves the last-activity time at once: a later or earlier
    arrival of such events cannot change any decision. Anything else waits.
    """
    if KIND not in st.episodes and t <= _base(st) + rule.days * DAY_SECONDS:
        if st.last_activity_at is None or t > st.last_activity_at:
            st.last_activity_at = t
        return False
    if t not in st.pending:
        bisect.insort(st.pending, t)
    return True


def due_at(st: CustomerState, rule: InactivityRule) -> float | None:
    """The next event time at which this customer needs a decision, if any."""
    due: float | None = st.pending[0] if st.pending else None
    ep = st.episodes.get(KIND)
    if ep is None:
        nxt: float | None = _base(st) + rule.days * DAY_SECONDS
    elif ep.severity == "warning":
        nxt = _base(st) + rule.escalate_days * DAY_SECONDS
    else:
        nxt = None
    if nxt is not None and (due is None or nxt < due):
        due = nxt
    return due


def settle(st: CustomerState, watermark: float, rule: InactivityRule) -> list[Alert]:
    """Bring the customer's inactivity decisions up to ``watermark``."""
    alerts: list[Alert] = []
    while st.pending and (st.pending[0] <= watermark or len(st.pending) > MAX_PENDING):
        t = st.pending.pop(0)
        _open_or_escalate(st, t, rule, alerts)
        ep = st.episodes.pop(KIND, None)
        if ep is not None:
            gap_days = (t - _base(st)) / DAY_SECONDS
            alerts.append(
                _alert(
                    st,
                    ep,
                    "resolved",
                    "info",
                    t,
                    Reason(
                        "activity_resumed",
                        round(gap_days, 2),
                        rule.days,
                        f"Active again on {rfc3339(t)} after {gap_days:.1f} days "
                        "without a login or email open.",
                    ),
                )
            )
        if st.last_activity_at is None or t > st.last_activity_at:
            st.last_activity_at = t
    _open_or_escalate(st, watermark, rule, alerts)
    return alerts


def _open_or_escalate(
    st: CustomerState, until: float, rule: InactivityRule, alerts: list[Alert]
) -> None:
    base = _base(st)
    since = "last activity" if st.last_activity_at is not None else "first seen"
    raise_at = base + rule.days * DAY_SECONDS
    if KIND not in st.episodes and raise_at <= until:
        ep = Episode(raise_at, 0, "warning")
        st.episodes[KIND] = ep
        alerts.append(
            _alert(
                st,
                ep,
                "raised",
                "warning",
                raise_at,
                Reason(
                    "inactive_days",
                    rule.days,
                    rule.days,
                    f"No login or email open for {rule.days:g} days "
                    f"({since} {rfc3339(base)}).",
                ),
            )
        )
    ep = st.episodes.get(KIND)
    escalate_at = base + rule.escalate_days * DAY_SECONDS
    if ep is not None and ep.severity == "warning" and escalate_at <= until:
        ep.severity = "critical"
        ep.seq += 1
        alerts.append(
            _alert(
                st,
                ep,
                "escalated",
                "critical",
                escalate_at,
                Reason(
                    "inactive_days",
                    rule.escalate_days,
                    rule.escalate_days,
                    f"Still no login or email open after {rule.escalate_days:g} days "
                    f"({since} {rfc3339(base)}).",
                ),
            )
        )


def _alert(
    st: CustomerState,
    ep: Episode,
    state: str,
    severity: str,
    at: float,
    reason: Reason,
) -> Alert:
    seq = ep.seq + 1 if state == "resolved" else ep.seq
    return Alert(
        alert_id=alert_id(st.customer_id, KIND, ep.started_at),
        customer_id=st.customer_id,
        kind=KIND,
        state=state,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        health_score=None,
        reasons=(reason,),
        decided_at=at,
        segment=st.segment,
        seq=seq,
    )
