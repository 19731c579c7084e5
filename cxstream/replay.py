"""File replay: a JSON Lines file through the engine, no Kafka.

Invalid lines become dead letters, never fatal. Customers are routed to
partitions with Kafka's partitioner so the result equals what the streaming
worker publishes for the same file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from cxstream.engine.replayer import Replayer, ReplayResult
from cxstream.errors import InvalidEvent
from cxstream.settings import Settings

__all__ = ["read_events", "replay_file"]


def read_events(path: Path, dead: list[bytes] | None = None) -> Iterator[Event]:
    """Yield valid events from a JSON Lines file; invalid lines become dead letters."""
    from cxstream.agents.ingest import dead_letter, decode

    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield decode(line.rstrip(b"\r\n"))
            except InvalidEvent as exc:
                if dead is not None:
                    dead.append(dead_letter(line, InvalidEvent(f"line {lineno}: {exc.reason}",
                                                               code=exc.code),
                                            topic=str(path), partition=None, offset=lineno,
                                            key=None))


def replay_file(settings: Settings, path: Path, partitions: int | None = None,
                dead: list[bytes] | None = None) -> ReplayResult:
    """Replay a file with the settings' engine config and partitioning."""
    from cxstream.agents.partitioning import partitioner_for

    n = partitions or settings.topic_partitions
    replayer = Replayer(Engine(settings.engine_config()), n, partitioner_for(n))
    return replayer.run(read_events(path, dead))
