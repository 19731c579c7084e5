"""Per-customer engagement state, and the seam the engine reads it through.

One ``CustomerState`` per customer, bounded whatever the history length: the
recent-id ring is capped, pending activity is capped, and counted metric
windows are pruned as the watermark closes them. The streaming worker stores
it in a changelogged Faust table (as ``to_dict`` JSON); replay keeps it in a
dict. Both go through ``StateStore``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CustomerState", "DictStore", "Episode", "StateStore"]


@dataclass(slots=True)
class Episode:
    """An open alert episode of one kind."""

    started_at: float
    seq: int
    severity: str

    def to_list(self) -> list[Any]:
        return [self.started_at, self.seq, self.severity]


@dataclass(slots=True)
class CustomerState:
    """What the engine remembers about one customer.

    ``settled_at`` is the watermark this customer was last brought up to:
    every decision at or before it is final. ``pending`` holds activity times
    after an episode opened, kept until the watermark passes them so that a
    resolution is decided at the earliest one whatever the arrival order.
    """

    customer_id: str
    segment: str | None = None
    first_seen_at: float = 0.0
    max_seen_at: float = 0.0
    settled_at: float | None = None
    last_activity_at: float | None = None
    pending: list[float] = field(default_factory=list)
    episodes: dict[str, Episode] = field(default_factory=dict)
    recent_ids: list[int] = field(default_factory=list)
    counted: dict[int, list[float]] = field(default_factory=dict)
    events: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-able form for the changelogged table."""
        return {
            "c": self.customer_id,
            "s": self.segment,
            "f": self.first_seen_at,
            "m": self.max_seen_at,
            "w": self.settled_at,
            "a": self.last_activity_at,
            "p": self.pending,
            "e": {k: v.to_list() for k, v in self.episodes.items()},
            "r": self.recent_ids,
            "k": {str(k): v for k, v in self.counted.items()},
            "n": self.events,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CustomerState:
        """Inverse of ``to_dict``."""
        return cls(
            customer_id=d["c"],
            segment=d["s"],
            first_seen_at=d["f"],
            max_seen_at=d["m"],
            settled_at=d["w"],
            last_activity_at=d["a"],
            pending=list(d["p"]),
            episodes={k: Episode(v[0], v[1], v[2]) for k, v in d["e"].items()},
            recent_ids=list(d["r"]),
            counted={int(k): list(v) for k, v in d["k"].items()},
            events=d["n"],
        )


class StateStore(Protocol):
    """Where customer states live: a Faust table in the worker, a dict in replay."""

    def get(self, customer_id: str) -> CustomerState | None: ...

    def put(self, state: CustomerState) -> None: ...

    def values(self) -> Iterator[CustomerState]: ...


class DictStore:
    """In-memory ``StateStore`` for replay and tests."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[str, CustomerState] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        return self.data.get(customer_id)

    def put(self, state: CustomerState) -> None:
        self.data[state.customer_id] = state

    def values(self) -> Iterator[CustomerState]:
        return iter(self.data.values())

    def __len__(self) -> int:
        return len(self.data)
