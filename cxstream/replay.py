"""File replay: a JSON Lines file through the engine, no Kafka.

The file is replayed in event-time order, whatever order its lines are in
(sorted in memory, or in sorted runs on disk for a big file), so an export
sorted by day but not within it gives the sorted file's result. With
``as_published`` the lines are taken as one stream in file order instead, late
ones refused as the worker would. Invalid lines become dead letters, never
fatal; so do events refused as ``late`` or ``future``. At the end of the input
every decision up to the last event time is made (a live worker waits for the
allowed lateness instead, because more may come). Customers are routed to
partitions with Kafka's partitioner so the result equals what the streaming
worker publishes for the same events.
"""

from __future__ import annotations

import heapq
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import orjson

from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.replayer import Replayer, ReplayResult
from cxstream.errors import InvalidEvent
from cxstream.settings import Settings

__all__ = ["SORT_CHUNK", "ReplayFile", "in_time_order", "read_events", "read_lines",
           "replay_file"]

# Events sorted in memory at once; a bigger unsorted file is sorted in runs of this
# many lines written to temporary files and merged (~150 MB in memory per run).
SORT_CHUNK = 200_000


class ReplayFile:
    """What reading a file found: invalid lines as dead letters, and whether it was sorted."""

    def __init__(self, path: Path, dead: list[bytes] | None = None) -> None:
        self.path = path
        self.dead: list[bytes] = [] if dead is None else dead
        self.sorted_by_us = False

    def _invalid(self, lineno: int, line: bytes, exc: InvalidEvent) -> None:
        from cxstream.agents.ingest import dead_letter

        self.dead.append(dead_letter(line, InvalidEvent(f"line {lineno}: {exc.reason}",
                                                        code=exc.code),
                                     topic=str(self.path), partition=None, offset=lineno,
                                     key=None))

    def refused(self, event: Event, code: str, reason: str) -> None:
        """An event the engine refused (``late``, ``future``) as a dead letter."""
        from cxstream.agents.ingest import dead_letter
        from cxstream.schemas.events import event_to_json

        self.dead.append(dead_letter(event_to_json(event), InvalidEvent(reason, code=code),
                                     topic=str(self.path), partition=None, offset=None,
                                     key=event.customer_id.encode()))

    def lines_of(self) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    yield lineno, line.rstrip(b"\r\n")

    def events(self) -> Iterator[tuple[int, bytes, Event]]:
        """``(line number, line, event)`` of every valid line, in file order."""
        from cxstream.agents.ingest import decode

        for lineno, line in self.lines_of():
            try:
                yield lineno, line, decode(line)
            except InvalidEvent as exc:
                self._invalid(lineno, line, exc)


def in_time_order(path: Path) -> bool:
    """Whether the file's ``occurred_at`` never goes back (a cheap pass, no validation:
    an unreadable line is skipped here and reported by the real pass)."""
    last = float("-inf")
    with path.open("rb") as fh:
        for line in fh:
            try:
                t = datetime.fromisoformat(orjson.loads(line)["occurred_at"]).timestamp()
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if t < last:
                return False
            last = t
    return True


def read_events(source: ReplayFile, as_published: bool = False,
                chunk: int | None = None) -> Iterator[Event]:
    """The file's valid events in event-time order (ties keep file order), or in file
    order with ``as_published`` or when the file is already sorted."""
    yield from (event for _, event in read_lines(source, as_published, chunk))


def read_lines(source: ReplayFile, as_published: bool = False,
               chunk: int | None = None) -> Iterator[tuple[bytes, Event]]:
    """``(line, event)`` of the file's valid lines, in the order of ``read_events``."""
    if as_published or in_time_order(source.path):
        yield from ((line, event) for _, line, event in source.events())
        return
    source.sorted_by_us = True
    yield from _sorted(source, chunk or SORT_CHUNK)


def _sorted(source: ReplayFile, chunk: int) -> Iterator[tuple[bytes, Event]]:
    from cxstream.agents.ingest import decode

    buffer: list[tuple[float, int, bytes, Event]] = []
    runs: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="cxstream-sort-") as tmp:
        for lineno, line, event in source.events():
            buffer.append((event.occurred_at, lineno, line, event))
            if len(buffer) >= chunk:
                runs.append(_write_run(Path(tmp) / f"run{len(runs)}", buffer))
                buffer = []
        if not runs:
            buffer.sort(key=lambda row: (row[0], row[1]))
            yield from ((row[2], row[3]) for row in buffer)
            return
        if buffer:
            runs.append(_write_run(Path(tmp) / f"run{len(runs)}", buffer))
        for _, _, line in heapq.merge(*(_read_run(p) for p in runs)):
            yield line, decode(line)  # valid: it was decoded once before the run was written


def _write_run(path: Path, rows: list[tuple[float, int, bytes, Event]]) -> Path:
    rows.sort(key=lambda row: (row[0], row[1]))
    with path.open("wb") as fh:
        for t, lineno, line, _ in rows:
            fh.write(orjson.dumps([t, lineno]) + b"\t" + line + b"\n")
    return path


def _read_run(path: Path) -> Iterator[tuple[float, int, bytes]]:
    with path.open("rb") as fh:
        for row in fh:
            head, _, line = row.rstrip(b"\n").partition(b"\t")
            t, lineno = orjson.loads(head)
            yield t, lineno, line


def replay_file(settings: Settings, path: Path, partitions: int | None = None, *,
                dead: list[bytes] | None = None, now: float | None = None,
                as_published: bool = False, settle: bool = True,
                progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replay a file with the settings' engine config and partitioning.

    :param dead: collects the dead letters (invalid lines, late and future events).
    :param now: the replay's wall clock (default: the real one), against which an
        event dated more than ``max_future_seconds`` ahead is refused as ``future``.
    :param settle: decide everything up to the last event time at the end.
    :param progress: called with each event's count, for a progress bar.
    """
    from cxstream.agents.partitioning import partitioner_for
    from cxstream.learn.fit import logistic_fit

    n = partitions or settings.topic_partitions
    replayer = Replayer(Engine(settings.engine_config()), n, partitioner_for(n),
                        now=time.time() if now is None else now, fit=logistic_fit)
    source = ReplayFile(path, dead)
    events = read_events(source, as_published)
    if progress is not None:
        events = _counted(events, progress)
    result = replayer.run(events, settle=settle)
    lateness = settings.allowed_lateness_seconds
    for event in result.late_events:
        source.refused(event, "late", f"occurred_at is more than {lateness:g}s before the "
                                      "partition's stream time when it came (file order)")
    for event in result.future_events:
        source.refused(event, "future", f"occurred_at is more than "
                                        f"{settings.max_future_seconds:g}s after the replay's now")
    result.reordered = source.sorted_by_us
    return result


def _counted(events: Iterator[Event], progress: Callable[[int], None]) -> Iterator[Event]:
    for i, event in enumerate(events, 1):
        yield event
        if i % 1000 == 0:
            progress(1000)
