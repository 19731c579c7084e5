"""Golden stories of the inactivity alert, told through replay as the worker would see them.

These stories run on ``FIXED_INACTIVITY``, a profile that reproduces the old fixed
rule: raised 14 days after the last activity (warning, ``inactive_days``), escalated
at 28 (critical), resolved (info, ``recovered``) at the first activity after that.
The personalised line is in ``test_signals.py``.

A busy ``clock`` customer logs in every morning at 08:00 and so moves the
partition's stream time; the customer under test sends only what the story says.
"""

from __future__ import annotations

import pytest

from cxstream.engine.alerts import Alert, alert_id
from cxstream.engine.config import EngineConfig, Profile
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.replayer import Replayer, ReplayResult
from tests.factories import (
    DAY,
    FIXED_INACTIVITY,
    at,
    bounced,
    by_customer,
    by_time,
    clicked,
    daily,
    event,
    fixed_inactivity,
    login,
    opened,
    reasons,
    sent,
    ticket,
)
from tests.factories import replay as replay_with

KIND = "inactivity"
# Engine bug (see the report): an activity exactly at the deadline is applied after the
# deadline is evaluated, so the episode is raised and resolved at the same instant.
CONFIG = fixed_inactivity()
LATENESS = CONFIG.allowed_lateness_seconds
LAST_SEEN = at(0, 9)  # the silent customer's only login
DEADLINE = LAST_SEEN + 14 * DAY
ESCALATION = LAST_SEEN + 28 * DAY


def clock(last_day: int, first_day: int = 0) -> list[Event]:
    """Another customer of the partition, logging in daily at 08:00: stream time moves."""
    return daily("clock", first_day, last_day, hour=8)


def story(*quiet_events: Event, clock_until: int = 45) -> list[Event]:
    """The silent customer logs in once on day 0 at 09:00, then only ``quiet_events``."""
    return by_time([login("quiet", 0, 9), *quiet_events, *clock(clock_until)])


def replay(events: list[Event], config: EngineConfig = CONFIG) -> ReplayResult:
    return replay_with(events, config)


def transitions(alerts: list[Alert]) -> list[tuple[str, str, float, int]]:
    return [(a.state, a.severity, a.decided_at, a.seq) for a in alerts]


def feed_one_by_one(events: list[Event]) -> list[tuple[Event, list[Alert]]]:
    """Which input event made the partition decide which alerts."""
    replayer = Replayer(Engine(CONFIG))
    return [(e, replayer.feed(e)) for e in events]


# -- customers who stay active ------------------------------------------------------------


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(daily("loyal", 0, 60), id="daily-login-alone"),
        pytest.param(
            by_time(daily("loyal", 0, 60, hour=9) + clock(60)), id="daily-login-with-others"
        ),
        pytest.param(
            by_time(daily("loyal", 0, 60, hour=9, builder=opened) + clock(60)),
            id="daily-email-open",
        ),
        pytest.param(
            by_time([login("loyal", d, 9) for d in range(0, 61, 13)] + clock(60)),
            id="login-every-13-days",
        ),
        pytest.param(
            by_time([login("loyal", d, 9) for d in range(0, 61, 14)] + clock(60)),
            id="login-exactly-every-14-days",
        ),
    ],
)
def test_a_customer_who_keeps_logging_in_is_never_alerted(events: list[Event]) -> None:
    result = replay(events)

    assert by_customer(result.alerts, "loyal") == []
    assert result.late == 0


def test_a_customer_first_seen_mid_stream_is_not_alerted_for_the_time_before_they_existed() -> None:
    # The partition's watermark is already set by another customer when "newbie"
    # shows up: the newcomer was not inactive for 14 days before their first event.
    result = replay([login("clock", 0, 8), login("newbie", 0, 9), login("clock", 1, 8)])

    assert by_customer(result.alerts, "newbie") == []


# -- the silent customer ------------------------------------------------------------------


def test_silent_customer_is_raised_at_the_deadline_not_when_noticed() -> None:
    fed = feed_one_by_one(story(clock_until=20))

    raising = [(e, a) for e, alerts in fed for a in alerts if a.customer_id == "quiet"]
    assert len(raising) == 1
    noticed_by, raised = raising[0]
    assert noticed_by.customer_id == "clock"  # the silent customer sent nothing
    assert noticed_by.occurred_at == at(15, 8)  # first clock event with watermark >= deadline
    assert raised.decided_at == DEADLINE
    assert raised.state == "raised"
    assert raised.severity == "warning"
    assert raised.seq == 0
    assert raised.kind == KIND
    assert reasons(raised) == [("inactive_days", 14, 14)]
    assert raised.reasons[0].message.startswith("No login or email open for 14.0 days")


