"""Per-customer engagement state, and the seam the engine reads it through.

One ``CustomerState`` per customer, bounded whatever the history length:
recent ids, pending events, open tickets, reopen and repeat-contact times and
the score history are capped lists; daily activity is a 35-day ring; email
engagement is exponentially decayed. The streaming worker stores it in a
changelogged Faust table (as ``to_wire`` JSON); replay keeps it in a dict.
Both go through ``StateStore``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

__all__ = ["RING_DAYS", "CustomerState", "DictStore", "Episode", "StateStore"]

RING_DAYS = 35  # 7 recent days + the 28-day baseline before them


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

    ``pending`` holds accepted events (compact rows ``[t, fingerprint, type
    code, a, b]``) until the watermark passes them; ``settled_at`` is the
    watermark the customer was last brought up to. Everything below
    ``pending`` is *settled* state, built in event-time order.
    """

    customer_id: str
    segment: str | None = None
    first_seen_at: float = 0.0
    max_seen_at: float = 0.0
    settled_at: float | None = None
    evaluated_at: float | None = None
    events: int = 0
    recent_ids: list[int] = field(default_factory=list)
    counted: dict[int, float] = field(default_factory=dict)  # window seconds -> last counted start
    pending: list[list[Any]] = field(default_factory=list)
    # activity
    last_activity_at: float | None = None
    first_active_day: int | None = None
    last_active_day: int | None = None
    active_days: int = 0
    gap_ewm_days: float | None = None
    ring_day0: int | None = None
    ring: list[list[int]] = field(default_factory=list)
    # activity baseline of the days before the ring (renewal.py): EWMAs (from 0, bias
    # corrected when read) of active days and of daily counts, days folded, first day
    # not folded yet
    base_days: float = 0.0
    base_count: float = 0.0
    base_n: int = 0
    base_upto: int | None = None
    # email
    em_delivered: float = 0.0
    em_opened: float = 0.0
    em_at: float | None = None
    unopened: int = 0
    unsubscribed: bool = False
    bounced: bool = False
    # support
    open_tickets: dict[str, float] = field(default_factory=dict)
    reopens: list[float] = field(default_factory=list)
    repeats: list[float] = field(default_factory=list)
    last_resolved_at: float | None = None
    ticket_events: int = 0
    # ticket id -> [opened_at, replies, reopened, first resolved_at or None, counted as FCR]
    tickets: dict[str, list[Any]] = field(default_factory=dict)
    trial_started_at: float | None = None
    # feedback: survey -> [latest score, previous score or None, answered at]
    feedback: dict[str, list[Any]] = field(default_factory=dict)
    # subscription
    cancelled_at: float | None = None
    renewed_at: float | None = None  # last subscription.renewed or converted
    # distinct active users: one 64-bit mask per week (newest first), the newest's week
    seat_masks: list[int] = field(default_factory=list)
    seat_week: int | None = None
    # churn features: when the next weekly snapshot for the learned model is due
    churn_next: float | None = None
    # participation snapshots awaiting their outcome: [taken at, active days of 28]
    part_snaps: list[list[float]] = field(default_factory=list)
    part_next: float | None = None  # when the next snapshot is due
    # score and alerts
    score: float | None = None
    score_hist: list[list[float]] = field(default_factory=list)
    episodes: dict[str, Episode] = field(default_factory=dict)
    cooldown: dict[str, float] = field(default_factory=dict)
    raises: list[float] = field(default_factory=list)
    published: list[Any] | None = None  # [rounded score, open kinds] last put on the health topic
    # Highest input position (Kafka offset) applied per source: a redelivered
    # message at or below it is a repeat, however old.
    positions: dict[str, int] = field(default_factory=dict)

    def to_wire(self) -> list[Any]:
        """Compact JSON-able form for the changelogged table (see ``from_wire``).

        Positional (no field names), the daily ring and the recent event ids
        packed as base64 bytes, each ticket id written once: a busy customer
        stays under 2 KB (tests/unit/test_engine.py measures it).
        """
        ids = list(dict.fromkeys([*self.tickets, *self.open_tickets]))
        index = {tid: i for i, tid in enumerate(ids)}
        out: list[Any] = [WIRE_VERSION]
        for f in _FIELDS:
            out.append(getattr(self, f.name))
        out.append({k: v.to_list() for k, v in self.episodes.items()})
        out.append([[k, v] for k, v in self.counted.items()])
        out.append(_b64(b"".join(bytes((min(a, 255), min(b, 255), min(c, 255)))
                                 for a, b, c in self.ring)))
        out.append(_b64(b"".join(x.to_bytes(_ID_BYTES, "big") for x in self.recent_ids)))
        out.append(_b64(b"".join(m.to_bytes(8, "big") for m in self.seat_masks)))
        out.append(_pack_days(self.score_hist))
        out.append(ids)
        out.append([[index[k], *v] for k, v in self.tickets.items()])
        # An open ticket's time is usually its opening time, already in ``tickets``.
        out.append([[index[k]] if k in self.tickets and self.tickets[k][0] == v
                    else [index[k], v] for k, v in self.open_tickets.items()])
        return out

    @classmethod
    def from_wire(cls, w: list[Any]) -> CustomerState:
        """Inverse of ``to_wire``."""
        if not isinstance(w, list) or not w or w[0] != WIRE_VERSION:
            raise ValueError("not a customer state in wire format "
                             f"{WIRE_VERSION} (a table from an older cxstream? reset its data)")
        n = len(_FIELDS)
        st = cls(**{f.name: v for f, v in zip(_FIELDS, w[1:n + 1], strict=True)})
        episodes, counted, ring, recent, seats, hist, ids, tickets, open_tickets = w[n + 1:]
        st.episodes = {k: Episode(v[0], v[1], v[2]) for k, v in episodes.items()}
        st.counted = {int(k): float(v) for k, v in counted}
        raw = base64.b64decode(ring)
        st.ring = [[raw[i], raw[i + 1], raw[i + 2]] for i in range(0, len(raw), 3)]
        raw = base64.b64decode(recent)
        st.recent_ids = [int.from_bytes(raw[i:i + _ID_BYTES], "big")
                         for i in range(0, len(raw), _ID_BYTES)]
        raw = base64.b64decode(seats)
        st.seat_masks = [int.from_bytes(raw[i:i + 8], "big") for i in range(0, len(raw), 8)]
        st.score_hist = _unpack_days(hist)
        st.tickets = {ids[i]: rec for i, *rec in tickets}
        st.open_tickets = {ids[row[0]]: row[1] if len(row) > 1 else st.tickets[ids[row[0]]][0]
                           for row in open_tickets}
        return st


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _pack_days(rows: list[list[float]]) -> list[Any]:
    """``[[day, value], ...]`` (days ascending) as ``[first day, [value or null, ...]]``."""
    if not rows:
        return []
    first = int(rows[0][0])
    values: list[float | None] = [None] * (int(rows[-1][0]) - first + 1)
    for day, value in rows:
        values[int(day) - first] = value
    return [first, values]


def _unpack_days(packed: list[Any]) -> list[list[float]]:
    if not packed:
        return []
    first, values = packed
    return [[first + i, v] for i, v in enumerate(values) if v is not None]


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


WIRE_VERSION = 3
_ID_BYTES = 6  # event id fingerprints are 48-bit (engine.event_id_hash)
_PACKED = ("episodes", "counted", "ring", "recent_ids", "seat_masks", "score_hist", "tickets",
           "open_tickets")
_FIELDS = tuple(f for f in fields(CustomerState) if f.name not in _PACKED)
