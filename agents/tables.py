"""Customer state in a Faust table, behind the engine's ``StateStore`` seam.

Values are the state's compact JSON (orjson), stored raw so the changelog
carries exactly what the engine wrote. Writing through ``table[key] = …`` is
what sends the change to the changelog, so every mutation goes through ``put``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import orjson

from cxstream.metrics import MetricKey, decode_acc, encode_acc
from cxstream.state import CustomerState

__all__ = ["AccumulatorTable", "TableStore"]


class TableStore:
    """A ``StateStore`` over a Faust table, optionally limited to one partition."""

    __slots__ = ("_belongs", "table")

    def __init__(self, table: Any, belongs: Callable[[str], bool] | None = None) -> None:
        self.table = table
        self._belongs = belongs

    def get(self, customer_id: str) -> CustomerState | None:
        raw = self.table.get(customer_id)
        if raw is None:
            return None
        return CustomerState.from_wire(orjson.loads(raw))

    def put(self, state: CustomerState) -> None:
        self.table[state.customer_id] = orjson.dumps(state.to_wire())

    def values(self) -> Iterator[CustomerState]:
        for key, raw in list(self.table.items()):
            customer_id = key.decode() if isinstance(key, bytes) else key
            if self._belongs is None or self._belongs(customer_id):
                yield CustomerState.from_wire(orjson.loads(raw))


class AccumulatorTable(MutableMapping[MetricKey, Any]):
    """The metrics agent's accumulators in a Faust table, as ``MetricBook`` wants them.

    Keys are the JSON array ``[metric, segment, window_start, window_seconds]``,
    unambiguous whatever a segment is called.
    """

    def __init__(self, table: Any) -> None:
        self.table = table

    @staticmethod
    def _key(key: MetricKey) -> str:
        return orjson.dumps(list(key)).decode()

    def __getitem__(self, key: MetricKey) -> Any:
        raw = self.table.get(self._key(key))
        if raw is None:
            raise KeyError(key)
        return decode_acc(key[0], raw)

    def __setitem__(self, key: MetricKey, acc: Any) -> None:
        self.table[self._key(key)] = encode_acc(key[0], acc)

    def __delitem__(self, key: MetricKey) -> None:
        del self.table[self._key(key)]

    def __iter__(self) -> Iterator[MetricKey]:
        for k in list(self.table.keys()):
            metric, segment, start, seconds = orjson.loads(k)
            yield (metric, segment, float(start), int(seconds))

    def __len__(self) -> int:
        return len(self.table)