@pytest.mark.parametrize(
    ("clock_at", "raised"),
    [
        pytest.param(DEADLINE + LATENESS - 1, False, id="watermark-one-second-short"),
        pytest.param(DEADLINE + LATENESS, False, id="watermark-at-deadline"),
        pytest.param(DEADLINE + LATENESS + 1, True, id="watermark-past-deadline"),
    ],
)
def test_silent_customer_is_raised_once_other_customers_move_the_watermark_past_the_deadline(
    clock_at: float, raised: bool
) -> None:
    events = [login("quiet", 0, 9), *clock(13), event("login", "clock", 0, second=clock_at - at(0))]

    result = replay(events)

    assert [a.state for a in by_customer(result.alerts, "quiet")] == (["raised"] if raised else [])


def test_silent_customer_escalates_at_28_days_in_the_same_episode() -> None:
    alerts = by_customer(replay(story(clock_until=40)).alerts, "quiet")

    assert transitions(alerts) == [
        ("raised", "warning", DEADLINE, 0),
        ("escalated", "critical", ESCALATION, 1),
    ]
    assert alerts[0].alert_id == alerts[1].alert_id
    # The threshold stays the customer's line (14); the escalation is at 2 x line.
    assert reasons(alerts[1]) == [("inactive_days", 28, 14)]


def test_silent_customer_is_raised_exactly_once_however_long_the_silence() -> None:
    alerts = by_customer(replay(story(clock_until=120)).alerts, "quiet")

    assert [a.state for a in alerts] == ["raised", "escalated"]


@pytest.mark.parametrize(
    ("comeback", "expected"),
    [
        pytest.param(login("quiet", 10, 12), [], id="back-before-deadline"),
        pytest.param(
            login("quiet", 14, 9),
            [],
            id="back-exactly-at-deadline",
        ),
        pytest.param(
            event("login", "quiet", 14, 9, second=1),
            [
                ("raised", "warning", DEADLINE, 0),
                ("resolved", "info", DEADLINE + 1, 1),
            ],
            id="back-one-second-late",
        ),
        pytest.param(
            login("quiet", 20, 12),
            [("raised", "warning", DEADLINE, 0), ("resolved", "info", at(20, 12), 1)],
            id="back-after-warning",
        ),
        pytest.param(
            opened("quiet", 20, 12),
            [("raised", "warning", DEADLINE, 0), ("resolved", "info", at(20, 12), 1)],
            id="back-by-email-open",
        ),
        pytest.param(
            login("quiet", 35, 12),
            [
                ("raised", "warning", DEADLINE, 0),
                ("escalated", "critical", ESCALATION, 1),
                ("resolved", "info", at(35, 12), 2),
            ],
            id="back-after-escalation",
        ),
    ],
)
def test_silent_customer_story(
    comeback: Event, expected: list[tuple[str, str, float, int]]
) -> None:
    # After the comeback the customer stays: a daily login until the clock stops.
    comeback_day = int((comeback.occurred_at - at(0)) // DAY)
    stays = daily("quiet", comeback_day + 1, 45, hour=9)

    alerts = by_customer(replay(story(comeback, *stays)).alerts, "quiet")

    assert transitions(alerts) == expected
    assert {a.alert_id for a in alerts} <= {alert_id("quiet", KIND, DEADLINE)}
    if expected and expected[-1][0] == "resolved":
        # The value is the inactivity observed when the episode closed: none, just back.
        assert reasons(alerts[-1]) == [("recovered", 0.0, 14)]
        assert alerts[-1].reasons[0].message.startswith("Recovered: No login or email open")


def test_resolution_is_decided_only_once_the_watermark_passes_the_returning_activity() -> None:
    back = at(35, 12)
    events = [login("quiet", 0, 9), *clock(35), login("quiet", 35, 12)]
    replayer = Replayer(Engine(CONFIG))
    replayer.run(events)
    assert [a.state for a in by_customer(replayer.result.alerts, "quiet")] == [
        "raised",
        "escalated",
    ]

    # Stream time reaches the comeback, but the watermark (stream time - lateness) does not yet:
    # an earlier activity could still arrive and would be the real end of the silence.
    not_yet = replayer.feed(event("login", "clock", 0, second=back + LATENESS - at(0)))
    now = replayer.feed(event("login", "clock", 0, second=back + LATENESS + 1 - at(0)))

    assert by_customer(not_yet, "quiet") == []
    assert transitions(by_customer(now, "quiet")) == [("resolved", "info", back, 2)]


def test_the_earliest_activity_within_lateness_resolves_whatever_the_arrival_order() -> None:
    later, earlier = login("quiet", 20, 12, minute=4), login("quiet", 20, 12)
    events = [login("quiet", 0, 9), *clock(20), later, earlier, *clock(22, first_day=21)]

    alerts = by_customer(replay(events).alerts, "quiet")

    assert transitions(alerts) == [
        ("raised", "warning", DEADLINE, 0),
        ("resolved", "info", at(20, 12), 1),
    ]


# -- alert identity -----------------------------------------------------------------------


def test_the_same_episode_gets_the_same_alert_id_across_separate_replays() -> None:
    events = story(login("quiet", 35, 12))

    first = replay(events).alerts
    second = replay(events).alerts

    assert [a.to_dict() for a in first] == [a.to_dict() for a in second]
    quiet_ids = {a.alert_id for a in by_customer(first, "quiet")}
    assert quiet_ids == {alert_id("quiet", KIND, DEADLINE)}


def test_a_later_episode_of_the_same_customer_gets_a_different_alert_id() -> None:
    # Silent from day 0, back on day 20, silent again: a second episode from day 34.
    events = story(login("quiet", 20, 9), clock_until=40)

    alerts = by_customer(replay(events).alerts, "quiet")

    assert transitions(alerts) == [
        ("raised", "warning", DEADLINE, 0),
        ("resolved", "info", at(20, 9), 1),
        ("raised", "warning", at(34, 9), 0),
    ]
    assert alerts[0].alert_id == alerts[1].alert_id != alerts[2].alert_id
    assert alerts[2].alert_id == alert_id("quiet", KIND, at(34, 9))


# -- what counts as activity --------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_day_10", "counts"),
    [
        pytest.param(login("c", 10, 9), True, id="login"),
        pytest.param(opened("c", 10, 9), True, id="email.opened"),
        pytest.param(clicked("c", 10, 9), True, id="email.clicked"),
        pytest.param(sent("c", 10, 9), False, id="email.sent"),
        pytest.param(bounced("c", 10, 9), False, id="email.bounced"),
        pytest.param(ticket("c", 10, 9, ticket_id="t1"), False, id="ticket.opened"),
        pytest.param(
            event("ticket.resolved", "c", 10, 9, ticket_id="t1"), False, id="ticket.resolved"
        ),
        pytest.param(
            event("survey.response", "c", 10, 9, survey="nps", score=9), False, id="survey"
        ),
        pytest.param(event("subscription.renewed", "c", 10, 9), False, id="renewal"),
    ],
)
def test_only_logins_and_email_engagement_count_as_activity(on_day_10: Event, counts: bool) -> None:
    events = by_time([login("c", 0, 9), on_day_10, *clock(30)])

    raised = [a for a in by_customer(replay(events).alerts, "c") if a.state == "raised"]

    assert [a.decided_at for a in raised] == [at(24, 9) if counts else at(14, 9)]


