"""Rolling CX metrics: distinct active customers and email open rate, by event-time window."""

from __future__ import annotations

import pytest

from cxstream.config import EngineConfig
from cxstream.engine import Engine
from cxstream.events import Event
from cxstream.metrics import MetricBook, MetricDelta, MetricUpdate, window_of
from cxstream.partition import PartitionProcessor, StreamClock
from cxstream.state import DictStore
from tests.factories import (
    DAY,
    HOUR,
    at,
    bounced,
    by_time,
    clicked,
    login,
    metric_values,
    opened,
    replay,
    sent,
    ticket,
)

WINDOWS = EngineConfig(metric_windows_seconds=(3_600, 86_400))


def value(events: list[Event], metric: str, segment: str | None, start: float, seconds: float) -> tuple:  # type: ignore[type-arg]
    """(value, sample_size) of one window after replaying ``events``; (0, 0) if nothing was counted."""
    values = metric_values(replay(events, WINDOWS).metrics)
    return values.get((metric, segment, start, start + seconds), (0.0, 0))


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
            [login("c", 0, 9, 10), login("c", 0, 10, 10)], (at(0, 9), HOUR), 1, id="first-of-two-hours"
        ),
        pytest.param(
            [login("c", 0, 9, 10), login("c", 0, 10, 10)], (at(0, 10), HOUR), 1, id="second-of-two-hours"
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
            [login("c", 0, 23, 59), login("c", 1, 0, 1)], (at(1), DAY), 1, id="next-day-counts-again"
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

    values = metric_values(replay(events, WINDOWS).metrics)
    hourly = {seg: v for (m, seg, start, _), v in values.items() if m == "active_customers" and start == at(0, 9)}

    assert hourly == {None: (4, 4), "pro": (2, 2), "free": (1, 1)}


def test_a_customer_active_in_two_hours_counts_in_both() -> None:
    events = [login("c", 0, 9, m) for m in (0, 30)] + [login("c", 0, 10, m) for m in (0, 30)]

    values = metric_values(replay(events, WINDOWS).metrics)

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
        pytest.param([sent("c", 0, 9), bounced("c", 0, 9, 1)], (None, 0), id="all-bounced-is-undefined"),
        pytest.param([sent("c", 0, 9), clicked("c", 0, 9, 1)], (0.0, 1), id="a-click-is-not-an-open"),
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

    values = metric_values(replay(events, WINDOWS).metrics)

    assert values[("email_open_rate", "pro", at(0, 9), at(0, 10))] == (1.0, 1)
    assert values[("email_open_rate", "free", at(0, 9), at(0, 10))] == (0.0, 2)
    assert values[("email_open_rate", None, at(0, 9), at(0, 10))] == (pytest.approx(1 / 3), 3)


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
def test_window_of_gives_the_start_of_the_tumbling_window(ts: float, seconds: int, start: float) -> None:
    assert window_of(ts, seconds) == start


def test_metric_book_returns_each_windows_new_value_as_it_adds() -> None:
    book = MetricBook()

    first = book.add(MetricDelta("email_open_rate", None, 0.0, 3_600, 0.0, 2.0))
    second = book.add(MetricDelta("email_open_rate", None, 0.0, 3_600, 1.0, 0.0))

    assert first == MetricUpdate("email_open_rate", None, 0.0, 3_600.0, 0.0, 2)
    assert second == MetricUpdate("email_open_rate", None, 0.0, 3_600.0, 0.5, 2)
    assert book.updates() == [second]


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
    return by_time(events)


def test_metric_deltas_from_separate_partitions_add_up_to_one_partitions_values() -> None:
    events = mixed_traffic()

    one = replay(events, WINDOWS)
    two = replay(events, WINDOWS, partitions=2, partition_of=lambda cid: int(cid[-1]) % 2)

    assert one.late == two.late == 0
    assert len(two.metrics.updates()) > 50
    assert metric_values(two.metrics) == metric_values(one.metrics)


def test_metric_deltas_summed_in_a_separate_book_match_the_replay() -> None:
    # What the worker's metrics agent does: re-key every partition's deltas and sum them.
    engine = Engine(WINDOWS)
    procs = [PartitionProcessor(engine, DictStore(), StreamClock(300.0)) for _ in range(2)]
    book = MetricBook()
    for e in mixed_traffic():
        for delta in procs[int(e.customer_id[-1]) % 2].process(e).metrics:
            book.add(delta)

    assert metric_values(book) == metric_values(replay(mixed_traffic(), WINDOWS).metrics)
