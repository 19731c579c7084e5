"""Renewal risk: an established collapse of a customer's activity, timed to the next renewal.

Most customers who fade out cancel when the next bill is due, so the useful
moment to call them is a few weeks before that renewal, once the decline is
beyond doubt. Two tests decide whether it is, each against the customer's
*own* baseline, so a small account is not judged like a large one:

* **Decline**: the share of days with a login or email engagement. The
  baseline rate ``b`` is an exponentially weighted average (half-life
  ``baseline_half_life_days``) over the days *before* the 35-day ring, so a
  decline under way does not drag its own yardstick down. Over the last
  ``decline_days`` full days the customer was active on ``k`` days; that is a
  decline when ``k <= decline_max_ratio x b x decline_days`` (deep) and the
  binomial probability of so few active days at rate ``b`` is at most
  ``decline_alpha`` (not chance; a customer active on 20 % of days is not
  unusual after a quiet week).
* **After a support crisis**: at least ``crisis_contacts`` tickets opened or
  reopened in the last 28 days, and logins plus email engagements in the last
  ``crisis_decline_days`` days at most ``crisis_max_ratio`` of the baseline
  count with a Poisson probability at most ``crisis_alpha``: a customer who
  stops using the product right after a bad support experience.

The next renewal is the last ``subscription.renewed`` or ``converted`` plus
``renewal_cycle_days``. An episode is raised while either test holds and the
renewal is at most ``renewal_window_days`` and at least ``renewal_min_notice_days``
away (or not known yet: a decline found in the renewal's last week is too late for
a save call, and is raised for the next renewal instead, if there is one); it stays
open until the customer renews (a new cycle: it can be raised again, after
the cooldown, for the next renewal) or recovers (activity in the last 7 days
back to ``renewal_recovery_ratio`` of the baseline). A renewal that is overdue
without a renewal event is not alerted on: the customer has stopped paying,
which is a billing question, not a churn warning. Critical within 7 days of
the renewal.

Every window counts full UTC days before the decision's day, so the verdict
changes only at a day boundary, an event or a renewal-window edge, and
``next_deadline`` names those times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from cxstream.engine.alerts import Reason, rfc3339
from cxstream.engine.config import DAY_SECONDS, Profile
from cxstream.engine.state import RING_DAYS, CustomerState

__all__ = ["Assessment", "assess", "baseline", "fold", "next_deadline"]

CONTACT_DAYS = 28  # support contacts counted for the post-crisis test
RECOVERY_DAYS = 7  # window of the recovery check
CRITICAL_DAYS = 7.0  # a renewal this close makes the episode critical
_NO_FOLD = -(10**9)


def _day(t: float) -> int:
    return int(t // DAY_SECONDS)


def _folded(st: CustomerState, upto: int, prof: Profile) -> tuple[float, float, int, int | None]:
    """Raw EWMAs (active days, daily count), days folded and the next day to fold, with
    every day before ``upto`` folded in. Days still in the ring use their counts; days
    outside it had no events."""
    start = st.base_upto
    rate, count, n = st.base_days, st.base_count, st.base_n
    if start is None or upto <= start:
        return rate, count, n, start
    keep = 0.5 ** (1.0 / prof.baseline_half_life_days)
    day0 = st.ring_day0 if st.ring_day0 is not None else _NO_FOLD
    ring = st.ring
    d = start
    while d < upto:
        i = d - day0
        if 0 <= i < len(ring):
            row = ring[i]
            x = float(row[0] + row[1])
            rate = keep * rate + (1.0 - keep) * (1.0 if x > 0 else 0.0)
            count = keep * count + (1.0 - keep) * x
            n += 1
            d += 1
            continue
        # A stretch with no events: zeros, folded in one step.
        stop = upto if i >= len(ring) or day0 == _NO_FOLD else min(upto, day0)
        factor = keep ** (stop - d)
        rate *= factor
        count *= factor
        n = min(n + stop - d, 10**6)
        d = stop
    return rate, count, n, upto


def fold(st: CustomerState, upto: int, prof: Profile) -> None:
    """Fold the days before ``upto`` into the stored baseline (before the ring drops them)."""
    if st.base_upto is None:
        return
    st.base_days, st.base_count, st.base_n, st.base_upto = _folded(st, upto, prof)


def baseline(st: CustomerState, t: float, prof: Profile) -> tuple[float, float, int]:
    """The baseline as of event time ``t`` over every day before ``t``'s 35-day ring:
    (share of active days, logins + email engagements a day, days behind it).

    Exponentially weighted, with the start-up bias corrected (the weights of the
    ``n`` days folded so far sum to ``1 - keep**n``), so a young baseline is the
    plain average of its days, not pulled towards zero or towards the first day.
    """
    rate, count, n, _ = _folded(st, _day(t) - RING_DAYS + 1, prof)
    if n <= 0:
        return 0.0, 0.0, 0
    norm = 1.0 - (0.5 ** (1.0 / prof.baseline_half_life_days)) ** n
    return rate / norm, count / norm, n


def _window(st: CustomerState, t: float, days: int) -> tuple[int, int, int]:
    """(active days, logins + email engagements, support contacts) in the ``days`` full
    days before ``t``'s day."""
    if st.ring_day0 is None:
        return 0, 0, 0
    end = _day(t) - st.ring_day0  # index of t's own day, excluded
    active = count = contacts = 0
    for i in range(max(0, end - days), min(len(st.ring), end)):
        row = st.ring[i]
        if row[0] or row[1]:
            active += 1
        count += row[0] + row[1]
        contacts += row[2]
    return active, count, contacts


