"""The engine's input: one validated customer event, as a frozen value.

The wire contract (JSON, RFC 3339 timestamps, per-type fields) is validated in
``cxstream.schemas``; by the time an event reaches the engine it is this plain,
slotted dataclass with event time as POSIX seconds, so the hot path does no
parsing and no validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = [
    "ACTIVITY_TYPES",
    "EVENT_TYPES",
    "FAMILY_OF",
    "Event",
    "EventType",
    "Family",
]

EventType = Literal[
    "login",
    "email.sent",
    "email.opened",
    "email.clicked",
    "email.bounced",
    "email.unsubscribed",
    "ticket.opened",
    "ticket.replied",
    "ticket.resolved",
    "ticket.reopened",
    "survey.response",
    "subscription.trial_started",
    "subscription.converted",
    "subscription.renewed",
    "subscription.cancelled",
]
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)

Family = Literal["logins", "emails", "tickets", "surveys", "subscriptions"]
FAMILY_OF: Final[dict[str, Family]] = {
    "login": "logins",
    **{t: "emails" for t in EVENT_TYPES if t.startswith("email.")},
    **{t: "tickets" for t in EVENT_TYPES if t.startswith("ticket.")},
    "survey.response": "surveys",
    **{t: "subscriptions" for t in EVENT_TYPES if t.startswith("subscription.")},
}

# What counts as the customer "being there" for inactivity: the seeds' first
# warning sign is a customer who stops logging in and stops opening emails.
ACTIVITY_TYPES: Final[frozenset[str]] = frozenset({"login", "email.opened", "email.clicked"})


@dataclass(frozen=True, slots=True)
class Event:
    """A customer event; ``occurred_at`` is event time in POSIX seconds (UTC)."""

    event_id: str
    customer_id: str
    type: EventType
    occurred_at: float
    segment: str | None = None
    user_id: str | None = None
    channel: str | None = None
    message_id: str | None = None
    campaign: str | None = None
    ticket_id: str | None = None
    priority: str | None = None
    handle_seconds: float | None = None
    survey: Literal["nps", "csat", "ces"] | None = None
    score: float | None = None
    comment: str | None = None
    plan: str | None = None
    mrr: float | None = None

    @property
    def family(self) -> Family:
        """The topic family this event type belongs to."""
        return FAMILY_OF[self.type]
