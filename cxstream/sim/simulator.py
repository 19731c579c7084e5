"""A behaviour-driven customer simulator: realistic event streams with known churn.

Each customer carries a small latent state (segment, seats, engagement, email
open propensity, satisfaction, lifecycle phase) and the simulator walks all
customers one day at a time: satisfaction drifts and drops in support crises,
hazards start lulls, crises, disengagement or sudden cancellations, and the
day's logins, emails, tickets, surveys and subscription events are drawn from
that state. Events of one day are sorted and handed out before the next day
is drawn, so memory holds the customers' latent state plus one day of events
(and the few already-scheduled later contacts of open tickets and unread
emails), never the whole history. The same seed always yields the same events,
byte for byte, and the truth (who cancelled, when) is known once the run ends.

Only a ``subscription.cancelled`` is churn in the truth. Customers who go dark
without cancelling, dormant accounts that wake up again and customers in a
holiday lull are there on purpose: they are what makes a pure inactivity rule
imprecise in real data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cxstream.engine.alerts import rfc3339
from cxstream.engine.config import DAY_SECONDS
from cxstream.engine.events import Event, EventType

__all__ = [
    "DEFAULT_SEGMENTS",
    "FATES",
    "SegmentProfile",
    "SimConfig",
    "Simulation",
    "customer_id",
    "simulate",
]


@dataclass(frozen=True, slots=True)
class SegmentProfile:
    """How one plan tier behaves; rates are for a median customer in normal times."""

    name: str
    share: float  # of all customers
    seats: tuple[int, int]  # inclusive range, drawn log-uniformly
    logins_per_seat_day: float  # on a weekday, at median engagement
    weekend_factor: float
    seat_price: float  # monthly, per seat: mrr = seats x price
    contacts: int  # email recipients per account (at most ``seats``)
    churn_per_month: float  # spontaneous cancel hazard (gradual or sudden), per 30 days
    crises_per_year: float  # support crises (ticket bursts, falling satisfaction)
    crisis_churn_factor: float  # how strongly a bad crisis turns into a cancellation
    tickets_per_month: float  # in normal times
    crisis_tickets_per_day: float
    trial_activation: float  # share of new trials whose onboarding takes off
    annual: bool  # renews yearly instead of monthly


# Numbers in the range SaaS benchmarks quote: SMB plans lose 3-5% of accounts a
# month, mid-market ~2%, enterprise well under 1%; bigger accounts have more
# seats, more tickets and quieter weekends.
DEFAULT_SEGMENTS: Final[tuple[SegmentProfile, ...]] = (
    SegmentProfile("starter", 0.60, (1, 3), 0.30, 0.45, 19.0, 1, 0.025, 0.5, 1.0, 0.35, 0.30,
                   0.55, False),
    SegmentProfile("pro", 0.30, (3, 15), 0.40, 0.30, 39.0, 2, 0.012, 0.8, 0.5, 0.9, 0.45,
                   0.65, False),
    SegmentProfile("enterprise", 0.10, (15, 60), 0.35, 0.15, 59.0, 3, 0.004, 1.2, 0.25, 3.0,
                   0.9, 0.75, True),
)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything the simulated population does, apart from its size, length and seed."""

    segments: tuple[SegmentProfile, ...] = DEFAULT_SEGMENTS
    trial_share: float = 0.08  # of customers sign up (start a trial) during the run
    trial_days: int = 14
    convert_if_activated: float = 0.80
    convert_if_fizzled: float = 0.12
    gradual_share: float = 0.6  # of spontaneous churners; the others cancel suddenly
    dark_per_month: float = 0.006  # stop using and stop paying, with no cancel event
    dormant_share: float = 0.03  # paying accounts that hardly use the product
    dormant_wakeups_per_year: float = 3.0
    lulls_per_year: float = 1.0  # holidays, project pauses: weeks of near-silence
    lull_days: tuple[int, int] = (7, 21)
    crisis_days: tuple[int, int] = (7, 24)
    decay_days: tuple[int, int] = (21, 56)  # gradual disengagement before cancelling
    survey_response_rate: float = 0.3
    nps_every_days: int = 90
    # The churn mechanism (``WORLDS``): when a fading customer cancels ("renewal": at
    # the next bill; "anyday": a few days after stopping), what sets the hazard
    # ("satisfaction"; "level": the customer's steady participation, with no fading
    # first), and how a fading account fades ("usage": every seat uses it less;
    # "seats": seats drop out one by one, the rest as busy as before).
    cancel_timing: str = "renewal"
    hazard: str = "satisfaction"
    fading: str = "usage"

    def __post_init__(self) -> None:
        total = sum(s.share for s in self.segments)
        if not self.segments or abs(total - 1.0) > 1e-6:
            raise ValueError(f"segment shares must sum to 1, got {total}")
        if not 0.0 <= self.trial_share <= 1.0:
            raise ValueError("trial_share must be within 0..1")
        if (self.cancel_timing not in ("renewal", "anyday")
                or self.hazard not in ("satisfaction", "level")
                or self.fading not in ("usage", "seats")):
            raise ValueError("cancel_timing: renewal|anyday, hazard: satisfaction|level, "
                             "fading: usage|seats")


