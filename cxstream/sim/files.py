"""Reading the evaluation's files: truth and alerts (JSON Lines), and a light scan of events.

Every line that cannot be read stops the evaluation with ``EvaluationInputError``
naming the file and line: a score over half a file would be a wrong number.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from cxstream.engine.events import Event
from cxstream.errors import CxStreamError
from cxstream.sim.evaluate import RaisedAlert, TruthRow

__all__ = ["EvaluationInputError", "EventScan", "parse_time", "read_alerts", "read_truth"]


class EvaluationInputError(CxStreamError, ValueError):
    """A truth, alerts or events file cannot be read; the message names the file and line.

    Fix or regenerate the file (``cxstream simulate`` writes both events and truth).
    """


def parse_time(text: str, what: str) -> float:
    try:
        dt = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise EvaluationInputError(f"{what}: {text!r} is not an RFC 3339 timestamp") from exc
    if dt.tzinfo is None:
        raise EvaluationInputError(f"{what}: {text!r} has no UTC offset")
    return dt.timestamp()


def _json_lines(path: Path, needed: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``path:line``, object) for each non-blank line; a line that is not an object
    raises ``EvaluationInputError`` saying which fields are ``needed``."""
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise EvaluationInputError(f"{where}: need {needed} ({exc})") from exc
            if not isinstance(obj, dict):
                raise EvaluationInputError(f"{where}: need {needed} (not an object)")
            yield where, obj


def read_truth(path: Path) -> list[TruthRow]:
    """Truth rows from JSON Lines (``customer_id``, ``churned``, ``churned_at``; extras kept)."""
    needed = "customer_id, churned, churned_at"
    rows: list[TruthRow] = []
    for where, obj in _json_lines(path, needed):
        try:
            cid, churned, at = obj["customer_id"], obj["churned"], obj.get("churned_at")
        except KeyError as exc:
            raise EvaluationInputError(f"{where}: need {needed} ({exc!r})") from exc
        if not isinstance(cid, str) or not isinstance(churned, bool):
            raise EvaluationInputError(f"{where}: customer_id must be a string, "
                                       "churned a boolean")
        if churned and at is None:
            raise EvaluationInputError(f"{where}: churned is true but churned_at is null")
        rows.append(TruthRow(cid, churned, parse_time(at, where) if at else None,
                             obj.get("fate"), obj.get("segment")))
    return rows


def read_alerts(path: Path) -> list[RaisedAlert]:
    """The ``raised`` alerts of an alerts JSON Lines file (``cxstream replay --alerts-out``)."""
    needed = "state, customer_id, decided_at"
    out: list[RaisedAlert] = []
    for where, obj in _json_lines(path, needed):
        try:
            state, cid, at = obj["state"], obj["customer_id"], obj["decided_at"]
        except KeyError as exc:
            raise EvaluationInputError(f"{where}: need {needed} ({exc!r})") from exc
        if state == "raised":
            out.append(RaisedAlert(cid, parse_time(at, where), obj.get("kind", "alert")))
    return out


class EventScan:
    """Reads the events file lightly (id, type, time) for the baselines, noting the window."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first = float("inf")
        self.last = float("-inf")
        self.lines = 0
        self.unreadable = 0
        self.out_of_order = 0

    def __iter__(self) -> Iterator[Event]:
        latest = float("-inf")
        with self.path.open("rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                self.lines += 1
                try:
                    obj = orjson.loads(line)
                    t = datetime.fromisoformat(obj["occurred_at"]).timestamp()
                    ev = Event("", obj["customer_id"], obj["type"], t)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    self.unreadable += 1
                    continue
                if t < latest:
                    self.out_of_order += 1
                else:
                    latest = t
                self.first = min(self.first, t)
                self.last = max(self.last, t)
                yield ev
