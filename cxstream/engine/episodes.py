"""Alert episode lifecycle: raise, escalate, resolve, with cooldown and a cap.

One open episode per customer and kind. A condition that starts raises it
(unless the kind is cooling down after its last episode, or the customer hit
the cap of raises per 30 days: CS teams drown in repeats); a worse severity
escalates it; the condition ending resolves it and starts the cooldown. All
times are event time, so the same events always give the same transitions.
"""

from __future__ import annotations

from cxstream.engine.alerts import SEVERITY_RANK, Alert, Reason, alert_id
from cxstream.engine.config import DAY_SECONDS, Profile
from cxstream.engine.signals import Observation
from cxstream.engine.state import CustomerState, Episode

__all__ = ["close_all", "transition"]

_CAP_WINDOW = 30 * DAY_SECONDS
# Kinds that limit themselves (renewal_risk: once per renewal cycle; churn_risk: its alert
# budget and a 30-day cooldown) are neither held back
# by the cap nor counted in it, so the noisier kinds cannot crowd them out.
_UNCAPPED = frozenset({"renewal_risk", "churn_risk"})


def transition(st: CustomerState, kind: str, obs: Observation, t: float, score: float | None,
               prof: Profile) -> tuple[Alert | None, bool]:
    """Apply one observation; returns (alert to publish or None, whether a raise was suppressed)."""
    ep = st.episodes.get(kind)
    if ep is None:
        if not obs.active or st.cancelled_at is not None:
            return None, False
        if st.cooldown.get(kind, float("-inf")) > t:
            return None, True
        if kind not in _UNCAPPED:
            st.raises[:] = [x for x in st.raises if x > t - _CAP_WINDOW]
            if len(st.raises) >= prof.max_raises_per_30d:
                return None, True
            st.raises.append(t)
        ep = Episode(t, 0, obs.severity)
        st.episodes[kind] = ep
        return _alert(st, kind, ep, "raised", obs.severity, t, score, obs.reasons), False
    if not obs.active:
        return resolve(st, kind, t, score, prof, obs.reasons, "recovered"), False
    if SEVERITY_RANK[obs.severity] > SEVERITY_RANK[ep.severity]:
        ep.severity = obs.severity
        ep.seq += 1
        return _alert(st, kind, ep, "escalated", obs.severity, t, score, obs.reasons), False
    return None, False


def resolve(st: CustomerState, kind: str, t: float, score: float | None, prof: Profile,
            now: tuple[Reason, ...], code: str) -> Alert:
    """Close the open episode of ``kind`` and start its cooldown."""
    ep = st.episodes.pop(kind)
    ep.seq += 1
    days = prof.churn_cooldown_days if kind == "churn_risk" else prof.cooldown_days
    st.cooldown[kind] = t + days * DAY_SECONDS
    if code == "subscription_cancelled":
        reason = Reason(code, None, None, "Subscription cancelled; episode closed.")
    else:
        first = now[0] if now else None
        reason = Reason(code, first.value if first else None,
                        first.threshold if first else None,
                        "Recovered: " + (first.message if first else "the condition cleared."))
    return _alert(st, kind, ep, "resolved", "info", t, score, (reason,))


def close_all(st: CustomerState, t: float, score: float | None, prof: Profile) -> list[Alert]:
    """Resolve every open episode (the customer cancelled)."""
    return [resolve(st, kind, t, score, prof, (), "subscription_cancelled")
            for kind in sorted(st.episodes)]


def _alert(st: CustomerState, kind: str, ep: Episode, state: str, severity: str, t: float,
           score: float | None, reasons: tuple[Reason, ...]) -> Alert:
    return Alert(
        alert_id=alert_id(st.customer_id, kind, ep.started_at),
        customer_id=st.customer_id,
        kind=kind,
        state=state,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        health_score=score,
        reasons=reasons,
        decided_at=t,
        segment=st.segment,
        seq=ep.seq,
    )
