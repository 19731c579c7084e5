"""Golden stories, one signal at a time: a customer's events in, the exact alerts and reasons out.

Each story runs on a profile that publishes only the kind under test, so its alerts
are exactly that kind's. A busy ``clock`` customer logs in every morning at 08:00 and
moves the partition's stream time; the customer under test, ``c``, sends only what
the story says. Times are days (and hours) after ``T0``.
"""

from __future__ import annotations

from typing import Any

import pytest

from cxstream.engine.alerts import Alert
from cxstream.engine.config import EngineConfig, Profile
from cxstream.engine.events import Event
from cxstream.engine.signals import inactivity_line_days, unopened_line
from cxstream.engine.state import CustomerState
from tests.factories import (
    at,
    bounced,
    by_customer,
    by_time,
    daily,
    login,
    only,
    opened,
    reasons,
    reopened,
    replay,
    replied,
    resolved,
    sent,
    story,
    survey,
    ticket,
    unsubscribed,
)

# Health from feedback alone: 10 x the NPS answer, so a story can steer the score exactly.
FEEDBACK_ONLY = {
    "w_inactivity": 0.0,
    "w_decay": 0.0,
    "w_email": 0.0,
    "w_support": 0.0,
    "w_alive": 0.0,
    "w_feedback": 1.0,
}


def clock(last_day: int) -> list[Event]:
    """Another customer of the partition, logging in daily at 08:00: stream time moves."""
    return daily("clock", 0, last_day, hour=8)


def alerts_of(events: list[Event], config: EngineConfig, until: int) -> list[Alert]:
    """``c``'s alerts when ``events`` and the clock up to day ``until`` are replayed."""
    result = replay(by_time([*events, *clock(until)]), config)
    assert result.late == 0
    return by_customer(result.alerts, "c")


def nps(day: float, score: int, hour: float = 9) -> Event:
    return survey("c", day, hour, survey="nps", score=score)


# -- personalised inactivity ----------------------------------------------------------------

INACTIVITY = only("inactivity")


@pytest.mark.parametrize(
    ("active_days", "line"),
    [
        pytest.param(list(range(0, 30)), 7, id="daily-user-gets-the-minimum-line"),
        pytest.param(list(range(0, 31, 2)), 8, id="every-2-days-4x2"),
        pytest.param(list(range(0, 46, 5)), 20, id="every-5-days-4x5"),
        pytest.param(list(range(0, 50, 7)), 21, id="weekly-user-is-clamped-to-the-maximum"),
        pytest.param([0], 8, id="new-customer-uses-the-prior-gap-4x2"),
    ],
)
def test_a_customer_is_raised_after_their_own_usual_gap_times_four(
    active_days: list[int], line: int
) -> None:
    last = active_days[-1]

    alerts = alerts_of([login("c", d, 9) for d in active_days], INACTIVITY, last + 3 * line)

    assert story(alerts) == [
        ("inactivity", "raised", "warning", at(last + line, 9), 0),
        ("inactivity", "escalated", "critical", at(last + 2 * line, 9), 1),
    ]
    assert reasons(alerts[0]) == [("inactive_days", line, line)]
    assert reasons(alerts[1]) == [("inactive_days", 2 * line, line)]
    assert f"this customer's line is {line:.1f} days" in alerts[0].reasons[0].message


@pytest.mark.parametrize(
    ("gap_ewm_days", "profile", "line"),
    [
        (None, Profile(), 8.0),
        (0.5, Profile(), 7.0),
        (3.0, Profile(), 12.0),
        (10.0, Profile(), 21.0),
        (None, Profile(inactivity_prior_gap_days=1.0), 7.0),
        (3.0, Profile(inactivity_multiplier=2.0), 7.0),
        (3.0, Profile(inactivity_min_days=14, inactivity_max_days=14), 14.0),
    ],
)
def test_inactivity_line_is_the_usual_gap_times_the_multiplier_within_min_and_max(
    gap_ewm_days: float | None, profile: Profile, line: float
) -> None:
    st = CustomerState("c", gap_ewm_days=gap_ewm_days)

    assert inactivity_line_days(st, profile) == line


