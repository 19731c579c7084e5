"""Churn signals: settled events update a customer's signal state; ``observe`` reads it.

Every function here runs on *settled* state in event-time order (see
``engine.py``), so its results do not depend on arrival order. ``observe(st,
t)`` returns, for each alert kind, whether the condition holds at event time
``t``, how severe it is and why, plus the score inputs (risk 0–1 each, or
None when the customer has no data for it). ``next_deadline`` says when the
passage of time alone would change an observation (an inactivity line, an
escalation, a ticket going overdue), so the engine can evaluate exactly then.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any, Final

from cxstream.engine import renewal
from cxstream.engine.alerts import Reason, rfc3339
from cxstream.engine.config import ALERT_KINDS, DAY_SECONDS, Profile
from cxstream.engine.events import ACTIVITY_TYPES, EVENT_TYPES
from cxstream.engine.state import RING_DAYS, CustomerState

__all__ = [
    "KINDS",
    "SEAT_WEEKS",
    "TYPE_CODE",
    "WEEK_SECONDS",
    "Observation",
    "apply_event",
    "next_deadline",
    "note_seat",
    "observe",
    "p_alive",
    "seat_bit",
]

TYPE_CODE: Final[dict[str, int]] = {t: i for i, t in enumerate(EVENT_TYPES)}
_TYPE: Final[tuple[str, ...]] = EVENT_TYPES
_ACTIVITY_CODES: Final[frozenset[int]] = frozenset(TYPE_CODE[t] for t in ACTIVITY_TYPES)
KINDS: Final[tuple[str, ...]] = ALERT_KINDS
_SURVEYS: Final[tuple[str, ...]] = ("nps", "csat", "ces")
_CAP = 8  # longest list of times/tickets kept per customer
_INACTIVITY_ONLY: Final = frozenset({"inactivity", "churn_risk", "participation"})
WEEK_SECONDS: Final = 7 * DAY_SECONDS
SEAT_WEEKS: Final = 5  # seat masks kept: this week and the four before it
_SEAT_BITS: Final = 64  # one bit per user (hashed), per week
_EMAIL_HALF_LIFE_DAYS = 30.0
_GAP_EWM_ALPHA = 0.3
_LOGIN, _EMAIL, _TICKET = 0, 1, 2


class Observation:
    """One kind's condition at an event time; the reasons are written only if asked for.

    Most evaluations change nothing, so the sentences (the costly part) are
    built lazily, when a transition is published.
    """

    __slots__ = ("_make", "_reasons", "active", "severity")

    def __init__(self, active: bool, severity: str,
                 reasons: tuple[Reason, ...] | Callable[[], tuple[Reason, ...]]) -> None:
        self.active = active
        self.severity = severity
        if callable(reasons):
            self._make: Callable[[], tuple[Reason, ...]] | None = reasons
            self._reasons: tuple[Reason, ...] = ()
        else:
            self._make = None
            self._reasons = reasons

    @property
    def reasons(self) -> tuple[Reason, ...]:
        if self._make is not None:
            self._reasons = self._make()
            self._make = None
        return self._reasons


Inputs = dict[str, tuple[float, Callable[[], str]]]


def _day(t: float) -> int:
    return int(t // DAY_SECONDS)


def _days(seconds: float) -> float:
    return seconds / DAY_SECONDS


# ---------------------------------------------------------------- state updates


def _ring_add(st: CustomerState, t: float, slot: int, prof: Profile) -> None:
    day = _day(t)
    _ring_roll(st, day, prof)
    assert st.ring_day0 is not None
    idx = day - st.ring_day0
    if idx >= 0 and st.ring[idx][slot] < 255:  # the stored form keeps a byte per count
        st.ring[idx][slot] += 1


def _ring_roll(st: CustomerState, day: int, prof: Profile) -> None:
    """Make the ring end at ``day``: ``ring[i]`` counts day ``ring_day0 + i``.

    Days leaving the ring are folded into the renewal-risk baseline first.
    """
    if st.ring_day0 is None:
        st.ring_day0 = day - RING_DAYS + 1
        st.ring = [[0, 0, 0] for _ in range(RING_DAYS)]
        st.base_upto = _day(st.first_seen_at)
        return
    shift = day - (st.ring_day0 + RING_DAYS - 1)
    if shift <= 0:
        return
    renewal.fold(st, day - RING_DAYS + 1, prof)
    if shift >= RING_DAYS:
        st.ring = [[0, 0, 0] for _ in range(RING_DAYS)]
    else:
        st.ring = st.ring[shift:] + [[0, 0, 0] for _ in range(shift)]
    st.ring_day0 += shift


def _decay_email(st: CustomerState, t: float) -> None:
    if st.em_at is not None and t > st.em_at:
        k = 0.5 ** (_days(t - st.em_at) / _EMAIL_HALF_LIFE_DAYS)
        st.em_delivered *= k
        st.em_opened *= k
    st.em_at = t


def _push_capped(times: list[float], t: float) -> None:
    times.append(t)
    if len(times) > _CAP:
        del times[0]


def apply_event(st: CustomerState, row: list[Any], prof: Profile) -> None:
    """Fold one settled event row ``[t, fingerprint, code, a, b(, comment)]`` into the state."""
    t, _fp, code, a, b = row[:5]
    kind = _TYPE[code]
    if code in _ACTIVITY_CODES:
        _note_activity(st, t)
        _ring_add(st, t, _LOGIN if kind == "login" else _EMAIL, prof)
        if kind == "login":
            note_seat(st, t, a if a is not None else 0)
    if kind.startswith("email."):
        _decay_email(st, t)
        if kind == "email.sent":
            st.em_delivered += 1.0
            st.unopened += 1
        elif kind == "email.bounced":
            st.em_delivered = max(0.0, st.em_delivered - 1.0)
            st.unopened = max(0, st.unopened - 1)
            st.bounced = True
        elif kind in ("email.opened", "email.clicked"):
            if kind == "email.opened":
                st.em_opened += 1.0
            st.unopened = 0
            st.bounced = False
        elif kind == "email.unsubscribed":
            st.unsubscribed = True
    elif kind.startswith("ticket."):
        _apply_ticket(st, t, kind, a, prof)
    elif kind == "survey.response":
        prev = st.feedback.get(a)
        answer = [b, prev[0] if prev else None, t]
        if len(row) > 5:
            answer.append(row[5])
        st.feedback[a] = answer
    elif kind == "subscription.cancelled":
        st.cancelled_at = t
    elif kind in ("subscription.trial_started", "subscription.converted",
                  "subscription.renewed"):
        st.cancelled_at = None
        if kind != "subscription.trial_started":
            st.renewed_at = t


def seat_bit(user_id: str | None) -> int:
    """Which bit of a week's seat mask a user sets (one bit for an account without users)."""
    if not user_id:
        return 0
    return hashlib.blake2b(user_id.encode(), digest_size=2).digest()[0] % _SEAT_BITS


