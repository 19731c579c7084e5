"""Alert episodes: one open episode per kind, escalation, resolution, cooldown, the cap, cancel.

The transitions table drives ``episodes.transition`` alone; the stories below run
through replay with a ``clock`` customer moving stream time, as in test_signals.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cxstream.engine.alerts import Alert, Reason, alert_id
from cxstream.engine.config import DAY_SECONDS, EngineConfig, Profile
from cxstream.engine.engine import Engine
from cxstream.engine.episodes import transition
from cxstream.engine.events import Event
from cxstream.engine.replayer import Replayer
from cxstream.engine.signals import Observation
from cxstream.engine.state import CustomerState, Episode
from tests.factories import (
    at,
    by_customer,
    by_time,
    cancelled,
    converted,
    daily,
    login,
    only,
    reasons,
    renewed,
    reopened,
    story,
    survey,
    ticket,
    trial_started,
    unsubscribed,
)

T = at(10)
WHY = (Reason("x", 1.0, 1.0, "because"),)


def state(
    episode: str | None = None,
    cooldown_until: float | None = None,
    raises: tuple[float, ...] = (),
    cancelled_at: float | None = None,
) -> CustomerState:
    st = CustomerState("c", raises=list(raises), cancelled_at=cancelled_at)
    if episode is not None:
        st.episodes["feedback"] = Episode(at(5), 0, episode)
    if cooldown_until is not None:
        st.cooldown["feedback"] = cooldown_until
    return st


@pytest.mark.parametrize(
    ("st", "observed", "expected", "suppressed"),
    [
        pytest.param(state(), (False, "warning"), None, False, id="nothing-to-raise"),
        pytest.param(state(), (True, "warning"), ("raised", "warning", 0), False, id="raise"),
        pytest.param(
            state(), (True, "critical"), ("raised", "critical", 0), False, id="raise-critical"
        ),
        pytest.param(state("warning"), (True, "warning"), None, False, id="stays-open"),
        pytest.param(
            state("warning"),
            (True, "critical"),
            ("escalated", "critical", 1),
            False,
            id="escalate",
        ),
        pytest.param(state("critical"), (True, "warning"), None, False, id="never-de-escalates"),
        pytest.param(
            state("critical"), (False, "warning"), ("resolved", "info", 1), False, id="resolve"
        ),
        pytest.param(state(cooldown_until=T + 1), (True, "warning"), None, True, id="cooling-down"),
        pytest.param(
            state(cooldown_until=T),
            (True, "warning"),
            ("raised", "warning", 0),
            False,
            id="cooldown-just-over",
        ),
        pytest.param(
            state(raises=(at(-19), at(0), at(5), at(9))),
            (True, "warning"),
            None,
            True,
            id="cap-of-4-in-30-days",
        ),
        pytest.param(
            state(raises=(at(-20), at(0), at(5), at(9))),
            (True, "warning"),
            ("raised", "warning", 0),
            False,
            id="oldest-raise-30-days-ago-no-longer-counts",
        ),
        pytest.param(
            state(cancelled_at=at(8)), (True, "critical"), None, False, id="cancelled-customer"
        ),
    ],
)
def test_transitions(
    st: CustomerState,
    observed: tuple[bool, str],
    expected: tuple[str, str, int] | None,
    suppressed: bool,
) -> None:
    was_open = "feedback" in st.episodes

    alert, held_back = transition(st, "feedback", Observation(*observed, WHY), T, 50.0, Profile())

    assert held_back == suppressed
    if expected is None:
        assert alert is None
        return
    assert alert is not None
    assert (alert.state, alert.severity, alert.seq) == expected
    started = at(5) if was_open else T
    assert alert.alert_id == alert_id("c", "feedback", started)
    assert (alert.decided_at, alert.health_score) == (T, 50.0)
    if alert.state == "resolved":
        assert "feedback" not in st.episodes
        assert st.cooldown["feedback"] == T + 7 * DAY_SECONDS
        assert [(r.code, r.value, r.threshold) for r in alert.reasons] == [("recovered", 1.0, 1.0)]
    else:
        assert st.episodes["feedback"].severity == observed[1]


# -- stories --------------------------------------------------------------------------------


def run(events: list[Event], config: EngineConfig, until: int) -> tuple[list[Alert], Engine]:
    """``c``'s alerts, and the engine (for its suppressed count), with a clock to ``until``."""
    engine = Engine(config)
    result = Replayer(engine).run(by_time([*events, *daily("clock", 0, until, hour=8)]))
    assert result.late == 0
    return by_customer(result.alerts, "c"), engine


def nps(day: float, score: int) -> Event:
    return survey("c", day, 9, survey="nps", score=score)