# Seat-heavy accounts for the seat-contraction world: teams, not individuals.
SEAT_SEGMENTS: Final[tuple[SegmentProfile, ...]] = (
    SegmentProfile("team", 0.55, (3, 10), 0.25, 0.35, 29.0, 2, 0.02, 0.6, 0.8, 0.7, 0.35,
                   0.6, False),
    SegmentProfile("business", 0.35, (8, 25), 0.25, 0.25, 45.0, 3, 0.012, 0.9, 0.5, 1.8,
                   0.6, 0.7, False),
    SegmentProfile("enterprise", 0.10, (20, 60), 0.2, 0.15, 59.0, 3, 0.006, 1.2, 0.3, 4.0,
                   1.0, 0.75, True),
)

# Four churn mechanisms that differ in kind; ``cxstream simulate --world NAME``.
WORLDS: Final[dict[str, SimConfig]] = {
    # Fading customers stop using the product, then cancel when the next bill comes.
    "renewal": SimConfig(),
    # Fading, then cancelling any day: no bill to time the alert to.
    "anyday": SimConfig(cancel_timing="anyday"),
    # Stationary risk: the steady level of participation sets the cancel hazard; customers
    # cancel on any day without fading first (a low, flat user is the risk).
    "hazard": SimConfig(hazard="level", gradual_share=0.0, cancel_timing="anyday"),
    # Multi-seat accounts shed seats before they leave; company holidays (several a year)
    # look like inactivity and are not churn.
    "seats": SimConfig(segments=SEAT_SEGMENTS, fading="seats", cancel_timing="anyday",
                       lulls_per_year=3.0, lull_days=(5, 16)),
}


# Lifecycle phases.
_PENDING, _TRIAL, _ACTIVE, _DECAY, _DARK, _GONE = range(6)
# Flag bits.
_ACTIVATES, _CONVERTS, _BAD_EMAIL, _UNSUBSCRIBED, _DORMANT, _LOW_FIT = (1, 2, 4, 8, 16, 32)
# What a customer's path was; the truth file reports it next to the churn label.
FATES: Final[tuple[str, ...]] = (
    "retained", "gradual", "sudden", "crisis", "trial_lapsed", "went_dark", "dormant",
)
_RETAINED, _GRADUAL, _SUDDEN, _CRISIS, _TRIAL_LAPSED, _WENT_DARK = range(6)

_TYPES: Final[tuple[EventType, ...]] = (
    "login",
    "email.sent", "email.opened", "email.clicked", "email.bounced", "email.unsubscribed",
    "ticket.opened", "ticket.replied", "ticket.resolved", "ticket.reopened",
    "survey.response",
    "subscription.trial_started", "subscription.converted", "subscription.renewed",
    "subscription.cancelled",
)
(_LOGIN, _SENT, _OPENED, _CLICKED, _BOUNCED, _UNSUB, _T_OPENED, _T_REPLIED, _T_RESOLVED,
 _T_REOPENED, _SURVEY, _TRIAL_STARTED, _CONVERTED, _RENEWED, _CANCELLED) = range(len(_TYPES))