def test_the_usual_gap_follows_a_change_of_habit() -> None:
    # Weekly for eight weeks (line 21 days), then daily for three weeks: the usual gap is an
    # EWMA (alpha 0.3), 1 + 6 x 0.7^21 = 1.003 days by day 77, so the line is back to 7.
    events = [login("c", d, 9) for d in range(0, 57, 7)] + daily("c", 57, 77, hour=9)

    alerts = alerts_of(events, INACTIVITY, 100)

    assert story(alerts)[0] == ("inactivity", "raised", "warning", at(84, 9), 0)
    assert reasons(alerts[0]) == [("inactive_days", 7.0, 7.0)]


# -- engagement decay -----------------------------------------------------------------------

DECAY = only("engagement_decay")
STRONG_BASELINE = daily("c", 0, 27, hour=9)  # 7 active days a week for four weeks


def test_engagement_decay_is_raised_on_a_60_percent_drop_and_resolved_below_30() -> None:
    # Drop = 1 - (active days in the last 7) / (the 28 days before them / 4):
    #   day 33: 3 vs 6.75 a week = 55.6%  -> below 60: not raised
    #   day 36: 2 vs 6.75        = 70.4%  -> raised
    #   day 37: 3 vs 6.5         = 53.8%  -> between 30 and 60: stays open
    #   day 38: 4 vs 6.25        = 36.0%  -> stays open
    #   day 39: 5 vs 6.0         = 16.7%  -> resolved
    comeback = [login("c", d, 9) for d in (29, 33, 36, 37, 38, 39)]

    alerts = alerts_of([*STRONG_BASELINE, *comeback], DECAY, 40)

    assert story(alerts) == [
        ("engagement_decay", "raised", "warning", at(36, 9), 0),
        ("engagement_decay", "resolved", "info", at(39, 9), 1),
    ]
    assert reasons(alerts[0]) == [("activity_drop_pct", 70.4, 60.0)]
    assert "70% below the customer's 28-day baseline (2 vs 6.8 a week)" in (
        alerts[0].reasons[0].message
    )
    assert reasons(alerts[1]) == [("recovered", 16.7, 60.0)]


def test_a_customer_who_stops_altogether_is_raised_critical_at_their_inactivity_line() -> None:
    # Nothing arrives to evaluate the decay on: it is decided at the next deadline, the
    # inactivity line (7 days for a daily user), with no activity in the last 7 days.
    alerts = alerts_of(STRONG_BASELINE, DECAY, 40)

    assert story(alerts) == [("engagement_decay", "raised", "critical", at(34, 9), 0)]
    assert reasons(alerts[0]) == [("activity_drop_pct", 100.0, 60.0)]


def test_no_decay_without_a_baseline() -> None:
    # Five active days are below decay_min_baseline (6): nothing to fall from.
    events = [login("c", d, 9) for d in (0, 1, 2, 3, 4, 20)]

    assert alerts_of(events, DECAY, 30) == []


# -- email disengagement --------------------------------------------------------------------

EMAIL = only("email_disengagement")


def opens_every_email(first_day: int, last_day: int) -> list[Event]:
    return [
        e for d in range(first_day, last_day + 1) for e in (sent("c", d, 9), opened("c", d, 10))
    ]


def test_an_unsubscribe_raises_email_disengagement() -> None:
    events = [*opens_every_email(0, 2), unsubscribed("c", 3, 9), opened("c", 4, 10)]

    alerts = alerts_of(events, EMAIL, 10)

    # An unsubscribe is not undone by an open of an earlier email.
    assert story(alerts) == [("email_disengagement", "raised", "warning", at(3, 9), 0)]
    assert reasons(alerts[0]) == [("email_unsubscribed", 1.0, None)]


def test_a_bounce_raises_and_the_next_open_resolves() -> None:
    events = [sent("c", 0, 9), bounced("c", 0, 9, 5), sent("c", 2, 9), opened("c", 2, 10)]

    alerts = alerts_of(events, EMAIL, 5)

    assert story(alerts) == [
        ("email_disengagement", "raised", "warning", at(0, 9, 5), 0),
        ("email_disengagement", "resolved", "info", at(2, 10), 1),
    ]
    assert reasons(alerts[0]) == [("email_bounced", 1.0, None)]
    assert reasons(alerts[1])[0][0] == "recovered"


