"""Churn features of one customer at one event time: what the learned model sees.

Every feature is read off the state the engine already keeps (the 35-day
daily ring, email engagement, tickets, survey answers, subscription dates,
the BG/NBD probability alive) plus one small addition, weekly seat masks: a
64-bit mask per week with one bit per active user (a hash of ``user_id``),
from which distinct seats are estimated by linear counting. Nothing here is
tuned to a behaviour model: the features are the generic ones CS teams steer
by (counts over 7 and 28 days, their change, recency against the customer's
own rhythm, tenure, time since the last renewal, support friction, survey
answers), and the model learns from each deployment's own cancellations which
of them precede churn there (``cxstream.engine.learning``).

A snapshot travels as 8-bit codes per feature (``pack``): counts and days on
a log scale, rates linearly. 40-odd bytes a snapshot keeps the learning topic
small; the loss (a few percent of a count) is far below what a churn model
can tell apart.
"""

from __future__ import annotations

import base64
import math
from typing import Final

from cxstream.engine.config import DAY_SECONDS, Profile
from cxstream.engine.participation import participation_days
from cxstream.engine.signals import (
    SEAT_WEEKS,
    WEEK_SECONDS,
    inactivity_line_days,
    p_alive,
    week_counts,
)
from cxstream.engine.state import CustomerState

__all__ = ["FEATURES", "features", "pack", "unpack"]

_MASK_BITS: Final = 64

# name -> (scale, top): "log" codes log1p(x) / log1p(top) * 255; "lin" codes x / top * 255;
# "sgn" codes (x + top) / (2 top) * 255. Values beyond ``top`` are clipped.
FEATURES: Final[dict[str, tuple[str, float]]] = {
    "logins_7d": ("log", 2_000.0),
    "logins_28d": ("log", 8_000.0),
    "email_engagement_7d": ("log", 500.0),
    "email_engagement_28d": ("log", 2_000.0),
    "support_contacts_7d": ("log", 200.0),
    "support_contacts_28d": ("log", 800.0),
    "activity_change": ("sgn", 5.0),  # log of last 7 days over the weekly mean of the 28 before
    "active_days_28d": ("lin", 28.0),
    "days_since_activity": ("log", 400.0),
    "inactivity_vs_usual_gap": ("log", 100.0),
    "tenure_days": ("log", 2_000.0),
    "days_since_renewal": ("log", 800.0),
    "in_trial": ("lin", 1.0),
    "email_open_rate": ("lin", 1.0),
    "emails_unopened": ("log", 200.0),
    "unsubscribed": ("lin", 1.0),
    "email_bounced": ("lin", 1.0),
    "open_tickets": ("log", 50.0),
    "overdue_tickets": ("log", 50.0),
    "reopened_tickets": ("log", 20.0),
    "repeat_contacts": ("log", 20.0),
    "nps_answered": ("lin", 1.0),
    "nps": ("lin", 10.0),
    "csat_answered": ("lin", 1.0),
    "csat": ("lin", 5.0),
    "ces_answered": ("lin", 1.0),
    "ces": ("lin", 7.0),
    "probability_alive": ("lin", 1.0),
    "seats_7d": ("log", 300.0),
    "seats_change": ("sgn", 5.0),  # log of this week's seats over the busiest of the 4 before
    "logins_per_active_day": ("log", 500.0),
}
_NAMES: Final = tuple(FEATURES)
_CODERS: Final = tuple(FEATURES.values())


def _seats(mask: int) -> float:
    """Distinct users behind a mask (linear counting: -m ln(1 - k/m))."""
    k = mask.bit_count()
    if k >= _MASK_BITS:
        k = _MASK_BITS - 1
    return -_MASK_BITS * math.log(1.0 - k / _MASK_BITS)


