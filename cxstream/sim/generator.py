"""A small, deterministic event generator for the demo and the tests.

Customers log in and open emails at their own daily rates; some go silent on
a chosen day and a few of those later cancel. Events come out day by day in
event-time order, so a caller can pace each day to wall time (the demo) or
write them all to a file (tests). The behaviour-rich simulator is separate.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from cxstream.engine.config import DAY_SECONDS
from cxstream.engine.events import Event

__all__ = ["DemoCustomer", "generate_days", "make_customers"]

SEGMENTS = ("starter", "pro", "enterprise")


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    """How one generated customer behaves."""

    customer_id: str
    segment: str
    login_rate: float
    open_rate: float
    silent_from_day: int | None
    cancels_on_day: int | None


def make_customers(n: int, days: int, seed: int = 7,
                   silent_share: float = 0.1) -> list[DemoCustomer]:
    """``n`` customers; about ``silent_share`` of them go silent part-way through."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        silent = rng.random() < silent_share
        silent_day = rng.randint(1, max(1, days // 3)) if silent else None
        cancels = silent_day + 20 if silent_day is not None and rng.random() < 0.5 else None
        out.append(
            DemoCustomer(
                customer_id=f"c{i:05d}",
                segment=SEGMENTS[i % len(SEGMENTS)],
                login_rate=rng.uniform(0.5, 0.95),
                open_rate=rng.uniform(0.2, 0.6),
                silent_from_day=silent_day,
                cancels_on_day=cancels,
            )
        )
    return out


def generate_days(
    customers: list[DemoCustomer], days: int, start: float, seed: int = 7
) -> Iterator[list[Event]]:
    """Yield each day's events, sorted by event time; day ``d`` starts at ``start + d`` days."""
    rng = random.Random(seed + 1)
    seq = 0
    for day in range(days):
        base = start + day * DAY_SECONDS
        todays: list[Event] = []

        def add(c: DemoCustomer, type_: str, offset: float, todays: list[Event] = todays,
                base: float = base, **extra: object) -> None:
            nonlocal seq
            seq += 1
            todays.append(
                Event(f"e{seq:09d}", c.customer_id, type_, base + offset,  # type: ignore[arg-type]
                      segment=c.segment, **extra)  # type: ignore[arg-type]
            )

        for c in customers:
            if c.cancels_on_day is not None and day > c.cancels_on_day:
                continue
            silent = c.silent_from_day is not None and day >= c.silent_from_day
            if not silent and rng.random() < c.login_rate:
                add(c, "login", rng.uniform(0, DAY_SECONDS), channel="web")
            if day % 3 == int(c.customer_id[-1]) % 3:
                msg = f"m-{c.customer_id}-{day}"
                sent_at = rng.uniform(0, DAY_SECONDS / 2)
                add(c, "email.sent", sent_at, message_id=msg, campaign="weekly")
                if not silent and rng.random() < c.open_rate:
                    add(c, "email.opened", sent_at + rng.uniform(60, DAY_SECONDS / 2),
                        message_id=msg, campaign="weekly")
            if not silent and rng.random() < 0.03:
                add(c, "ticket.opened", rng.uniform(0, DAY_SECONDS),
                    ticket_id=f"t-{c.customer_id}-{day}")
            if c.cancels_on_day == day:
                add(c, "subscription.cancelled", rng.uniform(0, DAY_SECONDS), plan=c.segment)
        todays.sort(key=lambda e: (e.occurred_at, e.event_id))
        yield todays
