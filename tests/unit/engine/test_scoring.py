"""The health score (weighted risks, renormalised over the inputs present) and BG/NBD P(alive)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxstream.engine.config import DAY_SECONDS, WEIGHT_NAMES, Profile
from cxstream.engine.scoring import health
from cxstream.engine.signals import p_alive
from cxstream.engine.state import CustomerState

WEIGHTS = (
    Profile().weights
)  # inactivity .30, decay .20, email .10, support .15, feedback .15, alive .10


def inputs(**risks: float) -> dict[str, tuple[float, str]]:
    return {name: (risk, f"{name} sentence") for name, risk in risks.items()}


@pytest.mark.parametrize(
    ("risks", "expected"),
    [
        pytest.param({}, 100.0, id="no-inputs-is-healthy"),
        pytest.param({"inactivity": 0.0, "feedback": 0.0}, 100.0, id="no-risk"),
        pytest.param({name: 1.0 for name in WEIGHT_NAMES}, 0.0, id="every-input-at-full-risk"),
        pytest.param({"inactivity": 0.5}, 50.0, id="one-input-alone-carries-all-the-weight"),
        pytest.param({"feedback": 0.5}, 50.0, id="whichever-input-it-is"),
        pytest.param(
            {"inactivity": 1.0, "feedback": 0.0}, 33.3, id="renormalised-over-present-inputs"
        ),
        pytest.param(
            {
                "inactivity": 1.0,
                "decay": 1.0,
                "email": 0.0,
                "support": 0.0,
                "feedback": 0.0,
                "alive": 0.0,
            },
            50.0,
            id="all-present-weights-as-configured",
        ),
        pytest.param({"inactivity": 0.5, "unknown": 1.0}, 50.0, id="an-unknown-input-is-ignored"),
        pytest.param({"inactivity": 1 / 3}, 66.7, id="rounded-to-one-decimal"),
    ],
)
def test_health_is_100_minus_the_weighted_mean_risk_of_the_inputs_present(
    risks: dict[str, float], expected: float
) -> None:
    assert health(inputs(**risks), WEIGHTS) == expected


def test_an_input_with_zero_weight_does_not_count() -> None:
    weights = {**WEIGHTS, "support": 0.0}

    assert health(inputs(support=1.0), weights) == 100.0
    assert health(inputs(support=1.0, feedback=0.2), weights) == 80.0


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(WEIGHT_NAMES), st.floats(0.0, 1.0)),
    st.fixed_dictionaries({name: st.floats(0.0, 10.0) for name in WEIGHT_NAMES}),
)
def test_health_is_between_0_and_100(risks: dict[str, float], weights: dict[str, float]) -> None:
    assert 0.0 <= health(inputs(**risks), weights) <= 100.0


# -- BG/NBD probability alive ---------------------------------------------------------------

PROFILE = Profile()


def customer(first_day: int, last_day: int, active_days: int) -> CustomerState:
    return CustomerState(
        "c", first_active_day=first_day, last_active_day=last_day, active_days=active_days
    )


def test_p_alive_is_unknown_without_any_activity() -> None:
    assert p_alive(CustomerState("c"), 0.0, PROFILE) is None


@pytest.mark.parametrize("days_later", [0, 1, 30, 365])
def test_p_alive_is_1_for_a_customer_seen_on_a_single_day(days_later: int) -> None:
    assert p_alive(customer(0, 0, 1), days_later * DAY_SECONDS, PROFILE) == 1.0


def test_a_frequent_customer_who_goes_quiet_is_less_likely_alive_than_an_occasional_one() -> None:
    # Both last seen on day 40, looked at on day 70.
    frequent = p_alive(customer(0, 40, 20), 70 * DAY_SECONDS, PROFILE)
    occasional = p_alive(customer(0, 40, 2), 70 * DAY_SECONDS, PROFILE)

    assert frequent is not None and occasional is not None
    assert frequent < 0.01 < 0.5 < occasional


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 400),
    st.integers(0, 400),
    st.integers(2, 400),
    st.lists(st.floats(0.0, 3_000.0), min_size=2, max_size=6),
)
def test_p_alive_decreases_with_absence_and_stays_a_probability(
    first: int, span: int, active_days: int, offsets: list[float]
) -> None:
    st_ = customer(first, first + span, min(active_days, span + 1))
    last_seen_end = (first + span + 1) * DAY_SECONDS
    values = [p_alive(st_, last_seen_end + d * DAY_SECONDS, PROFILE) for d in sorted(offsets)]

    assert all(v is not None and 0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values, reverse=True)  # type: ignore[type-var]
