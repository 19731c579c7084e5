"""Builders for engine events and runs, shared by every test layer.

Times are given as days (and hours/minutes) after ``T0``, a fixed instant, so a
story reads like the brief ("silent for 14 days") and a test never depends on
the wall clock. Event ids default to ``customer/type/event-time``: two events
with the same customer, type and instant are the same event, which is what the
contract says a repeat is. Pass ``event_id=`` to say otherwise.

Profiles for golden stories restrict ``alert_kinds`` to the kind under test, so a
story's alerts are exactly that kind's; ``FIXED_INACTIVITY`` reproduces the old
fixed rule (raised 14 days after the last activity, escalated at 28).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from cxstream.engine.alerts import Alert
from cxstream.engine.config import ALERT_KINDS, DAY_SECONDS, EngineConfig, Profile
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.metrics import MetricBook
from cxstream.engine.replayer import Replayer, ReplayResult

__all__ = [
    "DAY",
    "FIXED_INACTIVITY",
    "HOUR",
    "MINUTE",
    "RULE_KINDS",
    "T0",
    "alert_set",
    "at",
    "bounced",
    "by_customer",
    "by_time",
    "cancelled",
    "clicked",
    "converted",
    "daily",
    "event",
    "event_factory",
    "fixed_inactivity",
    "login",
    "make_engine",
    "metric_values",
    "only",
    "opened",
    "reasons",
    "renewed",
    "replay",
    "replied",
    "reopened",
    "resolved",
    "sent",
    "story",
    "survey",
    "ticket",
    "trial_started",
    "unsubscribed",
]

# The hand-written kinds (every kind but the learned churn risk), for tests written
# for them: the default output is churn_risk alone.
RULE_KINDS = tuple(k for k in ALERT_KINDS if k != "churn_risk")

T0: float = datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
DAY: float = DAY_SECONDS
HOUR: float = 3_600.0
MINUTE: float = 60.0


def at(day: float, hour: float = 0.0, minute: float = 0.0, second: float = 0.0) -> float:
    """Event time ``day`` days, ``hour`` hours... after ``T0``, as POSIX seconds."""
    return T0 + day * DAY + hour * HOUR + minute * MINUTE + second


def event(
    type_: str,
    customer_id: str,
    day: float,
    hour: float = 0.0,
    minute: float = 0.0,
    *,
    second: float = 0.0,
    event_id: str | None = None,
    **fields: Any,
) -> Event:
    """Any event type; extra keyword fields go to ``Event`` (segment, ticket_id...)."""
    t = at(day, hour, minute, second)
    eid = event_id if event_id is not None else f"{customer_id}/{type_}/{t!r}"
    return Event(eid, customer_id, type_, t, **fields)  # type: ignore[arg-type]


def event_factory(type_: str) -> Callable[..., Event]:
    """A builder for one event type: ``event_factory("login")("c1", 3, hour=9)``."""

    def build(
        customer_id: str, day: float, hour: float = 0.0, minute: float = 0.0, **kw: Any
    ) -> Event:
        return event(type_, customer_id, day, hour, minute, **kw)

    build.__name__ = type_.replace(".", "_")
    build.__doc__ = f"A ``{type_}`` event of ``customer_id`` on ``day`` (after T0)."
    return build


login = event_factory("login")
sent = event_factory("email.sent")
opened = event_factory("email.opened")
clicked = event_factory("email.clicked")
bounced = event_factory("email.bounced")
unsubscribed = event_factory("email.unsubscribed")
ticket = event_factory("ticket.opened")
replied = event_factory("ticket.replied")
resolved = event_factory("ticket.resolved")
reopened = event_factory("ticket.reopened")
survey = event_factory("survey.response")  # survey("c", 3, 9, survey="nps", score=5)
trial_started = event_factory("subscription.trial_started")
converted = event_factory("subscription.converted")
renewed = event_factory("subscription.renewed")
cancelled = event_factory("subscription.cancelled")


# -- profiles -------------------------------------------------------------------------------

FIXED_INACTIVITY = Profile(
    inactivity_min_days=14, inactivity_max_days=14, escalate_factor=2.0, alert_kinds=("inactivity",)
)


def fixed_inactivity(**config: Any) -> EngineConfig:
    """The old fixed rule (14 days, escalate at 28, inactivity alerts only) as the default."""
    return EngineConfig(profile=FIXED_INACTIVITY, **config)


def only(*kinds: str, **knobs: Any) -> EngineConfig:
    """A config whose default profile publishes only ``kinds``, with some knobs replaced."""
    return EngineConfig(profile=Profile(alert_kinds=kinds, **knobs))


def daily(
    customer_id: str,
    first_day: int,
    last_day: int,
    hour: float = 9.0,
    builder: Callable[..., Event] = login,
    **kw: Any,
) -> list[Event]:
    """One event a day (a login by default) from ``first_day`` to ``last_day`` inclusive."""
    return [builder(customer_id, d, hour, **kw) for d in range(first_day, last_day + 1)]


def by_time(events: Iterable[Event]) -> list[Event]:
    """Events in event-time order (ties by id, so the order is stable)."""
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


def make_engine(**config: Any) -> Engine:
    """An ``Engine`` with ``EngineConfig(**config)``."""
    return Engine(EngineConfig(**config))


def replay(
    events: Iterable[Event],
    config: EngineConfig | None = None,
    partitions: int = 1,
    partition_of: Callable[[str], int] | None = None,
) -> ReplayResult:
    """Replay ``events`` in the given order through a fresh ``Replayer``."""
    replayer = Replayer(Engine(config or EngineConfig()), partitions, partition_of)
    return replayer.run(events)


def by_customer(alerts: Iterable[Alert], customer_id: str) -> list[Alert]:
    """The alerts of one customer, in decision order."""
    return [a for a in alerts if a.customer_id == customer_id]


def alert_set(alerts: Iterable[Alert]) -> list[tuple[tuple[str, Any], ...]]:
    """Alerts as sorted, hashable wire dicts: compare runs whose decision order may differ."""
    rows = []
    for a in alerts:
        d = a.to_dict()
        d["reasons"] = tuple(tuple(sorted(r.items())) for r in d["reasons"])
        rows.append(tuple(sorted(d.items())))
    return sorted(rows, key=repr)


def story(alerts: Iterable[Alert]) -> list[tuple[str, str, str, float, int]]:
    """Alerts as ``(kind, state, severity, decided_at, seq)`` rows, in decision order."""
    return [(a.kind, a.state, a.severity, a.decided_at, a.seq) for a in alerts]


def reasons(alert: Alert) -> list[tuple[str, float | None, float | None]]:
    """An alert's reasons as ``(code, value, threshold)``."""
    return [(r.code, r.value, r.threshold) for r in alert.reasons]


def metric_values(book: MetricBook) -> dict[tuple[str, str | None, float, float], tuple[Any, int]]:
    """``(metric, segment, window_start, window_end) -> (value, sample_size)`` of a book.

    Derived metrics (stickiness, churn, retention) are included.
    """
    return {
        (u.metric, u.segment, u.window_start, u.window_end): (u.value, u.sample_size)
        for u in book.latest()
    }