def test_unopened_emails_beyond_the_streak_line_raise_and_an_open_resolves() -> None:
    # Opens every email for 10 days (line: max(5, 3 x 1) = 5), then stops opening.
    events = [*opens_every_email(0, 9), *(sent("c", d, 9) for d in range(10, 16))]
    events.append(opened("c", 16, 10))

    alerts = alerts_of(events, EMAIL, 20)

    assert story(alerts) == [
        ("email_disengagement", "raised", "warning", at(14, 9), 0),  # the 5th unopened
        ("email_disengagement", "resolved", "info", at(16, 10), 1),
    ]
    assert reasons(alerts[0]) == [("emails_unopened", 5.0, 5.0)]


def test_a_customer_who_opens_one_email_in_two_has_a_longer_streak_line() -> None:
    # 20 days of one email a day, every other one opened: the usual run between opens is
    # 2 (from the history before the streak), so the line is 3 x 2 = 6 unopened in a row.
    history = [sent("c", d, 9) for d in range(20)] + [opened("c", d, 10) for d in range(0, 20, 2)]
    streak = [sent("c", d, 9) for d in range(20, 40)]

    alerts = alerts_of([*history, *streak], EMAIL, 45)

    # The day-19 email (unopened) starts the streak: the 6th is on day 24.
    assert story(alerts) == [("email_disengagement", "raised", "warning", at(24, 9), 0)]
    assert reasons(alerts[0]) == [("emails_unopened", 6.0, 6.0)]


def test_a_customer_who_never_opens_is_raised_at_the_default_streak() -> None:
    alerts = alerts_of([sent("c", d, 9) for d in range(10)], EMAIL, 12)

    assert story(alerts) == [("email_disengagement", "raised", "warning", at(4, 9), 0)]
    assert reasons(alerts[0]) == [("emails_unopened", 5.0, 5.0)]


def test_a_customer_who_opened_one_of_two_emails_and_then_none_of_60_is_raised() -> None:
    events = [sent("c", 0, 9), opened("c", 0, 10), *(sent("c", d, 9) for d in range(1, 61))]

    alerts = alerts_of(events, EMAIL, 62)

    assert [(a.state, reasons(a)[0][0]) for a in alerts][:1] == [("raised", "emails_unopened")]


@pytest.mark.parametrize(
    ("delivered", "opened_", "line"),
    [
        (0.0, 0.0, 5.0),
        (10.0, 0.0, 5.0),
        (10.0, 10.0, 5.0),
        (10.0, 5.0, 6.0),
        (25.0, 5.0, 15.0),
        (1.0, 1.0, 5.0),  # too little history to personalise
    ],
)
def test_unopened_line_is_three_usual_runs_and_at_least_the_streak(
    delivered: float, opened_: float, line: float
) -> None:
    st = CustomerState("c", em_delivered=delivered, em_opened=opened_)

    assert unopened_line(st, Profile()) == line


# -- support friction -----------------------------------------------------------------------

SUPPORT = only("support_friction")


def test_a_reopened_ticket_raises_support_friction() -> None:
    events = [
        ticket("c", 0, 9, ticket_id="t1"),
        resolved("c", 1, 9, ticket_id="t1"),
        reopened("c", 2, 9, ticket_id="t1"),
    ]

    alerts = alerts_of(events, SUPPORT, 4)

    assert story(alerts) == [("support_friction", "raised", "warning", at(2, 9), 0)]
    assert reasons(alerts[0]) == [("ticket_reopened", 1.0, 1.0)]


def test_a_ticket_open_too_long_is_raised_at_the_overdue_line_without_any_event_of_its_own() -> (
    None
):
    events = [ticket("c", 0, 10, ticket_id="t1"), resolved("c", 6, 12, ticket_id="t1")]

    alerts = alerts_of(events, SUPPORT, 7)

    assert story(alerts) == [
        ("support_friction", "raised", "warning", at(5, 10), 0),  # opened + 5 days exactly
        ("support_friction", "resolved", "info", at(6, 12), 1),
    ]
    assert reasons(alerts[0]) == [("ticket_overdue", 5.0, 5.0)]


