"""Customer state in a Faust table, behind the engine's ``StateStore`` seam.

Values are the state's compact JSON (orjson), stored raw so the changelog
carries exactly what the engine wrote. Writing through ``table[key] = …`` is
what sends the change to the changelog, so every mutation goes through ``put``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import orjson

from cxstream.engine.metrics import MetricKey, decode_acc, encode_acc
from cxstream.engine.state import CustomerState

__all__ = ["INTERNAL_PREFIX", "AccumulatorTable", "TableStore", "is_internal_key"]

# Keys in the customers table that are not customers (the scorer's outbox, see
# ``cxstream.agents.scoring``) start with a NUL, which no valid customer id has.
INTERNAL_PREFIX = "\x00"


def is_internal_key(key: str | bytes) -> bool:
    """Whether a customers-table key is bookkeeping rather than a customer."""
    return (key[:1] == b"\x00") if isinstance(key, bytes) else key.startswith(INTERNAL_PREFIX)


class TableStore:
    """A ``StateStore`` over a Faust table, optionally limited to one partition.

    Between ``hold()`` and ``release()`` the states one message changes are kept
    as objects; ``release()`` serializes them into the *pending* states, which
    accumulate over a run of messages until ``take()``, so the caller decides
    when, and after what, they reach the table: the scorer writes a run's outbox
    record before the states it changed. Reads see held, then pending, then
    table states. Pending states are kept serialized, so a message whose
    processing failed (``drop()``) cannot have changed them in place.
    """

    __slots__ = ("_belongs", "_held", "_pending", "pending_bytes", "table")

    def __init__(self, table: Any, belongs: Callable[[str], bool] | None = None) -> None:
        self.table = table
        self._belongs = belongs
        self._held: dict[str, CustomerState] | None = None
        self._pending: dict[str, bytes] = {}
        self.pending_bytes = 0  # serialized size of the pending states

    def get(self, customer_id: str) -> CustomerState | None:
        held = self._held
        if held is not None and customer_id in held:
            return held[customer_id]
        raw = self._pending.get(customer_id)
        if raw is None:
            raw = self.table.get(customer_id)
            if raw is None:
                return None
        return CustomerState.from_wire(orjson.loads(raw))

    def put(self, state: CustomerState) -> None:
        if self._held is not None:
            self._held[state.customer_id] = state
            return
        self.table[state.customer_id] = orjson.dumps(state.to_wire())

    def hold(self) -> None:
        """Keep one message's writes in memory until ``release`` (or ``drop``)."""
        self._held = {}

    def drop(self) -> None:
        """Forget the held writes (the processing that made them failed)."""
        self._held = None

    def release(self) -> None:
        """Stop holding; the held states join the pending ones (nothing written yet)."""
        held, self._held = self._held or {}, None
        pending = self._pending
        for cid, st in held.items():
            raw = orjson.dumps(st.to_wire())
            old = pending.get(cid)
            self.pending_bytes += len(raw) - (len(old) if old is not None else 0)
            pending[cid] = raw

    def take(self) -> dict[str, bytes]:
        """The pending states, serialized, for ``write``; pending is empty afterwards."""
        pending, self._pending = self._pending, {}
        self.pending_bytes = 0
        return pending

    def write(self, states: dict[str, bytes]) -> None:
        for customer_id, raw in states.items():
            self.table[customer_id] = raw

    def values(self) -> Iterator[CustomerState]:
        for key, raw in list(self.table.items()):
            customer_id = key.decode() if isinstance(key, bytes) else key
            if is_internal_key(customer_id):
                continue
            if self._belongs is None or self._belongs(customer_id):
                yield CustomerState.from_wire(orjson.loads(raw))


