"""The learned churn model as the engine uses it: a probability and the reasons behind it.

A ``ChurnModel`` is one trained version (``cxstream.engine.learning`` trains
them): a logistic regression over the customer's features (``features.py``),
log-scaled counts and standardised, plus the customer's segment. It answers
the probability of a cancellation within the horizon (30 days), and which
features pushed it up most, each next to its usual value among customers who
stayed. ``observe`` turns that into the ``churn_risk`` condition: raised when
the probability reaches the version's alert line, which training set so that
about the alert budget (alerts per 1,000 customers per week) is crossed; held
while it stays above three quarters of the line. Before any version exists
(warm-up: too few cancellations yet), the personalised inactivity rule decides
instead, and the alert says so.

Pure standard library: scoring is a dot product; fitting is injected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from cxstream.engine.alerts import Reason, rfc3339
from cxstream.engine.config import DAY_SECONDS, Profile
from cxstream.engine.features import FEATURES, features
from cxstream.engine.signals import Observation
from cxstream.engine.state import CustomerState

__all__ = ["LABELS", "ChurnModel", "observe", "transform", "version_record"]

_NAMES: Final = tuple(FEATURES)
_LOG: Final = tuple(scale == "log" for scale, _ in FEATURES.values())
# How a person reads each feature: a label and how to print its value.
LABELS: Final[dict[str, tuple[str, str]]] = {
    "logins_7d": ("logins in the last 7 days", "{:.0f}"),
    "logins_28d": ("logins in the 28 days before", "{:.0f}"),
    "email_engagement_7d": ("email opens and clicks in the last 7 days", "{:.0f}"),
    "email_engagement_28d": ("email opens and clicks in the 28 days before", "{:.0f}"),
    "support_contacts_7d": ("support contacts in the last 7 days", "{:.0f}"),
    "support_contacts_28d": ("support contacts in the 28 days before", "{:.0f}"),
    "activity_change": ("activity this week against the weekly average before", "{:+.1f} (log)"),
    "active_days_28d": ("active days of the last 28", "{:.0f}"),
    "days_since_activity": ("days since the last login or email open", "{:.1f}"),
    "inactivity_vs_usual_gap": ("days since the last activity, in usual gaps", "{:.1f}"),
    "tenure_days": ("days as a customer", "{:.0f}"),
    "days_since_renewal": ("days since the last renewal or conversion", "{:.0f}"),
    "in_trial": ("in a trial", "{:.0f}"),
    "email_open_rate": ("email open rate", "{:.0%}"),
    "emails_unopened": ("emails unopened in a row", "{:.0f}"),
    "unsubscribed": ("unsubscribed from email", "{:.0f}"),
    "email_bounced": ("email bounces", "{:.0f}"),
    "open_tickets": ("open support tickets", "{:.0f}"),
    "overdue_tickets": ("support tickets open past their due time", "{:.0f}"),
    "reopened_tickets": ("tickets reopened in the last 30 days", "{:.0f}"),
    "repeat_contacts": ("repeat contacts in the last 30 days", "{:.0f}"),
    "nps_answered": ("answered an NPS survey", "{:.0f}"),
    "nps": ("latest NPS answer", "{:.0f}"),
    "csat_answered": ("answered a CSAT survey", "{:.0f}"),
    "csat": ("latest CSAT answer", "{:.0f}"),
    "ces_answered": ("answered a CES survey", "{:.0f}"),
    "ces": ("latest CES answer", "{:.0f}"),
    "probability_alive": ("probability still active (BG/NBD)", "{:.0%}"),
    "seats_7d": ("active users this week", "{:.0f}"),
    "seats_change": ("active users this week against the busiest week before", "{:+.1f} (log)"),
    "logins_per_active_day": ("logins per active day", "{:.1f}"),
}
assert set(LABELS) == set(FEATURES)


def transform(x: list[float]) -> list[float]:
    """What the regression sees: counts and days as log1p, the rest as they are."""
    return [math.log1p(v) if log and v > 0 else (0.0 if log else v)
            for v, log in zip(x, _LOG, strict=True)]


@dataclass(frozen=True, slots=True)
class ChurnModel:
    """One trained version: weights over standardised features, and its alert lines.

    ``version`` is the training cut-off (event time): every label it learned from
    was known before it. ``typical``: the mean raw value of each feature among
    customers who stayed (what "usually" means in a reason).
    """

    version: float
    coef: tuple[float, ...]  # features, then one per segment
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    low: tuple[float, ...]  # the range each transformed feature had in training: a value
    high: tuple[float, ...]  # outside it is scored as its nearest end (no extrapolation)
    segments: tuple[str, ...]
    typical: tuple[float, ...]
    threshold: float
    exit: float
    critical: float
    rows: int
    churned: int

    def _z(self, x: list[float], segment: str | None) -> list[float]:
        z = [((lo if v < lo else hi if v > hi else v) - m) / s
             for v, m, s, lo, hi in zip(transform(x), self.mean, self.scale, self.low, self.high,
                                        strict=True)]
        z.extend(1.0 if segment == name else 0.0 for name in self.segments)
        return z

    def probability(self, x: list[float], segment: str | None) -> float:
        """P(cancellation within the horizon) for feature vector ``x``."""
        logit = self.intercept + sum(c * v for c, v in zip(self.coef, self._z(x, segment),
                                                            strict=True))
        if logit >= 0:
            return 1.0 / (1.0 + math.exp(-logit))
        e = math.exp(logit)
        return e / (1.0 + e)

    def drivers(self, x: list[float], segment: str | None, top: int = 3
                ) -> list[tuple[str, float, float]]:
        """The features that pushed the risk up most: ``(name, value, typical)``."""
        z = self._z(x, segment)
        pushes = sorted(((self.coef[i] * z[i], i) for i in range(len(_NAMES))
                         if self.coef[i] * z[i] > 0), reverse=True)
        return [(_NAMES[i], x[i], self.typical[i]) for _, i in pushes[:top]]

    def reasons(self, x: list[float], segment: str | None, p: float) -> tuple[Reason, ...]:
        """The probability with the version behind it, then the strongest drivers."""
        head = Reason(
            "churn_probability", round(100.0 * p, 1), round(100.0 * self.threshold, 1),
            f"{p:.0%} chance of cancelling within 30 days (alert line {self.threshold:.0%}); "
            f"learned model of {rfc3339(self.version)[:10]}, from {self.rows:,} snapshots, "
            f"{self.churned:,} followed by a cancellation.")
        out = [head]
        for name, value, typical in self.drivers(x, segment):
            label, fmt = LABELS[name]
            out.append(Reason(
                f"driver_{name}", round(value, 3), round(typical, 3),
                f"{label[0].upper()}{label[1:]}: {fmt.format(value)}, usually "
                f"{fmt.format(typical)} for customers who stay."))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "coef": list(self.coef), "intercept": self.intercept,
                "mean": list(self.mean), "scale": list(self.scale), "low": list(self.low),
                "high": list(self.high),
                "segments": list(self.segments), "typical": list(self.typical),
                "threshold": self.threshold, "exit": self.exit, "critical": self.critical,
                "rows": self.rows, "churned": self.churned}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChurnModel:
        return cls(d["version"], tuple(d["coef"]), d["intercept"], tuple(d["mean"]),
                   tuple(d["scale"]), tuple(d["low"]), tuple(d["high"]), tuple(d["segments"]),
                   tuple(d["typical"]),
                   d["threshold"], d["exit"], d["critical"], d["rows"], d["churned"])


_WARMING_UP: Final = Reason(
    "fallback_inactivity", None, None,
    "Decided by the personalised inactivity rule: the learned model is warming up "
    "(too few cancellations seen yet to learn from).")
# In warm-up the inactivity rule speaks for the model, so only its surer part: the
# customer's own line, but never under two weeks of silence (a 7-day line alone raised
# one alert in seven that came true in a simulated warm-up week).
FALLBACK_MIN_DAYS: Final = 14.0


def observe(st: CustomerState, t: float, prof: Profile, model: ChurnModel | None,
            inactivity: Observation) -> Observation:
    """The ``churn_risk`` condition at ``t``: the learned model's, or in warm-up the
    personalised inactivity rule's (at least ``FALLBACK_MIN_DAYS`` of silence), which
    then says so first among its reasons."""
    if st.cancelled_at is not None:
        return Observation(False, "info", ())
    if model is None:
        last = st.last_activity_at if st.last_activity_at is not None else st.first_seen_at
        silent = t - last >= FALLBACK_MIN_DAYS * DAY_SECONDS
        active = inactivity.active and silent
        # The note only while the rule holds: a recovery names what came back.
        return Observation(active, inactivity.severity,
                           lambda: (_WARMING_UP, *inactivity.reasons) if active
                           else inactivity.reasons)
    x = features(st, t, prof)
    p = model.probability(x, st.segment)
    line = model.exit if "churn_risk" in st.episodes else model.threshold
    return Observation(p >= line, "critical" if p >= model.critical else "warning",
                       lambda: model.reasons(x, st.segment, p))


def version_record(boundary: float, model: ChurnModel | None, effective_delay_days: float
                   ) -> dict[str, Any]:
    """A settled version as the models topic carries it
    (``schemas/json/model-version.schema.json``): the training cut-off, when it starts
    deciding, and what it learned (``null`` while warming up)."""
    names = list(FEATURES)
    out: dict[str, Any] = {
        "version": rfc3339(boundary),
        "effective_from": rfc3339(boundary + effective_delay_days * DAY_SECONDS),
        "warming_up": model is None,
        "snapshots": None, "churned": None, "alert_line": None, "resolve_line": None,
        "critical_line": None, "intercept": None, "weights": None, "segment_weights": None,
        "typical_of_stayers": None,
    }
    if model is not None:
        out.update({
            "snapshots": model.rows, "churned": model.churned,
            "alert_line": model.threshold, "resolve_line": model.exit,
            "critical_line": model.critical, "intercept": model.intercept,
            "weights": dict(zip(names, model.coef[:len(names)], strict=True)),
            "segment_weights": dict(zip(model.segments, model.coef[len(names):],
                                        strict=True)),
            "typical_of_stayers": dict(zip(names, model.typical, strict=True)),
        })
    return out