def _seat_features(st: CustomerState, t: float) -> tuple[float, float]:
    if st.seat_week is None:
        return 0.0, 0.0
    back = int(t // WEEK_SECONDS) - st.seat_week  # weeks since the newest mask
    masks = [0] * back + st.seat_masks if back > 0 else st.seat_masks
    now = _seats(masks[0]) if masks else 0.0
    before = max((_seats(m) for m in masks[1:SEAT_WEEKS]), default=0.0)
    return now, math.log((now + 1.0) / (before + 1.0))


def features(st: CustomerState, t: float, prof: Profile) -> list[float]:
    """The customer's feature vector at event time ``t`` (order of ``FEATURES``)."""
    (l7, e7, c7), (l28, e28, c28) = week_counts(st, t)
    days = DAY_SECONDS
    last = st.last_activity_at if st.last_activity_at is not None else st.first_seen_at
    since = max(0.0, (t - last) / days)
    tenure = max(0.0, (t - st.first_seen_at) / days)
    renewed = st.renewed_at if st.renewed_at is not None else st.first_seen_at
    active = participation_days(st, t)
    overdue = prof.ticket_overdue_days * days
    fb = st.feedback
    nps, csat, ces = fb.get("nps"), fb.get("csat"), fb.get("ces")
    alive = p_alive(st, t, prof)
    seats_now, seats_change = _seat_features(st, t)
    trial = st.trial_started_at is not None and (
        st.renewed_at is None or st.renewed_at < st.trial_started_at)
    open_rate = (st.em_opened / st.em_delivered) if st.em_delivered >= 1.0 else 0.5
    window = 30 * days
    return [
        float(l7), float(l28), float(e7), float(e28), float(c7), float(c28),
        math.log((l7 + e7 + 1.0) / ((l28 + e28) / 4.0 + 1.0)),
        float(active),
        since,
        since / max(0.5, inactivity_line_days(st, prof) / prof.inactivity_multiplier),
        tenure,
        max(0.0, (t - renewed) / days),
        1.0 if trial else 0.0,
        min(1.0, open_rate),
        float(st.unopened),
        1.0 if st.unsubscribed else 0.0,
        1.0 if st.bounced else 0.0,
        float(len(st.open_tickets)),
        float(sum(1 for opened in st.open_tickets.values() if t - opened > overdue)),
        float(sum(1 for x in st.reopens if t - x <= window)),
        float(sum(1 for x in st.repeats if t - x <= window)),
        1.0 if nps else 0.0, float(nps[0]) if nps else 0.0,
        1.0 if csat else 0.0, float(csat[0]) if csat else 0.0,
        1.0 if ces else 0.0, float(ces[0]) if ces else 0.0,
        1.0 if alive is None else alive,
        seats_now, seats_change,
        (l7 + l28) / active if active else 0.0,
    ]


def _code(x: float, scale: str, top: float) -> int:
    if scale == "log":
        v = math.log1p(max(0.0, x)) / math.log1p(top)
    elif scale == "sgn":
        v = (x + top) / (2.0 * top)
    else:
        v = x / top
    return 0 if v <= 0.0 else 255 if v >= 1.0 else round(v * 255.0)


def _value(code: int, scale: str, top: float) -> float:
    v = code / 255.0
    if scale == "log":
        return math.expm1(v * math.log1p(top))
    if scale == "sgn":
        return v * 2.0 * top - top
    return v * top


def pack(values: list[float]) -> str:
    """A feature vector as one 8-bit code per feature, base64 (~44 characters)."""
    raw = bytes(_code(x, *coder) for x, coder in zip(values, _CODERS, strict=True))
    return base64.b64encode(raw).decode("ascii")


def unpack(text: str) -> list[float]:
    """Inverse of ``pack`` (up to the 8-bit coding)."""
    raw = base64.b64decode(text)
    if len(raw) != len(_CODERS):
        raise ValueError(f"a packed snapshot has {len(_CODERS)} features, got {len(raw)}")
    return [_value(c, *coder) for c, coder in zip(raw, _CODERS, strict=True)]