def test_three_contacts_in_a_week_raise_support_friction() -> None:
    events = [ticket("c", d, 9, ticket_id=f"t{d}") for d in (0, 1, 2)]

    alerts = alerts_of(events, SUPPORT, 4)

    assert story(alerts) == [("support_friction", "raised", "warning", at(2, 9), 0)]
    assert reasons(alerts[0]) == [("contacts_high", 3.0, 3.0)]


def test_agent_replies_are_not_customer_contacts() -> None:
    events = [
        ticket("c", 0, 9, ticket_id="t1"),
        replied("c", 1, 9, ticket_id="t1"),
        replied("c", 2, 9, ticket_id="t1"),
        resolved("c", 2, 10, ticket_id="t1"),
    ]

    assert alerts_of(events, SUPPORT, 6) == []


def test_a_new_ticket_soon_after_a_resolution_is_a_repeat_contact() -> None:
    events = [
        ticket("c", 0, 9, ticket_id="t1"),
        resolved("c", 0, 12, ticket_id="t1"),
        ticket("c", 2, 9, ticket_id="t2"),
        resolved("c", 2, 12, ticket_id="t2"),
    ]

    alerts = alerts_of(events, SUPPORT, 4)

    assert story(alerts) == [("support_friction", "raised", "warning", at(2, 9), 0)]
    assert reasons(alerts[0]) == [("repeat_contact", 1.0, 3.0)]


def test_a_new_ticket_four_days_after_a_resolution_is_not_a_repeat_contact() -> None:
    events = [
        ticket("c", 0, 9, ticket_id="t1"),
        resolved("c", 0, 12, ticket_id="t1"),
        ticket("c", 4, 9, ticket_id="t2"),
        resolved("c", 4, 12, ticket_id="t2"),
    ]

    assert alerts_of(events, SUPPORT, 6) == []


def test_more_than_one_kind_of_friction_escalates_to_critical() -> None:
    events = [
        ticket("c", 0, 9, ticket_id="t1"),
        resolved("c", 0, 12, ticket_id="t1"),
        ticket("c", 2, 9, ticket_id="t2"),  # repeat contact
        reopened("c", 3, 9, ticket_id="t1"),  # a reopen, and the third contact this week
    ]

    alerts = alerts_of(events, SUPPORT, 4)

    assert story(alerts) == [
        ("support_friction", "raised", "warning", at(2, 9), 0),
        ("support_friction", "escalated", "critical", at(3, 9), 1),
    ]
    assert [code for code, _, _ in reasons(alerts[1])] == [
        "ticket_reopened",
        "contacts_high",
        "repeat_contact",
    ]


def test_a_segment_can_widen_the_repeat_contact_window() -> None:
    events = [
        ticket("c", 0, 9, ticket_id="t1"),
        resolved("c", 0, 12, ticket_id="t1"),
        ticket("c", 5, 9, ticket_id="t2"),
        resolved("c", 5, 12, ticket_id="t2"),
    ]

    alerts = alerts_of(events, only("support_friction", repeat_contact_days=7), 7)

    assert [reasons(a) for a in alerts] == [[("repeat_contact", 1.0, 7.0)]]


# -- feedback -------------------------------------------------------------------------------

FEEDBACK = only("feedback")


@pytest.mark.parametrize(
    ("answer", "severity", "expected"),
    [
        pytest.param(("nps", 5), "warning", [("nps_detractor", 5, 6.0)], id="nps-5-detractor"),
        pytest.param(("nps", 2), "critical", [("nps_detractor", 2, 6.0)], id="nps-2-critical"),
        pytest.param(("csat", 2), "warning", [("csat_low", 2, 2.0)], id="csat-2"),
        pytest.param(("ces", 6), "warning", [("ces_high", 6, 5.0)], id="ces-6"),
        pytest.param(("nps", 7), None, [], id="nps-7-passive"),
        pytest.param(("csat", 3), None, [], id="csat-3"),
        pytest.param(("ces", 4), None, [], id="ces-4"),
    ],
)
def test_a_poor_survey_answer_raises_feedback(
    answer: tuple[str, int], severity: str | None, expected: list[Any]
) -> None:
    name, score = answer

    alerts = alerts_of([survey("c", 0, 9, survey=name, score=score)], FEEDBACK, 2)

    if severity is None:
        assert alerts == []
    else:
        assert story(alerts) == [("feedback", "raised", severity, at(0, 9), 0)]
        assert reasons(alerts[0]) == expected