def _binom_cdf(k: int, n: int, p: float) -> float:
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    return sum(math.comb(n, i) * p**i * (1.0 - p) ** (n - i) for i in range(k + 1))


def _poisson_cdf(k: int, lam: float) -> float:
    term = math.exp(-lam)
    total = term
    for i in range(1, k + 1):
        term *= lam / i
        total += term
    return total


def renewal_due(st: CustomerState, prof: Profile) -> float | None:
    """When the next renewal is expected, from the last one (None before the first)."""
    if st.renewed_at is None:
        return None
    return st.renewed_at + prof.renewal_cycle_days * DAY_SECONDS


@dataclass(frozen=True, slots=True)
class Assessment:
    """The renewal-risk verdict at one event time, with the numbers behind it."""

    active: bool
    severity: str
    reasons: Callable[[], tuple[Reason, ...]]


def assess(st: CustomerState, t: float, prof: Profile, is_open: bool,
           opened_at: float | None) -> Assessment | None:
    """The verdict at ``t``; None when the customer cannot be judged (no baseline yet,
    cancelled). ``is_open``/``opened_at``: the open episode, if any."""
    if st.cancelled_at is not None:
        return None
    rate, base_count, n = baseline(st, t, prof)
    if n < prof.baseline_min_days:
        return None
    due = renewal_due(st, prof)
    to_renewal = (due - t) / DAY_SECONDS if due is not None else None
    renewal = _renewal_reason(to_renewal, due, prof)
    if is_open:
        if st.renewed_at is not None and opened_at is not None and st.renewed_at > opened_at:
            renewed_at = st.renewed_at
            return Assessment(False, "info", lambda: (Reason(
                "renewed", None, None, f"The customer renewed ({rfc3339(renewed_at)})."),))
        _, recent, _ = _window(st, t, RECOVERY_DAYS)
        back = prof.renewal_recovery_ratio * RECOVERY_DAYS * base_count
        if recent >= back and recent > 0:
            return Assessment(False, "info", lambda: (Reason(
                "activity_recovered", float(recent), round(back, 2),
                f"{recent} logins and email engagements in the last {RECOVERY_DAYS} days, "
                f"back above {back:.1f} ({prof.renewal_recovery_ratio:.0%} of usual)."),))
        severity = ("critical" if to_renewal is not None and to_renewal <= CRITICAL_DAYS
                    else "warning")
        return Assessment(True, severity, lambda: (renewal,))
    if to_renewal is not None and not (
            prof.renewal_min_notice_days <= to_renewal <= prof.renewal_window_days):
        # Too early (the renewal is more than the window away), too late for a save call
        # (less than the minimum notice: raised for the next renewal, if there is one), or
        # overdue.
        return Assessment(False, "warning", lambda: ())
    found: list[Reason] = []
    if rate >= prof.decline_min_rate:
        days = prof.decline_days
        k, _, _ = _window(st, t, days)
        expected = rate * days
        line = prof.decline_max_ratio * expected
        if k <= line:
            p = _binom_cdf(k, days, rate)
            if p <= prof.decline_alpha:
                found.append(Reason(
                    "active_days_low", float(k), round(line, 2),
                    f"Active on {k} of the last {days} days; at this customer's usual rate "
                    f"({rate:.0%} of days) {expected:.1f} were expected, and so few happen by "
                    f"chance with probability {p:.2%} (line: at most "
                    f"{prof.decline_max_ratio:.0%} of expected, probability at most "
                    f"{prof.decline_alpha:.0%})."))
        cdays = prof.crisis_decline_days
        _, _, contacts = _window(st, t, CONTACT_DAYS)
        if contacts >= prof.crisis_contacts:
            _, count, _ = _window(st, t, cdays)
            usual = base_count * cdays
            cline = prof.crisis_max_ratio * usual
            if count <= cline:
                p = _poisson_cdf(count, usual)
                if p <= prof.crisis_alpha:
                    found.append(Reason(
                        "post_crisis_decline", float(count), round(cline, 2),
                        f"{contacts} support contacts in the last {CONTACT_DAYS} days, then "
                        f"{count} logins and email engagements in the last {cdays} days "
                        f"against {usual:.1f} usual (probability {p:.2%} by chance)."))
    if not found:
        return Assessment(False, "warning", lambda: ())
    severity = ("critical" if to_renewal is not None and to_renewal <= CRITICAL_DAYS
                else "warning")
    reasons = (*found, renewal)
    return Assessment(True, severity, lambda: reasons)


