"""Golden stories of ``renewal_risk``: a customer's events in, the exact alerts and reasons out.

Every story runs on a profile that publishes only ``renewal_risk``. A busy ``clock``
customer logs in every morning at 08:00 and moves the partition's stream time; the
customer under test, ``c``, sends only what the story says. Times are days (and hours)
after ``T0``. The baseline is the customer's share of active days before the 35-day
ring (an EWMA, half-life 28 days); it is ready once 7 such days are folded in, so from
day 41 of a customer first seen on day 0.
"""

from __future__ import annotations

import pytest

from cxstream.engine.alerts import Alert
from cxstream.engine.config import Profile
from cxstream.engine.events import Event
from cxstream.engine.renewal import baseline
from cxstream.engine.signals import TYPE_CODE, apply_event
from cxstream.engine.state import CustomerState
from tests.factories import (
    at,
    by_customer,
    by_time,
    cancelled,
    daily,
    login,
    only,
    opened,
    reasons,
    renewed,
    replay,
    story,
    ticket,
)

RENEWAL = only("renewal_risk")


def alerts_of(events: list[Event], until: int, config: object = RENEWAL) -> list[Alert]:
    result = replay(by_time([*events, *daily("clock", 0, until, hour=8)]), config)  # type: ignore[arg-type]
    assert result.late == 0
    return by_customer(result.alerts, "c")


def test_a_daily_user_who_stops_is_raised_once_the_decline_is_established() -> None:
    # Active every day until day 59 (baseline: active on 100% of days), renewed on days 30
    # and 60, silent from day 60. At midnight of day 72 the last 14 full days (58..71) hold
    # 2 active days, at most 20% of the 14 expected (2.8); the next renewal is due on day 90
    # at 10:00, 18.4 days away (within 28). Critical 7 days before it; the cancellation
    # on the renewal day closes the episode.
    events = [*daily("c", 0, 59), renewed("c", 30, 10), renewed("c", 60, 10),
              cancelled("c", 90, 10)]

    alerts = alerts_of(events, 95)

    assert story(alerts) == [
        ("renewal_risk", "raised", "warning", at(72), 0),
        ("renewal_risk", "escalated", "critical", at(83, 10), 1),
        ("renewal_risk", "resolved", "info", at(90, 10), 2),
    ]
    assert reasons(alerts[0]) == [("active_days_low", 2.0, 2.8),
                                  ("renewal_in_days", 18.4, 28.0)]
    assert alerts[0].reasons[0].message.startswith(
        "Active on 2 of the last 14 days; at this customer's usual rate (100% of days) "
        "14.0 were expected")
    assert reasons(alerts[1]) == [("renewal_in_days", 7.0, 28.0)]
    assert reasons(alerts[2]) == [("subscription_cancelled", None, None)]


def test_a_decline_found_early_waits_for_the_renewal_window() -> None:
    # The same decline is established at midnight of day 67, but the customer renewed on
    # day 66 at 10:00: the next renewal (day 96, 10:00) is 29.4 days away. The alert is
    # raised when it comes within 28 days, at day 68 10:00 (days 54..67: 1 active day).
    events = [*daily("c", 0, 54), renewed("c", 36, 10), renewed("c", 66, 10)]

    alerts = alerts_of(events, 70)

    assert story(alerts) == [("renewal_risk", "raised", "warning", at(68, 10), 0)]
    assert reasons(alerts[0]) == [("active_days_low", 1.0, 2.8),
                                  ("renewal_in_days", 28.0, 28.0)]


def test_a_renewal_closes_the_episode_and_the_next_cycle_raises_again() -> None:
    # Raised at day 72 for the day-90 renewal; the customer renews anyway (day 90, 10:00):
    # that closes the episode and starts the 7-day cooldown. Still silent, the customer is
    # raised again for the day-120 renewal at the first decision after the cooldown. By
    # then the baseline takes in the first silent days (60..63), so the line is lower.
    events = [*daily("c", 0, 59), renewed("c", 30, 10), renewed("c", 60, 10),
              renewed("c", 90, 10)]

    alerts = alerts_of(events, 100)

    assert story(alerts) == [
        ("renewal_risk", "raised", "warning", at(72), 0),
        ("renewal_risk", "escalated", "critical", at(83, 10), 1),
        ("renewal_risk", "resolved", "info", at(90, 10), 2),
        ("renewal_risk", "raised", "warning", at(98), 0),
    ]
    assert reasons(alerts[2])[0] == ("recovered", None, None)
    assert "renewed" in alerts[2].reasons[0].message
    assert reasons(alerts[3]) == [("active_days_low", 0.0, 2.47),
                                  ("renewal_in_days", 22.4, 28.0)]


def test_coming_back_resolves_the_episode() -> None:
    # Raised at day 72; the customer logs in on days 72..75. At the first decision after
    # 4 active days in the last 7 full days (>= 50% of the usual 7) the episode resolves.
    events = [*daily("c", 0, 59), renewed("c", 30, 10), renewed("c", 60, 10),
              *daily("c", 72, 80)]

    alerts = alerts_of(events, 82)

    assert story(alerts) == [
        ("renewal_risk", "raised", "warning", at(72), 0),
        ("renewal_risk", "resolved", "info", at(76, 9), 1),
    ]
    assert reasons(alerts[1]) == [("recovered", 4.0, 3.5)]


