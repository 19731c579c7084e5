"""Rolling CX metrics by event-time window: counted as each event settles, summed across partitions.

Metric deltas are emitted when the watermark passes an event (in event-time
order), so every story ends with a ``settle`` event of another customer, long
after the rest: it moves the watermark past everything and counts nothing itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from cxstream.engine.config import EngineConfig
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.metrics import MetricBook, MetricDelta, MetricUpdate, window_of
from cxstream.engine.partition import PartitionProcessor, StreamClock
from cxstream.engine.state import DictStore
from tests.factories import (
    DAY,
    HOUR,
    at,
    bounced,
    by_time,
    cancelled,
    clicked,
    converted,
    event,
    login,
    metric_values,
    opened,
    replay,
    sent,
    survey,
    ticket,
    trial_started,
)

WINDOWS = EngineConfig(metric_windows_seconds=(3_600, 86_400), rolling_windows_days=())
ROLLING = EngineConfig(metric_windows_seconds=(3_600, 86_400), rolling_windows_days=(7, 28))


def settled(events: list[Event], day: float = 60) -> list[Event]:
    """``events`` then one event of another customer that moves the watermark past them all."""
    return [*events, login("zz-settle", day)]


def values_of(
    events: list[Event], config: EngineConfig = WINDOWS
) -> dict[tuple[str, str | None, float, float], tuple[float | None, int]]:
    return metric_values(replay(settled(events), config).metrics)


def value(
    events: list[Event], metric: str, segment: str | None, start: float, seconds: float
) -> tuple[float | None, int]:
    """(value, sample_size) of one window after replaying ``events``; (0, 0) if none counted."""
    return values_of(events).get((metric, segment, start, start + seconds), (0.0, 0))


# -- active customers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "window", "expected"),
    [
        pytest.param(
            [login("c", 0, 9, m) for m in (0, 10, 20, 30, 59)],
            (at(0, 9), HOUR),
            1,
            id="five-logins-in-one-hour-count-once",
        ),
        pytest.param(
            [login("c", 0, 9, 10), login("c", 0, 10, 10)],
            (at(0, 9), HOUR),
            1,
            id="first-of-two-hours",
        ),
        pytest.param(
            [login("c", 0, 9, 10), login("c", 0, 10, 10)],
            (at(0, 10), HOUR),
            1,
            id="second-of-two-hours",
        ),
        pytest.param(
            [login("c", 0, 9, 10), login("c", 0, 10, 10)], (at(0), DAY), 1, id="two-hours-one-day"
        ),
        pytest.param(
            [login("a", 0, 9), login("b", 0, 9, 30), login("a", 0, 9, 45)],
            (at(0, 9), HOUR),
            2,
            id="two-customers",
        ),
        pytest.param(
            [login("c", 0, 9), opened("c", 0, 9, 5), clicked("c", 0, 9, 6)],
            (at(0, 9), HOUR),
            1,
            id="login-open-and-click-are-one-active-customer",
        ),
        pytest.param(
            [sent("c", 0, 9), ticket("c", 0, 9, 5, ticket_id="t")],
            (at(0, 9), HOUR),
            0,
            id="emails-sent-and-tickets-are-not-activity",
        ),
        pytest.param(
            [login("c", 0, 23, 59), login("c", 1, 0, 1)],
            (at(1), DAY),
            1,
            id="next-day-counts-again",
        ),
    ],
)
def test_active_customers_is_a_distinct_count_per_window(
    events: list[Event], window: tuple[float, float], expected: int
) -> None:
    start, seconds = window

    assert value(events, "active_customers", None, start, seconds) == (expected, expected)


def test_active_customers_is_counted_per_segment_and_overall() -> None:
    events = [
        login("a", 0, 9, segment="pro"),
        login("b", 0, 9, 10, segment="pro"),
        login("c", 0, 9, 20, segment="free"),
        login("d", 0, 9, 30),  # no segment: counted overall only
        login("a", 0, 9, 40, segment="pro"),
    ]

    values = values_of(events)
    hourly = {
        seg: v
        for (m, seg, start, _), v in values.items()
        if m == "active_customers" and start == at(0, 9)
    }

    assert hourly == {None: (4, 4), "pro": (2, 2), "free": (1, 1)}


def test_a_customer_active_in_two_hours_counts_in_both() -> None:
    events = [login("c", 0, 9, m) for m in (0, 30)] + [login("c", 0, 10, m) for m in (0, 30)]

    values = values_of(events)

    assert {k: v for k, v in values.items() if k[0] == "active_customers"} == {
        ("active_customers", None, at(0, 9), at(0, 10)): (1, 1),
        ("active_customers", None, at(0, 10), at(0, 11)): (1, 1),
        ("active_customers", None, at(0), at(1)): (1, 1),
    }


def test_a_late_login_within_lateness_is_not_counted_twice() -> None:
    events = [login("c", 0, 9, 3), login("c", 0, 9, 1), login("c", 0, 9, 2)]

    assert value(events, "active_customers", None, at(0, 9), HOUR) == (1, 1)


# -- email open rate ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [*(sent("c", 0, 9, m, message_id=f"m{m}") for m in range(4)), opened("c", 0, 9, 30)],
            (0.25, 4),
            id="opened-over-sent",
        ),
        pytest.param(
            [
                *(sent("c", 0, 9, m, message_id=f"m{m}") for m in range(4)),
                bounced("c", 0, 9, 10),
                bounced("c", 0, 9, 11),
                opened("c", 0, 9, 30),
            ],
            (0.5, 2),
            id="bounces-are-not-delivered",
        ),
        pytest.param([opened("c", 0, 9, 30)], (None, 0), id="no-sends-is-undefined"),
        pytest.param(
            [sent("c", 0, 9), bounced("c", 0, 9, 1)], (None, 0), id="all-bounced-is-undefined"
        ),
        pytest.param(
            [sent("c", 0, 9), clicked("c", 0, 9, 1)], (0.0, 1), id="a-click-is-not-an-open"
        ),
    ],
)
def test_email_open_rate_is_opened_over_delivered(
    events: list[Event], expected: tuple[float | None, int]
) -> None:
    assert value(events, "email_open_rate", None, at(0, 9), HOUR) == expected


def test_email_open_rate_is_per_segment_and_overall() -> None:
    events = [
        sent("a", 0, 9, segment="pro"),
        opened("a", 0, 9, 5, segment="pro"),
        sent("b", 0, 9, 1, segment="free"),
        sent("b", 0, 9, 2, segment="free", message_id="m2"),
    ]

    values = values_of(events)

    assert values[("email_open_rate", "pro", at(0, 9), at(0, 10))] == (1.0, 1)
    assert values[("email_open_rate", "free", at(0, 9), at(0, 10))] == (0.0, 2)
    assert values[("email_open_rate", None, at(0, 9), at(0, 10))] == (pytest.approx(1 / 3), 3)


# -- the CX metrics of the brief ------------------------------------------------------------


def nps(customer_id: str, score: int, minute: int = 0) -> Event:
    return survey(customer_id, 0, 9, minute, survey="nps", score=score)


def answer(name: str, score: int, minute: int) -> Event:
    return survey("c", 0, 9, minute, survey=name, score=score)


def t(kind: str, customer_id: str, ticket_id: str, hour: float, **kw: Any) -> Event:
    return event(f"ticket.{kind}", customer_id, 0, hour, ticket_id=ticket_id, **kw)


@pytest.mark.parametrize(
    ("events", "metric", "expected"),
    [
        pytest.param(
            [nps("a", 10), nps("b", 9), nps("c", 7), nps("d", 3)],
            "nps",
            (25.0, 4),
            id="nps-is-promoters-minus-detractors",
        ),
        pytest.param([nps("a", 6), nps("b", 0)], "nps", (-100.0, 2), id="nps-of-only-detractors"),
        pytest.param([nps("a", 8)], "nps", (0.0, 1), id="a-passive-is-neither"),
        pytest.param(
            [answer("csat", s, m) for m, s in enumerate((5, 4, 3, 1))],
            "csat_pct",
            (50.0, 4),
            id="csat-is-share-of-4-and-5",
        ),
        pytest.param(
            [answer("ces", s, m) for m, s in enumerate((2, 5))],
            "ces_mean",
            (3.5, 2),
            id="ces-is-the-mean-score",
        ),
        pytest.param(
            [
                t("opened", "a", "t1", 9),
                t("replied", "a", "t1", 10),
                t("resolved", "a", "t1", 11),
                t("opened", "a", "t2", 12),
                t("replied", "a", "t2", 13),
                t("replied", "a", "t2", 14),
                t("resolved", "a", "t2", 15),
            ],
            "fcr_rate",
            (0.5, 2),
            id="fcr-is-at-most-one-reply-and-no-reopen",
        ),
        pytest.param(
            [
                t("opened", "a", "t1", 9),
                t("resolved", "a", "t1", 10),
                t("reopened", "a", "t1", 11),
                t("resolved", "a", "t1", 13),
            ],
            "fcr_rate",
            (0.0, 1),
            id="a-reopened-ticket-is-taken-back-out-of-fcr",
        ),
        pytest.param(
            [
                t("opened", "a", "t1", 9),
                t("resolved", "a", "t1", 10),
                t("reopened", "a", "t1", 11),
                t("resolved", "a", "t1", 13),
            ],
            "ttr_p50_seconds",
            (3_600.0, 1),
            id="ttr-runs-to-the-first-resolution",
        ),
        pytest.param(
            [
                t("opened", "a", "t1", 9, handle_seconds=300.0),
                t("replied", "a", "t1", 10, handle_seconds=100.0),
            ],
            "aht_seconds",
            (200.0, 2),
            id="aht-is-mean-handle-seconds",
        ),
        pytest.param(
            [
                trial_started("a", 0, 9),
                trial_started("b", 0, 9),
                converted("a", 0, 20),
            ],
            "trial_to_paid_rate",
            (0.5, 2),
            id="trial-to-paid-is-conversions-over-trials",
        ),
        pytest.param(
            [cancelled("a", 0, 9), cancelled("b", 0, 10)],
            "cancellations",
            (2.0, 2),
            id="cancellations-are-counted",
        ),
    ],
)
def test_each_cx_metric_follows_the_industry_definition(
    events: list[Event], metric: str, expected: tuple[float | None, int]
) -> None:
    values = values_of(by_time(events))

    assert values[(metric, None, at(0), at(1))] == expected


def test_a_conversion_is_credited_to_the_window_its_trial_started_in() -> None:
    events = [trial_started("a", 0, 9), converted("a", 3, 9)]

    values = values_of(events)

    assert values[("trial_to_paid_rate", None, at(0), at(1))] == (1.0, 1)
    assert ("trial_to_paid_rate", None, at(3), at(4)) not in values


def test_weekly_and_monthly_active_customers_are_rolling_windows_ending_each_day() -> None:
    events = [login("a", 0, 9), login("a", 1, 9), login("b", 1, 9)]

    values = values_of(events, ROLLING)

    week_ending_day_1 = ("active_customers", None, at(-5), at(2))
    week_ending_day_7 = ("active_customers", None, at(1), at(8))
    week_ending_day_8 = ("active_customers", None, at(2), at(9))
    assert values[week_ending_day_1] == (2.0, 2)
    assert values[week_ending_day_7] == (2.0, 2)
    assert week_ending_day_8 not in values  # nobody active in days 2..8
    assert values[("active_customers", None, at(-27), at(1))] == (1.0, 1)  # MAU ending day 0
    # Stickiness = DAU / MAU of that day.
    assert values[("stickiness", None, at(1), at(2))] == (1.0, 2)
    assert values[("stickiness", None, at(2), at(3))] == (0.0, 2)


# -- the book and its parts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "seconds", "start"),
    [
        (at(0, 9, 59, 59), 3_600, at(0, 9)),
        (at(0, 10), 3_600, at(0, 10)),
        (at(3, 23, 59), 86_400, at(3)),
        (0.0, 60, 0.0),
        (59.999, 60, 0.0),
    ],
)
def test_window_of_gives_the_start_of_the_tumbling_window(
    ts: float, seconds: int, start: float
) -> None:
    assert window_of(ts, seconds) == start


def test_metric_book_returns_each_windows_new_value_as_it_adds() -> None:
    book = MetricBook()

    first = book.add(MetricDelta("email_open_rate", None, 0.0, 3_600, 0.0, 2.0))
    second = book.add(MetricDelta("email_open_rate", None, 0.0, 3_600, 1.0, 0.0))

    assert first == [MetricUpdate("email_open_rate", None, 0.0, 3_600.0, 0.0, 2)]
    assert second == [MetricUpdate("email_open_rate", None, 0.0, 3_600.0, 0.5, 2)]
    assert book.latest() == second


def test_metric_update_key_and_wire_form() -> None:
    update = MetricUpdate("active_customers", None, at(0, 9), at(0, 10), 3.0, 3)

    assert update.key == "active_customers|*|2026-03-02T09:00:00.000Z|2026-03-02T10:00:00.000Z"
    assert update.to_dict() == {
        "metric": "active_customers",
        "segment": None,
        "window_start": "2026-03-02T09:00:00.000Z",
        "window_end": "2026-03-02T10:00:00.000Z",
        "value": 3.0,
        "sample_size": 3,
    }


def mixed_traffic() -> list[Event]:
    """Ten customers in three segments over 20 days; one settling event per partition."""
    events = []
    for i in range(10):
        cid = f"cust-{i}"
        seg = ("pro", "free", None)[i % 3]
        for d in range(0, 20, 1 + i % 4):
            events.append(login(cid, d, 9 + i % 5, 7 * i % 60, segment=seg))
            events.append(sent(cid, d, 8, i, segment=seg, message_id=f"{cid}-{d}"))
            if (d + i) % 3 == 0:
                events.append(opened(cid, d, 12, i, segment=seg))
            if (d + i) % 7 == 0:
                events.append(bounced(cid, d, 8, 30 + i, segment=seg))
    return [*by_time(events), login("settle-0", 30), login("settle-1", 30)]


def test_metric_deltas_from_separate_partitions_add_up_to_one_partitions_values() -> None:
    events = mixed_traffic()

    one = replay(events, ROLLING)
    two = replay(events, ROLLING, partitions=2, partition_of=lambda cid: int(cid[-1]) % 2)

    assert one.late == two.late == 0
    assert len(two.metrics.latest()) > 50
    assert metric_values(two.metrics) == metric_values(one.metrics)


def test_metric_deltas_summed_in_a_separate_book_match_the_replay() -> None:
    # What the worker's metrics agent does: re-key every partition's deltas and sum them.
    engine = Engine(ROLLING)
    procs = [PartitionProcessor(engine, DictStore(), StreamClock(300.0)) for _ in range(2)]
    book = MetricBook()
    for e in mixed_traffic():
        for delta in procs[int(e.customer_id[-1]) % 2].process(e).metrics:
            book.add(delta)

    assert metric_values(book) == metric_values(replay(mixed_traffic(), ROLLING).metrics)
