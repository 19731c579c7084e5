"""Customer state in a Faust table, behind the engine's ``StateStore`` seam.

Values are the state's compact JSON (orjson), stored raw so the changelog
carries exactly what the engine wrote. Writing through ``table[key] = …`` is
what sends the change to the changelog, so every mutation goes through ``put``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from cxstream.state import CustomerState

__all__ = ["TableStore"]


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
        return CustomerState.from_dict(orjson.loads(raw))

    def put(self, state: CustomerState) -> None:
        self.table[state.customer_id] = orjson.dumps(state.to_dict())

    def values(self) -> Iterator[CustomerState]:
        for key, raw in list(self.table.items()):
            customer_id = key.decode() if isinstance(key, bytes) else key
            if self._belongs is None or self._belongs(customer_id):
                yield CustomerState.from_dict(orjson.loads(raw))