class AccumulatorTable(MutableMapping[MetricKey, Any]):
    """The metrics agent's accumulators in a Faust table, as ``MetricBook`` wants them.

    Keys are the JSON array ``[metric, segment, window_start, window_seconds]``,
    unambiguous whatever a segment is called.

    Each value also carries, per delta source (an input topic and partition of
    the scorer), the offset of the last source message folded into it:
    ``b"P" + JSON {source: offset} + b"\\n" + accumulator``. The accumulator and
    the positions are one value, so they are written together or not at all: a
    redelivered delta message (same source and offset) is recognised per key and
    never folded twice, even when the table was restored to an older version.
    While ``tag`` is set (``claim``), every write records it.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.tag: tuple[str, int] | None = None
        # Between ``begin`` and ``flush``: key -> [positions, accumulator or None]
        # read once, and the written keys, each with the message that wrote it last.
        self._cache: dict[str, list[Any]] | None = None
        self._dirty: dict[str, Any] = {}
        self.owner: Any = None  # the message being folded (for ``flush``)

    @staticmethod
    def _key(key: MetricKey) -> str:
        return orjson.dumps(list(key)).decode()

    @staticmethod
    def _split(raw: bytes) -> tuple[dict[str, int], bytes]:
        if raw[:1] == b"P":
            head, _, acc = raw[1:].partition(b"\n")
            return orjson.loads(head), acc
        return {}, raw

    def _load(self, k: str, metric: str) -> list[Any]:
        cache = self._cache
        if cache is not None and k in cache:
            return cache[k]
        raw = self.table.get(k)
        if raw is None:
            entry: list[Any] = [{}, None]
        else:
            positions, body = self._split(raw)
            entry = [positions, decode_acc(metric, body)]
        if cache is not None:
            cache[k] = entry
        return entry

    def begin(self) -> None:
        """Read each key once and keep writes in memory until ``flush``."""
        self._cache = {}
        self._dirty = {}

    def flush(self, write: Callable[[Any, Callable[[], None]], None] | None = None) -> None:
        """Write every changed key once; ``write(owner, fn)`` runs ``fn`` as that
        message's (a table write goes to the changelog partition of the message
        being processed)."""
        cache, dirty = self._cache or {}, self._dirty
        self._cache, self._dirty = None, {}
        by_owner: dict[int, tuple[Any, list[str]]] = {}
        for k, owner in dirty.items():
            by_owner.setdefault(id(owner), (owner, []))[1].append(k)
        for owner, keys in by_owner.values():
            def put(keys: list[str] = keys) -> None:
                for k in keys:
                    positions, acc = cache[k]
                    self._put(k, orjson.loads(k)[0], positions, acc)
            if write is None:
                put()
            else:
                write(owner, put)

    def discard(self) -> None:
        self._cache, self._dirty = None, {}

    def _put(self, k: str, metric: str, positions: dict[str, int], acc: Any) -> None:
        body = encode_acc(metric, acc)
        self.table[k] = (b"P" + orjson.dumps(positions) + b"\n" + body) if positions else body

    def positions(self, key: MetricKey) -> dict[str, int]:
        """Last folded offset per delta source of one accumulator."""
        entry: dict[str, int] = self._load(self._key(key), key[0])[0]
        return entry

    def claim(self, source: str, offset: int, keys: Iterator[MetricKey] | set[MetricKey]
              ) -> set[MetricKey]:
        """Start folding message ``(source, offset)``: the keys that already hold it.

        Until ``release``, writes record the message in the value's positions.
        """
        self.tag = (source, offset)
        return {k for k in keys if self.positions(k).get(source, -1) >= offset}

    def release(self) -> None:
        self.tag = None

    def __getitem__(self, key: MetricKey) -> Any:
        acc = self._load(self._key(key), key[0])[1]
        if acc is None:
            raise KeyError(key)
        return acc

    def __setitem__(self, key: MetricKey, acc: Any) -> None:
        k = self._key(key)
        entry = self._load(k, key[0])
        if self.tag is not None:
            entry[0][self.tag[0]] = self.tag[1]
        entry[1] = acc
        if self._cache is None:
            self._put(k, key[0], entry[0], acc)
        else:
            self._dirty[k] = self.owner

    def __delitem__(self, key: MetricKey) -> None:
        del self.table[self._key(key)]

    def __iter__(self) -> Iterator[MetricKey]:
        for k in list(self.table.keys()):
            metric, segment, start, seconds = orjson.loads(k)
            yield (metric, segment, float(start), int(seconds))

    def __len__(self) -> int:
        return len(self.table)