def note_seat(st: CustomerState, t: float, bit: int) -> None:
    """Mark user ``bit`` active in the week of ``t`` (weeks older than the masks are dropped)."""
    week = int(t // WEEK_SECONDS)
    masks = st.seat_masks
    if st.seat_week is None or week > st.seat_week:
        shift = SEAT_WEEKS if st.seat_week is None else min(SEAT_WEEKS, week - st.seat_week)
        masks[:] = ([0] * shift + masks)[:SEAT_WEEKS] if masks else [0] * SEAT_WEEKS
        st.seat_week = week
    back = st.seat_week - week
    if back < SEAT_WEEKS:
        masks[back] |= 1 << bit


def _note_activity(st: CustomerState, t: float) -> None:
    day = _day(t)
    if st.last_active_day is None:
        st.first_active_day = day
        st.active_days = 1
    elif day > st.last_active_day:
        gap = float(day - st.last_active_day)
        st.gap_ewm_days = gap if st.gap_ewm_days is None else (
            _GAP_EWM_ALPHA * gap + (1 - _GAP_EWM_ALPHA) * st.gap_ewm_days
        )
        st.active_days += 1
    if st.last_active_day is None or day > st.last_active_day:
        st.last_active_day = day
    if st.last_activity_at is None or t > st.last_activity_at:
        st.last_activity_at = t


def _apply_ticket(st: CustomerState, t: float, kind: str, ticket_id: str, prof: Profile) -> None:
    st.ticket_events += 1
    if kind in ("ticket.opened", "ticket.reopened"):  # the customer's contacts, not agent replies
        _ring_add(st, t, _TICKET, prof)
    if kind == "ticket.opened":
        repeat_line = prof.repeat_contact_days * DAY_SECONDS
        if st.last_resolved_at is not None and t - st.last_resolved_at <= repeat_line:
            _push_capped(st.repeats, t)
        st.open_tickets.setdefault(ticket_id, t)
    elif kind == "ticket.reopened":
        _push_capped(st.reopens, t)
        st.open_tickets.setdefault(ticket_id, t)
    elif kind == "ticket.resolved":
        st.open_tickets.pop(ticket_id, None)
        st.last_resolved_at = t
    if len(st.open_tickets) > _CAP:
        oldest = min(st.open_tickets, key=lambda k: (st.open_tickets[k], k))
        del st.open_tickets[oldest]


# ---------------------------------------------------------------- observations


def inactivity_line_days(st: CustomerState, prof: Profile) -> float:
    """The customer's own inactivity line: usual gap × multiplier, within [min, max]."""
    gap = st.gap_ewm_days if st.gap_ewm_days is not None else prof.inactivity_prior_gap_days
    return min(prof.inactivity_max_days,
               max(prof.inactivity_min_days, prof.inactivity_multiplier * gap))


def unopened_line(st: CustomerState, prof: Profile) -> float:
    """Unopened emails in a row that are unusual for this customer.

    Three times the customer's usual run between opens (1 ÷ open rate), and at
    least ``unopened_streak``: a customer who opens one email in five is not
    disengaging after five unopened ones.
    """
    if st.em_delivered >= 2.0 and st.em_opened > 0:
        # The usual run between opens, from the history before the current streak
        # (counting the streak in would raise the line with every unopened email).
        usual = max(1.0, (st.em_delivered - st.unopened) / st.em_opened)
        return float(max(prof.unopened_streak, round(3.0 * usual)))
    return float(prof.unopened_streak)


def _last_active(st: CustomerState) -> tuple[float, str]:
    if st.last_activity_at is not None:
        return st.last_activity_at, "last activity"
    return st.first_seen_at, "first seen"


Weeks = tuple[tuple[int, int, int], tuple[int, int, int]]


def week_counts(st: CustomerState, t: float) -> Weeks:
    """(login, email, ticket) counts in the 7 days ending at ``t`` and in the 28 before."""
    recent = [0, 0, 0]
    base = [0, 0, 0]
    if st.ring_day0 is not None:
        end = _day(t) - st.ring_day0
        ring = st.ring
        for i in range(max(0, end - 34), min(len(ring), end + 1)):
            c = ring[i]
            into = recent if i > end - 7 else base
            into[0] += c[0]
            into[1] += c[1]
            into[2] += c[2]
    return (recent[0], recent[1], recent[2]), (base[0], base[1], base[2])


def p_alive(st: CustomerState, t: float, prof: Profile) -> float | None:
    """BG/NBD probability the customer is still 'alive' (Fader, Hardie, Lee 2005).

    Frequency x = repeat active days, recency t_x and age T in days since the
    first active day; population parameters come from the profile.
    """
    if st.first_active_day is None or st.last_active_day is None:
        return None
    x = st.active_days - 1
    if x <= 0:
        return 1.0
    t_x = float(st.last_active_day - st.first_active_day) + 1.0
    big_t = max(t_x, _days(t) - st.first_active_day)
    r, alpha, a, b = prof.bgnbd_r, prof.bgnbd_alpha, prof.bgnbd_a, prof.bgnbd_b
    log_ratio = (r + x) * (math.log(alpha + big_t) - math.log(alpha + t_x))
    odds = (a / (b + x - 1)) * math.exp(min(log_ratio, 700.0))
    return 1.0 / (1.0 + odds)


def score_inputs(st: CustomerState, t: float, prof: Profile, weeks: Weeks | None = None
                 ) -> Inputs:
    """Risk (0–1) and a sentence (lazily) for each score input the customer has data for."""
    weeks = weeks if weeks is not None else week_counts(st, t)
    out: Inputs = {}
    last, _ = _last_active(st)
    since = _days(t - last)
    line = inactivity_line_days(st, prof)
    out["inactivity"] = (min(1.0, since / (prof.escalate_factor * line)),
                         lambda: f"{since:.1f} days without a login or email open "
                                 f"(line {line:.1f})")
    (recent, e_recent, _), (base, e_base, _) = weeks
    if base + e_base >= prof.decay_min_baseline:
        drop = _drop_pct(recent + e_recent, base + e_base)
        out["decay"] = (min(1.0, max(0.0, drop / 100.0)),
                        lambda: f"activity in the last 7 days {drop:.0f}% below the 28-day "
                                "baseline" if drop > 0 else
                                "activity at or above its 28-day baseline")
    if st.unsubscribed or st.bounced:
        out["email"] = (1.0, lambda: "unsubscribed from email" if st.unsubscribed
                        else "email bounces")
    elif st.em_delivered >= 2.0:
        rate = st.em_opened / st.em_delivered
        risk = max(min(1.0, max(0.0, 1.0 - rate / 0.4)),
                   min(1.0, st.unopened / (2.0 * prof.unopened_streak)))
        unopened = st.unopened
        out["email"] = (risk, lambda: f"email open rate {rate:.0%}, {unopened} unopened "
                                      "in a row")
    if st.ticket_events:
        friction = _support_reasons(st, t, prof, weeks)
        open_count = len(st.open_tickets)
        risk = min(1.0, 0.35 * len(friction) + 0.1 * open_count)
        out["support"] = (risk, lambda: "; ".join(r.message for r in friction) or
                          f"{open_count} open ticket(s), no friction")
    fb = _feedback_risks(st)
    if fb:
        answers = {k: st.feedback[k][0] for k in fb}
        out["feedback"] = (sum(fb.values()) / len(fb),
                           lambda: ", ".join(f"{k.upper()} {v:g}" for k, v in answers.items()))
    alive = p_alive(st, t, prof)
    if alive is not None:
        out["alive"] = (1.0 - alive, lambda: f"probability still active {alive:.0%} (BG/NBD)")
    return out


def _drop_pct(recent: int, base28: int) -> float:
    weekly = base28 / 4.0
    return 100.0 * (1.0 - recent / weekly) if weekly > 0 else 0.0


def _feedback_risks(st: CustomerState) -> dict[str, float]:
    risks: dict[str, float] = {}
    for name, answer in st.feedback.items():
        score = answer[0]
        if name == "nps":
            risks[name] = (10.0 - score) / 10.0
        elif name == "csat":
            risks[name] = (5.0 - score) / 4.0
        elif name == "ces":
            risks[name] = (score - 1.0) / 6.0
    return risks


def _support_reasons(st: CustomerState, t: float, prof: Profile, weeks: Weeks) -> list[Reason]:
    reasons = []
    month = t - 30 * DAY_SECONDS
    reopens = [x for x in st.reopens if x > month]
    if reopens:
        reasons.append(Reason("ticket_reopened", float(len(reopens)), 1.0,
                              f"{len(reopens)} ticket(s) reopened in the last 30 days"))
    overdue_line = prof.ticket_overdue_days * DAY_SECONDS
    overdue = [k for k, opened in st.open_tickets.items() if t - opened >= overdue_line]
    if overdue:
        oldest = max(_days(t - st.open_tickets[k]) for k in overdue)
        reasons.append(Reason("ticket_overdue", round(oldest, 1), prof.ticket_overdue_days,
                              f"{len(overdue)} ticket(s) open longer than "
                              f"{prof.ticket_overdue_days:g} days (oldest {oldest:.1f})"))
    contacts, base = weeks[0][_TICKET], weeks[1][_TICKET]
    line = max(float(prof.contacts_per_week), 2.0 * base / 4.0)
    if contacts >= line:
        reasons.append(Reason("contacts_high", float(contacts), line,
                              f"{contacts} support contacts in 7 days (line {line:g})"))
    repeats = [x for x in st.repeats if x > month]
    if repeats:
        reasons.append(Reason("repeat_contact", float(len(repeats)), prof.repeat_contact_days,
                              f"{len(repeats)} new ticket(s) within "
                              f"{prof.repeat_contact_days:g} days of a resolution"))
    return reasons


def observe(st: CustomerState, t: float, prof: Profile, score: float,
            inputs: Inputs, weeks: Weeks | None = None,
            kinds: frozenset[str] | None = None,
            ) -> dict[str, Observation]:
    """Each alert kind's condition at event time ``t`` (only ``kinds``, if given; the
    inactivity rule always, the learned churn risk falls back on it)."""
    weeks = weeks if weeks is not None else week_counts(st, t)
    obs: dict[str, Observation] = {}
    want = frozenset(KINDS) if kinds is None else kinds
    open_ = st.episodes
    last, since_what = _last_active(st)
    since = _days(t - last)
    line = inactivity_line_days(st, prof)
    active = since >= line
    obs["inactivity"] = Observation(
        active, "critical" if since >= prof.escalate_factor * line else "warning",
        lambda: (Reason("inactive_days", round(since, 2), round(line, 2),
                        f"No login or email open for {since:.1f} days; this customer's line "
                        f"is {line:.1f} days ({since_what} {rfc3339(last)})."),),
    )
    if want <= _INACTIVITY_ONLY:
        return obs
    (recent, e_recent, _), (base, e_base, _) = weeks
    drop = _drop_pct(recent + e_recent, base + e_base)
    enough = base + e_base >= prof.decay_min_baseline
    line_pct = prof.decay_resolve_pct if "engagement_decay" in open_ else prof.decay_raise_pct
    obs["engagement_decay"] = Observation(
        enough and drop >= line_pct, "critical" if drop >= 90 else "warning",
        lambda: (Reason("activity_drop_pct", round(drop, 1), prof.decay_raise_pct,
                        f"Logins and email engagement in the last 7 days are {drop:.0f}% "
                        f"below the customer's 28-day baseline ({recent + e_recent} vs "
                        f"{(base + e_base) / 4:.1f} a week)."),),
    )
    email: list[Reason] = []
    if st.unsubscribed:
        email.append(Reason("email_unsubscribed", 1.0, None, "Unsubscribed from email."))
    if st.bounced:
        email.append(Reason("email_bounced", 1.0, None, "Emails to this customer bounce."))
    streak_line = unopened_line(st, prof)
    if st.unopened >= streak_line:
        email.append(Reason("emails_unopened", float(st.unopened), streak_line,
                            f"{st.unopened} emails in a row not opened (this customer's line "
                            f"is {streak_line:g})."))
    obs["email_disengagement"] = Observation(
        bool(email), "critical" if len(email) > 1 else "warning", tuple(email))
    if "support_friction" in want:
        friction = _support_reasons(st, t, prof, weeks)
        obs["support_friction"] = Observation(
            bool(friction), "critical" if len(friction) > 1 else "warning", tuple(friction))
    if "feedback" in want:
        obs["feedback"] = _feedback_observation(st, prof)
    band = prof.at_risk_exit if "at_risk" in open_ else prof.at_risk_enter
    def at_risk_reasons() -> tuple[Reason, ...]:
        top = sorted(inputs.items(), key=lambda kv: -kv[1][0])[:3]
        return tuple(Reason(f"{name}_risk", round(risk, 3), None, text())
                     for name, (risk, text) in top if risk > 0) + (
            Reason("health_score", round(score, 1), band,
                   f"Health {score:.0f}/100 (at risk below {prof.at_risk_enter:g})."),)

    obs["at_risk"] = Observation(
        score < band, "critical" if score < prof.at_risk_critical else "warning",
        at_risk_reasons)
    if "renewal_risk" in want:
        obs["renewal_risk"] = _renewal_observation(st, t, prof)
    peak = max((s for _, s in st.score_hist), default=score)
    fall = peak - score
    drop_line = prof.score_drop_points / 2 if "score_drop" in open_ else prof.score_drop_points
    obs["score_drop"] = Observation(
        fall >= drop_line, "critical" if fall >= 2 * prof.score_drop_points else "warning",
        lambda: (Reason("score_drop_points", round(fall, 1), prof.score_drop_points,
                        f"Health fell {fall:.0f} points in {prof.score_drop_days} days "
                        f"(from {peak:.0f} to {score:.0f})."),),
    )
    return obs


def _renewal_observation(st: CustomerState, t: float, prof: Profile) -> Observation:
    ep = st.episodes.get("renewal_risk")
    verdict = renewal.assess(st, t, prof, ep is not None,
                             ep.started_at if ep is not None else None)
    if verdict is None:
        return Observation(False, "warning", (Reason(
            "not_judged", None, None, "No baseline to judge against (new or cancelled)."),))
    return Observation(verdict.active, verdict.severity, verdict.reasons)


def _feedback_observation(st: CustomerState, prof: Profile) -> Observation:
    reasons: list[Reason] = []
    severity = "warning"
    nps = st.feedback.get("nps")
    if nps is not None:
        score, prev = nps[0], nps[1]
        if score <= prof.nps_detractor_max:
            reasons.append(Reason("nps_detractor", score, prof.nps_detractor_max,
                                  f"NPS answer {score:g} (detractor).{_said(nps)}"))
            if score <= 3:
                severity = "critical"
        if prev is not None and prev - score >= prof.score_fall_points:
            reasons.append(Reason("nps_fell", score - prev, -prof.score_fall_points,
                                  f"NPS answer fell from {prev:g} to {score:g}."))
    csat = st.feedback.get("csat")
    if csat is not None and csat[0] <= prof.csat_low_max:
        reasons.append(Reason("csat_low", csat[0], prof.csat_low_max,
                              f"CSAT answer {csat[0]:g} of 5.{_said(csat)}"))
    ces = st.feedback.get("ces")
    if ces is not None and ces[0] >= prof.ces_high_min:
        reasons.append(Reason("ces_high", ces[0], prof.ces_high_min,
                              f"Customer effort {ces[0]:g} of 7 (high).{_said(ces)}"))
    return Observation(bool(reasons), severity, tuple(reasons))


def _said(answer: list[Any]) -> str:
    """The customer's comment, only present when comments are enabled."""
    if len(answer) > 3 and answer[3]:
        text = str(answer[3])
        return f' They wrote: "{text[:280]}"'
    return ""


def next_deadline(st: CustomerState, prof: Profile, after: float) -> float | None:
    """The earliest event time > ``after`` at which time alone changes an observation."""
    last, _ = _last_active(st)
    line = inactivity_line_days(st, prof) * DAY_SECONDS
    candidates = [last + line, last + prof.escalate_factor * line]
    overdue = prof.ticket_overdue_days * DAY_SECONDS
    candidates.extend(opened + overdue for opened in st.open_tickets.values())
    if "renewal_risk" in prof.alert_kinds:
        due = renewal.next_deadline(st, prof, after, "renewal_risk" in st.episodes)
        if due is not None:
            candidates.append(due)
    if "churn_risk" in prof.alert_kinds and st.cancelled_at is None:
        # The learned risk moves with time alone (days since activity): once a day, from
        # the day after the customer's first event on.
        candidates.append((math.floor(max(after, st.first_seen_at) / DAY_SECONDS) + 1)
                          * DAY_SECONDS)
    future = [c for c in candidates if c > after]
    return min(future) if future else None