@pytest.mark.parametrize(
    ("cooldown_days", "second_raise"),
    [
        # Cooling down until day 8: the detractor of day 3 and the login of day 6 are held
        # back; the next evaluation after the cooldown, the login of day 9, raises it.
        pytest.param(7.0, at(9, 9), id="default-7-days"),
        pytest.param(0.0, at(3, 9), id="no-cooldown"),
    ],
)
def test_a_condition_back_within_the_cooldown_is_raised_only_after_it(
    cooldown_days: float, second_raise: float
) -> None:
    events = [nps(0, 2), nps(1, 9), nps(3, 2), login("c", 6, 9), login("c", 9, 9)]

    alerts, engine = run(events, only("feedback", cooldown_days=cooldown_days), 10)

    assert [(a.state, a.decided_at) for a in alerts] == [
        ("raised", at(0, 9)),
        ("resolved", at(1, 9)),
        ("raised", second_raise),
    ]
    assert alerts[2].alert_id == alert_id("c", "feedback", second_raise) != alerts[0].alert_id
    assert (engine.suppressed > 0) == (cooldown_days > 0)


def test_at_most_4_raises_in_30_days() -> None:
    # A detractor every other day, a promoter in between, no cooldown: raised on days 0, 2,
    # 4 and 6, then held back until the raise of day 0 is 30 days old (day 30, 09:00).
    events = [nps(d, 2 if d % 2 == 0 else 9) for d in range(40)]

    alerts, engine = run(events, only("feedback", cooldown_days=0), 41)

    raised = [a.decided_at for a in alerts if a.state == "raised"]
    assert raised == [at(d, 9) for d in (0, 2, 4, 6, 30, 32, 34, 36)]
    # Held back: the detractors of days 8..28, and of day 38 (4 raises since day 8 again).
    assert engine.suppressed == len([*range(8, 30, 2), 38])


def test_the_cap_counts_raises_of_every_kind() -> None:
    events = [nps(0, 2), nps(1, 9), nps(2, 2), unsubscribed("c", 3, 9), login("c", 31, 9)]
    config = only("feedback", "email_disengagement", cooldown_days=0, max_raises_per_30d=2)

    alerts, _ = run(events, config, 32)

    assert [(a.kind, a.state, a.decided_at) for a in alerts] == [
        ("feedback", "raised", at(0, 9)),
        ("feedback", "resolved", at(1, 9)),
        ("feedback", "raised", at(2, 9)),
        # The unsubscribe of day 3 is held back while two raises are in the last 30 days.
        ("email_disengagement", "raised", at(31, 9)),
    ]


# -- cancellation ---------------------------------------------------------------------------

BOTH = only("feedback", "support_friction")
BEFORE_CANCEL = [nps(0, 2), ticket("c", 0, 10, ticket_id="t1"), reopened("c", 1, 9, ticket_id="t1")]
AFTER_CANCEL = [nps(3, 0), reopened("c", 4, 9, ticket_id="t1")]


def test_a_cancellation_closes_every_open_episode_and_nothing_is_raised_after_it() -> None:
    events = [*BEFORE_CANCEL, cancelled("c", 2, 9), *AFTER_CANCEL]

    alerts, _ = run(events, BOTH, 40)

    assert story(alerts) == [
        ("feedback", "raised", "critical", at(0, 9), 0),
        ("support_friction", "raised", "warning", at(1, 9), 0),
        ("feedback", "resolved", "info", at(2, 9), 1),
        ("support_friction", "resolved", "info", at(2, 9), 1),
    ]
    assert [reasons(a) for a in alerts[2:]] == [[("subscription_cancelled", None, None)]] * 2
    assert alerts[2].alert_id == alerts[0].alert_id == alert_id("c", "feedback", at(0, 9))
    assert alerts[3].alert_id == alerts[1].alert_id


@pytest.mark.parametrize("comeback", [renewed, converted, trial_started])
def test_raising_starts_again_when_the_customer_subscribes_again(
    comeback: Callable[..., Event],
) -> None:
    events = [*BEFORE_CANCEL, cancelled("c", 2, 9), *AFTER_CANCEL, comeback("c", 12, 9)]

    alerts, _ = run(events, BOTH, 14)

    assert story(alerts)[4:] == [
        ("feedback", "raised", "critical", at(12, 9), 0),
        ("support_friction", "raised", "critical", at(12, 9), 0),
    ]
    assert reasons(alerts[4]) == [("nps_detractor", 0, 6.0)]
    assert [code for code, _, _ in reasons(alerts[5])] == ["ticket_reopened", "ticket_overdue"]


# -- per-segment alert kinds ----------------------------------------------------------------


def test_a_segment_profile_can_restrict_the_alert_kinds_it_publishes() -> None:
    config = EngineConfig(
        profile=Profile(alert_kinds=("inactivity", "feedback")),
        segments={"feedback-only": Profile(alert_kinds=("feedback",))},
    )
    events = by_time(
        [
            login("a", 0, 9, segment="feedback-only"),
            survey("a", 1, 9, survey="nps", score=2, segment="feedback-only"),
            login("b", 0, 9),
            survey("b", 1, 9, survey="nps", score=2),
            *daily("clock", 0, 30, hour=8),
        ]
    )

    alerts = Replayer(Engine(config)).run(events).alerts

    assert {a.kind for a in by_customer(alerts, "a")} == {"feedback"}
    assert {a.kind for a in by_customer(alerts, "b")} == {"feedback", "inactivity"}
    assert {a.segment for a in by_customer(alerts, "a")} == {"feedback-only"}