@pytest.mark.parametrize(
    ("every", "raised"),
    [
        pytest.param(3, True, id="active-every-3rd-day-14-silent-days-are-no-chance"),
        pytest.param(6, False, id="active-every-6th-day-14-silent-days-can-be-chance"),
    ],
)
def test_the_same_silence_means_more_for_a_more_active_customer(every: int, raised: bool) -> None:
    # Silent from day 60 for both. Active on 1 day in 3, P(0 active days in 14) = (2/3)^14,
    # about 0.3%; active on 1 day in 6 the baseline rate is under 20%: not judged at all.
    events = [login("c", d, 9) for d in range(0, 60, every)] + [renewed("c", 60, 10)]

    alerts = alerts_of(events, 88)

    assert bool(alerts) is raised
    if raised:
        assert alerts[0].reasons[0].code == "active_days_low"


def test_a_quiet_stretch_after_a_support_crisis_is_raised_sooner() -> None:
    # Two activities a day (login + email open) until day 55, five tickets on days
    # 50..54, then silence. At midnight of day 60 the last 7 full days (53..59) hold 6
    # activities against 14 usual: at most half (7), Poisson probability 1.4%. The 14-day
    # test alone would wait until day 68 (2 active days in 54..67).
    events = [*daily("c", 0, 55), *daily("c", 0, 55, hour=11, builder=opened),
              *[ticket("c", d, 12, ticket_id=f"t{d}") for d in range(50, 55)],
              renewed("c", 40, 10)]

    alerts = alerts_of(events, 64)

    assert story(alerts) == [
        ("renewal_risk", "raised", "warning", at(60), 0),
        ("renewal_risk", "escalated", "critical", at(63, 10), 1),  # renewal in 7 days
    ]
    assert reasons(alerts[0]) == [("post_crisis_decline", 6.0, 7.0),
                                  ("renewal_in_days", 10.4, 28.0)]
    assert alerts[0].reasons[0].message == (
        "5 support contacts in the last 28 days, then 6 logins and email engagements in "
        "the last 7 days against 14.0 usual (probability 1.42% by chance).")


def test_an_overdue_renewal_is_not_a_churn_warning() -> None:
    # Renewed on day 30, then nothing: the day-60 renewal never came (payment stopped).
    events = [*daily("c", 0, 59), renewed("c", 30, 10)]

    assert alerts_of(events, 90) == []


def test_the_baseline_is_the_same_whenever_it_is_folded() -> None:
    # The ring folds its oldest days into the baseline as it moves (here on the day-90
    # login); reading the baseline later folds the rest virtually. Both give the same.
    prof = Profile()
    events = by_time([*daily("c", 0, 40), login("c", 90, 9)])
    lazy = CustomerState("c", first_seen_at=at(0, 9))
    eager = CustomerState("c", first_seen_at=at(0, 9))
    for i, e in enumerate(events):
        row = [e.occurred_at, 0, TYPE_CODE[e.type], None, None]
        apply_event(eager, row, prof)
        if i < len(events) - 1:
            apply_event(lazy, row, prof)

    assert eager.base_n > lazy.base_n  # the eager state really folded
    assert baseline(lazy, at(90, 12), prof) == pytest.approx(baseline(eager, at(90, 12), prof))
    rate, count, n = baseline(eager, at(90, 12), prof)
    assert n == 56  # days 0..55, before the ring of days 56..90
    # 41 active days then 15 silent ones, weighted towards the recent silence.
    assert 0.3 < rate < 41 / 56


def test_renewal_risk_is_not_crowded_out_by_the_raise_cap() -> None:
    # One raise per 30 days allowed: inactivity takes it on day 66 (7 days after the last
    # login). renewal_risk limits itself to one raise per renewal cycle, so the cap neither
    # holds it back nor counts it.
    events = [*daily("c", 0, 59, hour=9), renewed("c", 30, 10), renewed("c", 60, 10)]
    config = only("inactivity", "renewal_risk", max_raises_per_30d=1)

    alerts = alerts_of(events, 80, config)

    raised = [(a.kind, a.decided_at) for a in alerts if a.state == "raised"]
    assert raised == [("inactivity", at(66, 9)), ("renewal_risk", at(72))]


def test_a_decline_found_in_the_renewals_last_week_waits_for_the_next_renewal() -> None:
    # Established at midnight of day 72 (2 active days in 58..71), but the renewal is due
    # on day 74 at 10:00, 2.4 days away: too late for a save call (minimum notice 7 days).
    # The customer renews; the next renewal (day 104) comes within 28 days on day 76 at
    # 10:00, and the decline still holds.
    events = [*daily("c", 0, 59), renewed("c", 14, 10), renewed("c", 44, 10),
              renewed("c", 74, 10)]

    alerts = alerts_of(events, 80)

    assert story(alerts) == [("renewal_risk", "raised", "warning", at(76, 10), 0)]
    assert reasons(alerts[0])[1] == ("renewal_in_days", 28.0, 28.0)