def _renewal_reason(to_renewal: float | None, due: float | None, prof: Profile) -> Reason:
    if to_renewal is None or due is None:
        return Reason("renewal_unknown", None, None,
                      "No renewal seen yet, so the decline alone raised this.")
    if to_renewal < 0:
        return Reason("renewal_overdue", round(to_renewal, 1), 0.0,
                      f"The renewal expected {rfc3339(due)} has not happened.")
    return Reason("renewal_in_days", round(to_renewal, 1), prof.renewal_window_days,
                  f"Next renewal expected in {to_renewal:.1f} days ({rfc3339(due)}), "
                  f"{prof.renewal_cycle_days:g} days after the last one.")


def next_deadline(st: CustomerState, prof: Profile, after: float, is_open: bool
                  ) -> float | None:
    """The earliest time > ``after`` at which the verdict may change with no new event."""
    if st.cancelled_at is not None or st.base_upto is None:
        return None
    candidates: list[float] = []
    due = renewal_due(st, prof)
    if due is not None:
        candidates.extend((due - prof.renewal_window_days * DAY_SECONDS,
                           due - prof.renewal_min_notice_days * DAY_SECONDS,
                           due - CRITICAL_DAYS * DAY_SECONDS, due))
    overdue = due is not None and after >= due
    gate_shut = due is not None and after < due - prof.renewal_window_days * DAY_SECONDS
    if not is_open and not overdue and not gate_shut:
        # The windows move at each day boundary; judged from the day the baseline is ready.
        ready = (st.base_upto + RING_DAYS - 1 + prof.baseline_min_days - st.base_n) * DAY_SECONDS
        candidates.append(max(ready, (_day(after) + 1) * DAY_SECONDS))
    future = [c for c in candidates if c > after]
    return min(future) if future else None