_LOGIN_CHANNELS: Final = ("web", "mobile", "api")
_CAMPAIGNS: Final = ("weekly-digest", "product-update", "onboarding", "win-back")
_DIGEST, _PRODUCT, _ONBOARDING, _WINBACK = range(4)
_TICKET_CHANNELS: Final = ("email", "chat", "phone", "web")
_PRIORITIES: Final = ("low", "normal", "high", "urgent")
_SURVEYS: Final = ("nps", "csat", "ces")
_NPS, _CSAT, _CES = range(3)
_COMMENTS: Final = (
    # 0-5: unhappy
    "Too many bugs since the last release.",
    "Support takes days to answer.",
    "The price went up but the product did not get better.",
    "We are evaluating alternatives.",
    "Had to explain the issue three times.",
    "Hard to onboard new team members.",
    # 6-8: lukewarm
    "Does the job, reporting could be better.",
    "Good overall, a few rough edges.",
    "Would like more integrations.",
    # 9-12: happy
    "Our whole team uses it every day.",
    "Support is quick and helpful.",
    "Saves us hours every week.",
    "Fixed on the first reply, thanks!",
)
_ONBOARDING_DAYS: Final = frozenset({0, 1, 3, 7, 12})
_WINBACK_AFTER_DAYS: Final = 14
_TIMEZONES: Final = (-8, -7, -6, -5, -5, -5, -4, 0, 0, 1, 1, 1, 2, 3, 5, 8, 9, 10)
# Raising the hazard for unhappy customers, exp(4 * (0.75 - s)), averages ~1.12 over the
# satisfaction distribution below; dividing by it keeps the configured churn rate.
_SAT_HAZARD_NORM: Final = 1.12


class _Customer:
    """One customer's latent state (~250 bytes; no history)."""

    __slots__ = (
        "cancel_day", "crisis_until", "eng", "fate", "flags", "lull_until", "open_p",
        "phase", "renew", "sat", "sat_base", "seats", "seg", "since", "span", "tz",
    )

    def __init__(self) -> None:
        self.seg = 0
        self.seats = 1
        self.tz = 0
        self.eng = 1.0  # login propensity multiplier (log-normal around 1)
        self.open_p = 0.2  # base probability of opening an email
        self.sat = 0.75  # latent satisfaction 0..1; drives surveys and churn
        self.sat_base = 0.75
        self.phase = _ACTIVE
        self.since = 0  # day the current phase began (trial: sign-up day)
        self.span = 0  # length of the disengagement in days (decay phase)
        self.cancel_day = -1  # scheduled cancellation, or -1
        self.lull_until = -1
        self.crisis_until = -1
        self.flags = 0
        self.fate = _RETAINED
        self.renew = 0  # renewal day offset (mod 30, or day of year for annual plans)


def customer_id(index: int) -> str:
    """The id of the ``index``-th simulated customer."""
    return f"cus{index:06d}"


def _clamp(x: float, low: float, high: float) -> float:
    return low if x < low else high if x > high else x