def test_an_nps_that_falls_then_turns_critical_then_recovers() -> None:
    events = [nps(0, 9), nps(3, 5), nps(5, 2), nps(8, 9)]

    alerts = alerts_of(events, FEEDBACK, 10)

    assert story(alerts) == [
        ("feedback", "raised", "warning", at(3, 9), 0),
        ("feedback", "escalated", "critical", at(5, 9), 1),
        ("feedback", "resolved", "info", at(8, 9), 2),
    ]
    assert reasons(alerts[0]) == [("nps_detractor", 5, 6.0), ("nps_fell", -4, -3.0)]
    assert reasons(alerts[1]) == [("nps_detractor", 2, 6.0), ("nps_fell", -3, -3.0)]
    assert reasons(alerts[2])[0][0] == "recovered"


@pytest.mark.parametrize(
    ("bad", "good"),
    [(("csat", 2), ("csat", 4)), (("ces", 6), ("ces", 2)), (("nps", 4), ("nps", 8))],
)
def test_a_later_good_answer_to_the_same_survey_resolves(
    bad: tuple[str, int], good: tuple[str, int]
) -> None:
    events = [
        survey("c", 0, 9, survey=bad[0], score=bad[1]),
        survey("c", 3, 9, survey=good[0], score=good[1]),
    ]

    alerts = alerts_of(events, FEEDBACK, 5)

    assert [(a.state, a.decided_at) for a in alerts] == [
        ("raised", at(0, 9)),
        ("resolved", at(3, 9)),
    ]


# -- at risk: the health score --------------------------------------------------------------

AT_RISK = only("at_risk", **FEEDBACK_ONLY)


def test_at_risk_enters_below_40_escalates_below_25_and_exits_above_55() -> None:
    # With feedback the only weighted input, health = 10 x the NPS answer.
    events = [nps(0, 8), nps(1, 3), nps(2, 5), nps(3, 2), nps(4, 5), nps(5, 6)]

    alerts = alerts_of(events, AT_RISK, 7)

    assert story(alerts) == [
        ("at_risk", "raised", "warning", at(1, 9), 0),  # 30 < 40
        # day 2: 50 is above 40 but below 55: stays open
        ("at_risk", "escalated", "critical", at(3, 9), 1),  # 20 < 25
        # day 4: 50 again: still open
        ("at_risk", "resolved", "info", at(5, 9), 2),  # 60 >= 55
    ]
    assert [a.health_score for a in alerts] == [30.0, 20.0, 60.0]
    assert reasons(alerts[0])[0] == ("feedback_risk", 0.7, None)
    assert reasons(alerts[0])[-1] == ("health_score", 30.0, 40.0)


def test_a_score_between_the_bands_does_not_raise() -> None:
    assert alerts_of([nps(0, 8), nps(1, 5), nps(2, 4)], AT_RISK, 4) == []


# -- score drop -----------------------------------------------------------------------------

SCORE_DROP = only("score_drop", **FEEDBACK_ONLY)


def test_a_fall_of_25_points_within_14_days_raises_score_drop() -> None:
    events = [nps(0, 10), nps(15, 10), nps(16, 7), nps(17, 4), nps(18, 10)]

    alerts = alerts_of(events, SCORE_DROP, 20)

    assert story(alerts) == [
        ("score_drop", "raised", "warning", at(16, 9), 0),  # 100 -> 70
        ("score_drop", "escalated", "critical", at(17, 9), 1),  # 100 -> 40: twice the line
        ("score_drop", "resolved", "info", at(18, 9), 2),
    ]
    assert reasons(alerts[0]) == [("score_drop_points", 30.0, 25.0)]
    assert reasons(alerts[1]) == [("score_drop_points", 60.0, 25.0)]


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([nps(0, 10), nps(3, 6)], id="before-14-days-of-history"),
        pytest.param([nps(0, 10), nps(15, 10), nps(31, 6)], id="fall-spread-over-16-days"),
        pytest.param([nps(0, 10), nps(15, 10), nps(16, 8)], id="fall-of-20-points"),
    ],
)
def test_no_score_drop(events: list[Event]) -> None:
    assert alerts_of(events, SCORE_DROP, 33) == []