def test_a_brand_new_customer_who_is_only_sent_emails_is_raised_14_days_after_first_seen() -> None:
    emails = [sent("newbie", d, 10, message_id=f"m{d}") for d in range(3, 40, 3)]
    events = by_time([*emails, *clock(45)])

    alerts = by_customer(replay(events).alerts, "newbie")

    assert transitions(alerts) == [
        ("raised", "warning", at(17, 10), 0),
        ("escalated", "critical", at(31, 10), 1),
    ]
    assert "first seen" in alerts[0].reasons[0].message


# -- per-segment profiles -----------------------------------------------------------------


def fixed(days: float, escalate_days: float) -> Profile:
    return FIXED_INACTIVITY.merged(
        {
            "inactivity_min_days": days,
            "inactivity_max_days": days,
            "escalate_factor": escalate_days / days,
        }
    )


SEGMENT_PROFILES = {"enterprise": fixed(7, 10), "smb": fixed(21, 35)}


@pytest.mark.parametrize(
    ("segment", "days", "escalate_days"),
    [
        pytest.param("enterprise", 7, 10, id="enterprise"),
        pytest.param("smb", 21, 35, id="smb"),
        pytest.param("free", 14, 28, id="segment-without-a-rule"),
        pytest.param(None, 14, 28, id="no-segment"),
    ],
)
def test_each_segment_is_judged_by_its_own_inactivity_rule(
    segment: str | None, days: float, escalate_days: float
) -> None:
    config = fixed_inactivity(segments=SEGMENT_PROFILES)
    events = by_time([login("quiet", 0, 9, segment=segment), *clock(50)])

    alerts = by_customer(replay(events, config).alerts, "quiet")

    assert transitions(alerts) == [
        ("raised", "warning", LAST_SEEN + days * DAY, 0),
        ("escalated", "critical", LAST_SEEN + escalate_days * DAY, 1),
    ]
    assert [(a.reasons[0].value, a.reasons[0].threshold) for a in alerts] == [
        (days, days),
        (escalate_days, days),
    ]
    assert {a.segment for a in alerts} == {segment}