class Simulation:
    """A deterministic run: iterate it for the events, then ask for the ``truth()``.

    :param on_day: called after each simulated day with ``(day, events_that_day)``,
        before that day's events are yielded (progress reporting).
    """

    def __init__(
        self,
        customers: int,
        days: int,
        seed: int,
        start: float,
        config: SimConfig | None = None,
        on_day: Callable[[int, int], None] | None = None,
    ) -> None:
        if customers < 0 or days < 0:
            raise ValueError("customers and days must be >= 0")
        self.n = customers
        self.days = days
        self.seed = seed
        self.start = start
        self.config = config or SimConfig()
        self.on_day = on_day
        self._rng = random.Random(seed)
        self._customers = [self._new_customer() for _ in range(customers)]
        self._churned_at: dict[int, float] = {}
        self._future: dict[int, list[tuple[Any, ...]]] = {}
        self._today: list[tuple[Any, ...]] = []
        self._day = 0
        self._seq = 0
        self._messages = 0
        self._tickets = 0
        self._finished = False
        self._iter: Iterator[Event] | None = None

    # -- population ---------------------------------------------------------------------

    def _new_customer(self) -> _Customer:
        cfg, rng = self.config, self._rng
        rnd = rng.random
        c = _Customer()
        u, acc = rnd(), 0.0
        for i, prof in enumerate(cfg.segments):
            acc += prof.share
            if u < acc:
                c.seg = i
                break
        else:
            c.seg = len(cfg.segments) - 1
        prof = cfg.segments[c.seg]
        lo, hi = prof.seats
        c.seats = min(hi, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))
        c.tz = _TIMEZONES[int(rnd() * len(_TIMEZONES))]
        c.eng = min(4.0, rng.lognormvariate(0.0, 0.6))
        c.open_p = _clamp(0.22 * c.eng**0.4 * rng.lognormvariate(0.0, 0.4), 0.01, 0.9)
        c.sat_base = _clamp(rng.gauss(0.75, 0.12), 0.1, 0.98)
        c.sat = _clamp(c.sat_base + rng.gauss(0.0, 0.05), 0.0, 1.0)
        c.renew = int(rnd() * (365 if prof.annual else 30))
        if rnd() < 0.02:
            c.flags |= _BAD_EMAIL
        if rnd() < cfg.trial_share and self.days > 0:
            c.phase = _PENDING
            c.since = int(rnd() * self.days)
            if rnd() < prof.trial_activation:
                c.flags |= _ACTIVATES
                if rnd() < cfg.convert_if_activated:
                    c.flags |= _CONVERTS
            elif rnd() < cfg.convert_if_fizzled:
                c.flags |= _CONVERTS
            return c
        # An existing customer: start them part-way into whatever they were doing, so the
        # first weeks look like any other (churn already under way, lulls, dark accounts).
        if rnd() < cfg.dormant_share:
            c.flags |= _DORMANT
        u = rnd()
        lo_d, hi_d = cfg.decay_days
        p_decay = prof.churn_per_month / 30.0 * cfg.gradual_share * (lo_d + hi_d) / 2.0
        p_dark = 0.02
        p_lull = cfg.lulls_per_year / 365.0 * sum(cfg.lull_days) / 2.0
        if u < p_decay:
            c.phase, c.fate = _DECAY, _GRADUAL
            c.span = rng.randint(lo_d, hi_d)
            c.since = -rng.randint(0, c.span - 1)
            stop = c.since + c.span
            c.cancel_day = max(stop + self._tail(c, prof, stop, 29), rng.randint(0, 3))
        elif u < p_decay + p_dark:
            c.phase, c.fate = _DARK, _WENT_DARK
            c.since = -rng.randint(21, 200)
        elif u < p_decay + p_dark + p_lull:
            c.lull_until = rng.randint(1, cfg.lull_days[1])
        return c

    # -- output -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._iter is None:
            self._iter = self._run()
        return next(self._iter)

    def truth(self) -> Iterator[dict[str, Any]]:
        """One truth row per customer: ``customer_id``, ``churned``, ``churned_at``, extras.

        ``churned`` means a ``subscription.cancelled`` within the run (``churned_at`` is its
        event time). The extras: ``segment``, and ``fate``, the path the customer was on
        (a ``gradual`` customer with ``churned`` false was still disengaging at the end).
        """
        if not self._finished:
            raise RuntimeError("the truth is known only after every event has been consumed")
        names = [s.name for s in self.config.segments]
        for i, c in enumerate(self._customers):
            t = self._churned_at.get(i)
            fate = c.fate
            fate_name = "dormant" if fate == _RETAINED and c.flags & _DORMANT else FATES[fate]
            yield {
                "customer_id": customer_id(i),
                "churned": t is not None,
                "churned_at": rfc3339(t) if t is not None else None,
                "segment": names[c.seg],
                "fate": fate_name,
            }

    def _run(self) -> Iterator[Event]:
        seg_names = [s.name for s in self.config.segments]
        customers = self._customers
        for d in range(self.days):
            day_start = self.start + d * DAY_SECONDS
            when = datetime.fromtimestamp(day_start, tz=UTC)
            holiday = (when.month == 12 and when.day >= 22) or (when.month == 1 and when.day <= 2)
            weekday = when.weekday()
            self._day = d
            self._today = self._future.pop(d, [])
            step = self._customer_day
            for i, c in enumerate(customers):
                if c.phase == _PENDING and c.since != d:
                    continue
                step(i, c, d, day_start, weekday, when.day, holiday)
            rows = self._today
            self._today = []
            rows.sort()
            if self.on_day is not None:
                self.on_day(d, len(rows))
            prefix = f"sim{self.seed}-{d}-"
            for k, row in enumerate(rows):
                yield self._event(prefix + str(k), row, seg_names)
            del rows
        self._future.clear()
        self._finished = True

    def _event(self, eid: str, row: tuple[Any, ...], seg_names: list[str]) -> Event:
        t, _seq, idx, code, a, b, x = row
        cid = customer_id(idx)
        seg = seg_names[self._customers[idx].seg]
        typ = _TYPES[code]
        if code == _LOGIN:
            return Event(eid, cid, typ, t, seg, user_id=f"{cid}-u{a}", channel=_LOGIN_CHANNELS[b])
        if code <= _UNSUB:
            return Event(eid, cid, typ, t, seg, message_id=f"msg-{a}", campaign=_CAMPAIGNS[b])
        if code <= _T_REOPENED:
            return Event(eid, cid, typ, t, seg, ticket_id=f"tkt-{a}",
                         channel=_TICKET_CHANNELS[b & 3], priority=_PRIORITIES[b >> 2],
                         handle_seconds=x)
        if code == _SURVEY:
            return Event(eid, cid, typ, t, seg, survey=_SURVEYS[a],  # type: ignore[arg-type]
                         score=float(b), comment=_COMMENTS[x] if x is not None else None)
        return Event(eid, cid, typ, t, seg, plan=seg, mrr=a)

    def _emit(self, t: float, idx: int, code: int, a: Any = None, b: Any = None,
              x: Any = None) -> None:
        """Schedule an event at event time ``t`` (today or a later day of the run)."""
        t = round(t, 3)
        day = int((t - self.start) // DAY_SECONDS)
        self._seq += 1
        row = (t, self._seq, idx, code, a, b, x)
        if day <= self._day:
            self._today.append(row)
        elif day < self.days:
            self._future.setdefault(day, []).append(row)

    # -- one customer, one day ------------------------------------------------------------

    def _customer_day(self, idx: int, c: _Customer, d: int, day_start: float, weekday: int,
                      dom: int, holiday: bool) -> None:
        cfg = self.config
        rng = self._rng
        rnd = rng.random
        prof = cfg.segments[c.seg]
        phase = c.phase

        if phase == _GONE:
            if d == c.cancel_day + _WINBACK_AFTER_DAYS and not c.flags & _UNSUBSCRIBED:
                self._email(idx, c, day_start + 17 * 3600.0, _WINBACK, 0.15)
            return
        if phase == _PENDING:  # sign-up day
            phase = c.phase = _TRIAL
            self._emit(self._business_time(c, day_start), idx, _TRIAL_STARTED, None)

        # Subscription milestones scheduled for today.
        cancel_at = math.inf
        age = d - c.since
        if phase == _TRIAL and age == cfg.trial_days:
            t = self._business_time(c, day_start)
            if c.flags & _CONVERTS:
                self._emit(t, idx, _CONVERTED, self._mrr(c, prof))
                phase = c.phase = _ACTIVE
                c.since, age, c.renew = d, 0, d % 30 if not prof.annual else d % 365
                if not c.flags & _ACTIVATES:  # paid, but never really started using it
                    c.flags |= _LOW_FIT
                    c.eng *= 0.4
            else:
                c.fate = _TRIAL_LAPSED
                c.cancel_day = d
        if c.cancel_day == d:
            cancel_at = self._business_time(c, day_start)
            self._emit(cancel_at, idx, _CANCELLED, self._mrr(c, prof))
            self._churned_at[idx] = round(cancel_at, 3)
        elif phase in (_ACTIVE, _DECAY) and (
            (d == c.renew) if prof.annual else ((d - c.renew) % 30 == 0)
        ):
            self._emit(self._business_time(c, day_start), idx, _RENEWED, self._mrr(c, prof))

        # How present the customer is today: logins (m) and email opens (mo), and which
        # of its seats log in.
        in_crisis = d < c.crisis_until
        seats_active = c.seats
        if phase == _ACTIVE:
            m = 0.04 if c.flags & _DORMANT else 1.0
            mo = 0.3 if c.flags & _DORMANT else 1.0
            if d < c.lull_until:
                m *= 0.15
                mo *= 0.5
        elif phase == _TRIAL:
            if c.flags & _ACTIVATES:
                m = min(1.3, 0.7 + 0.06 * age)
            else:
                m = max(0.03, math.exp(-age / 3.0))
            mo = max(m, 0.5)
        elif phase == _DECAY:
            if cfg.fading == "seats":
                # Seats drop out one by one; whoever is left works as before, and the
                # last one (the admin) stays until the cancellation.
                left = math.exp(-3.0 * min(age, c.span) / c.span)
                seats_active = max(1, math.ceil(c.seats * left))
                m = seats_active / c.seats
                mo = m**0.5
            elif age >= c.span:  # disengaged; the cancellation is still to come
                m, mo = 0.0, 0.04
            else:
                m = math.exp(-4.0 * age / c.span)
                mo = m**0.5
        else:  # dark: fades out over three weeks and stays gone
            m = math.exp(-age / 5.0) if age < 21 else 0.0
            mo = m

        # Satisfaction drifts back to the customer's own level; crises and disengagement
        # pull it down.
        s = c.sat + 0.03 * (c.sat_base - c.sat) + (rnd() - 0.5) * 0.035
        if in_crisis:
            s -= 0.015
        if phase == _DECAY:
            s -= 0.004
        s = c.sat = _clamp(s, 0.0, 1.0)

        # Hazards: at most one new thing starts per customer and day.
        if phase == _ACTIVE and c.cancel_day < 0:
            if in_crisis and d == c.crisis_until - 1:
                # The crisis ends today; an unhappy customer may now start leaving.
                p = prof.crisis_churn_factor * _clamp(0.05 + 1.2 * (0.7 - s), 0.02, 0.8)
                if rnd() < p:
                    self._start_decay(c, prof, d, _CRISIS, (10, 35), 10)
            elif not in_crisis:
                if cfg.hazard == "level":
                    # eng ~ lognormal(0, 0.6): eng**-1.5 averages exp(0.405) ~ 1.5
                    h_cancel = prof.churn_per_month / 30.0 * c.eng ** -1.5 / 1.5
                else:
                    h_cancel = (prof.churn_per_month / 30.0 * math.exp(4.0 * (0.75 - s))
                                / _SAT_HAZARD_NORM)
                if c.flags & _DORMANT:
                    h_cancel *= 2.0
                if c.flags & _LOW_FIT:
                    h_cancel *= 3.0
                h_dark = cfg.dark_per_month / 30.0
                h_crisis = prof.crises_per_year / 365.0
                h_lull = cfg.lulls_per_year / 365.0 if d >= c.lull_until else 0.0
                h_wake = cfg.dormant_wakeups_per_year / 365.0 if c.flags & _DORMANT else 0.0
                u = rnd()
                if u < h_cancel:
                    if rnd() < cfg.gradual_share:
                        self._start_decay(c, prof, d, _GRADUAL, cfg.decay_days, 29)
                    else:
                        c.fate = _SUDDEN
                        c.cancel_day = d + rng.randint(1, 4)
                elif u < (edge := h_cancel + h_dark):
                    c.phase, c.fate, c.since = _DARK, _WENT_DARK, d
                elif u < (edge := edge + h_crisis):
                    c.crisis_until = d + rng.randint(*cfg.crisis_days)
                    in_crisis = True
                elif u < (edge := edge + h_lull):
                    c.lull_until = d + rng.randint(*cfg.lull_days)
                elif u < edge + h_wake:
                    c.flags &= ~_DORMANT

        # Logins, one per seat visit, in the customer's business hours.
        weekend = weekday >= 5
        rate = prof.logins_per_seat_day * c.seats * c.eng * m * (0.8 + 0.4 * s)
        if in_crisis:
            rate *= 1.1
        if weekend:
            rate *= prof.weekend_factor
        if holiday:
            rate *= 0.4
        if rate > 0.0:
            for _ in range(_poisson(rnd, rate)):
                if weekend:
                    hour = 8.0 + 14.0 * rnd()
                elif rnd() < 0.05:
                    hour = 24.0 * rnd()
                else:
                    hour = 7.0 + 6.0 * (rnd() + rnd())
                t = day_start + ((hour - c.tz) * 3600.0) % DAY_SECONDS
                if t >= cancel_at:
                    continue
                seat = int(seats_active * rnd() ** 1.7)
                u = rnd()
                api = 0.2 if prof.annual else 0.06
                channel = 2 if u < api else 1 if u < api + 0.22 else 0
                self._emit(t, idx, _LOGIN, seat, channel)

        # Campaign emails: the weekly digest goes out on Tuesdays, the product update on
        # the 10th, onboarding mails on fixed trial days.
        if not c.flags & _UNSUBSCRIBED and cancel_at == math.inf:
            if weekday == 1:
                self._email(idx, c, day_start + 15 * 3600.0, _DIGEST, mo)
            if dom == 10:
                self._email(idx, c, day_start + 16 * 3600.0, _PRODUCT, mo)
            if phase == _TRIAL and age in _ONBOARDING_DAYS:
                self._email(idx, c, day_start + ((10 - c.tz) * 3600.0) % DAY_SECONDS,
                            _ONBOARDING, mo)

        # Support tickets: unhappy customers write more, absent ones less; a crisis is a burst.
        lam = prof.tickets_per_month / 30.0 * (1.4 - 0.8 * s) * (min(1.0, 0.15 + m) if m else 0.0)
        if in_crisis:
            lam += prof.crisis_tickets_per_day
        if cancel_at == math.inf:
            for _ in range(_poisson(rnd, lam)):
                self._ticket(idx, c, day_start, in_crisis)

        # Surveys: a relationship NPS now and then, a CES after onboarding.
        if phase in (_ACTIVE, _DECAY) and m > 0.0 and cancel_at == math.inf:
            if rnd() < cfg.survey_response_rate / cfg.nps_every_days:
                score = round(_clamp(10.0 * s + rng.gauss(0.0, 1.2), 0.0, 10.0))
                self._emit(self._business_time(c, day_start), idx, _SURVEY, _NPS, score,
                           self._comment(score / 10.0))
        elif phase == _TRIAL and age == 7 and rnd() < cfg.survey_response_rate:
            ease = 0.3 + 0.5 * s + (0.15 if c.flags & _ACTIVATES else -0.15)
            score = round(_clamp(1.0 + 6.0 * ease + rng.gauss(0.0, 0.6), 1.0, 7.0))
            self._emit(self._business_time(c, day_start), idx, _SURVEY, _CES, score, None)

        if cancel_at != math.inf:
            c.phase = _GONE

    def _start_decay(self, c: _Customer, prof: SegmentProfile, d: int, fate: int,
                     days: tuple[int, int], max_tail: int) -> None:
        c.phase, c.fate, c.since = _DECAY, fate, d
        c.span = self._rng.randint(*days)
        stop = d + c.span
        c.cancel_day = stop + self._tail(c, prof, stop, max_tail)

    def _tail(self, c: _Customer, prof: SegmentProfile, stop: int, max_tail: int) -> int:
        """Days between having stopped and cancelling: most cancel before the next monthly
        renewal (when the bill reminds them), capped at ``max_tail``; in an "anyday"
        world, within a third of it, whenever."""
        if prof.annual or self.config.cancel_timing == "anyday":
            return self._rng.randint(0, max_tail if prof.annual else max_tail // 3)
        return min(max_tail, (c.renew - stop) % 30)

    def _business_time(self, c: _Customer, day_start: float) -> float:
        hour = 9.0 + 8.0 * self._rng.random()
        return day_start + ((hour - c.tz) * 3600.0) % DAY_SECONDS

    @staticmethod
    def _mrr(c: _Customer, prof: SegmentProfile) -> float:
        return round(c.seats * prof.seat_price, 2)

    def _comment(self, score01: float) -> int | None:
        """A free-text comment for roughly one answer in five, in the answer's mood."""
        rnd = self._rng.random
        if rnd() >= 0.2:
            return None
        if score01 < 0.65:
            return int(rnd() * 6)
        if score01 < 0.85:
            return 6 + int(rnd() * 3)
        return 9 + int(rnd() * 3)

    def _email(self, idx: int, c: _Customer, send_at: float, campaign: int,
               open_mult: float) -> None:
        rng = self._rng
        rnd = rng.random
        prof = self.config.segments[c.seg]
        p_open = _clamp(c.open_p * open_mult * (0.7 + 0.6 * c.sat), 0.0, 0.95)
        for _ in range(min(c.seats, prof.contacts)):
            self._messages += 1
            msg = self._messages
            t = send_at + 1800.0 * rnd()  # batch sending spreads over half an hour
            self._emit(t, idx, _SENT, msg, campaign)
            if c.flags & _BAD_EMAIL or rnd() < 0.004:
                self._emit(t + 5.0 + 120.0 * rnd(), idx, _BOUNCED, msg, campaign)
                continue
            if rnd() >= p_open:
                continue
            # Opens trail the send by minutes to days (median ~2 hours).
            opened = t + min(5 * DAY_SECONDS, rng.lognormvariate(8.9, 1.3))
            self._emit(opened, idx, _OPENED, msg, campaign)
            if rnd() < 0.1 + 0.15 * c.sat:
                self._emit(opened + 3.0 + 600.0 * rnd(), idx, _CLICKED, msg, campaign)
            if campaign != _ONBOARDING and rnd() < 0.003 + 0.02 * (1.0 - c.sat):
                self._emit(opened + 10.0 + 300.0 * rnd(), idx, _UNSUB, msg, campaign)
                c.flags |= _UNSUBSCRIBED
                return

    def _ticket(self, idx: int, c: _Customer, day_start: float, crisis: bool) -> None:
        """One ticket's whole conversation, scheduled from its opening on."""
        rng = self._rng
        rnd = rng.random
        self._tickets += 1
        tid = self._tickets
        u = rnd()
        if crisis:
            prio = 3 if u < 0.3 else 2 if u < 0.8 else 1
        else:
            prio = 3 if u < 0.04 else 2 if u < 0.18 else 1 if u < 0.7 else 0
        u = rnd()
        channel = 0 if u < 0.5 else 1 if u < 0.8 else 2 if u < 0.9 else 3
        meta = prio << 2 | channel
        slow = 1.6 if crisis else 1.0
        t = self._business_time(c, day_start)
        self._emit(t, idx, _T_OPENED, tid, meta)
        first_contact = rnd() < (0.25 if crisis else 0.55)
        replies = 1 if first_contact else 2 + int(-math.log(1.0 - rnd()) * 1.2)
        # First response: ~1.5 h median, faster for urgent tickets, slower in a crisis.
        t += rng.lognormvariate(math.log(5400.0 * slow * (0.3 if prio == 3 else 1.0)), 0.9)
        reopened = False
        rounds = 2 if rnd() < (0.35 if crisis else 0.08) else 1
        for r in range(rounds):
            for k in range(replies):
                if k:
                    t += rng.lognormvariate(math.log(6 * 3600.0), 0.8)
                handle = min(14_400.0, round(rng.lognormvariate(math.log(420.0), 0.6) * slow))
                self._emit(t, idx, _T_REPLIED, tid, meta, handle)
            t += rng.lognormvariate(math.log(600.0 if replies == 1 else 4 * 3600.0), 0.7)
            self._emit(t, idx, _T_RESOLVED, tid, meta)
            if r + 1 < rounds:
                reopened = True
                t += rng.lognormvariate(math.log(DAY_SECONDS), 0.7)
                self._emit(t, idx, _T_REOPENED, tid, meta)
                replies = 1 + int(rnd() * 2)
        c.sat = _clamp(c.sat + (-0.03 if reopened else 0.01 if first_contact else 0.0), 0.0, 1.0)
        # A CSAT after the final resolution, marked down by reopens and back-and-forth.
        if rnd() < self.config.survey_response_rate:
            x = c.sat - (0.25 if reopened else 0.0) - 0.05 * (replies - 1) + rng.gauss(0.0, 0.15)
            score = round(_clamp(1.0 + 4.0 * x, 1.0, 5.0))
            comment = self._comment((score - 1) / 4.0)
            if comment is not None and first_contact and score >= 4:
                comment = 12
            self._emit(t + rng.lognormvariate(math.log(3 * 3600.0), 0.8), idx, _SURVEY, _CSAT,
                       score, comment)


def _poisson(rnd: Callable[[], float], lam: float) -> int:
    """A Poisson draw (Knuth's product method; a normal approximation for large means)."""
    if lam < 30.0:
        limit = math.exp(-lam)
        k = 0
        p = rnd()
        while p > limit:
            k += 1
            p *= rnd()
        return k
    # Box-Muller from the same stream keeps a single source of randomness.
    z = math.sqrt(-2.0 * math.log(1.0 - rnd())) * math.cos(2.0 * math.pi * rnd())
    return max(0, int(lam + z * math.sqrt(lam) + 0.5))


def simulate(
    customers: int,
    days: int,
    seed: int,
    start: float,
    config: SimConfig | None = None,
) -> Simulation:
    """Simulate ``customers`` for ``days`` from ``start`` (POSIX seconds); iterate for events.

    The returned ``Simulation`` is an iterator of ``Event`` in event-time order; once it
    is exhausted, ``.truth()`` gives the churn label of every customer.
    """
    return Simulation(customers, days, seed, start, config)
