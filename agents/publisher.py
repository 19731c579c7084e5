"""Publishing events to the input topics: keyed by customer, routed by family.

The producer is idempotent with ``acks=all`` so a retry cannot duplicate or
reorder a customer's events; lines that are not valid events are reported and
not sent (the worker would only dead-letter them).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from cxstream.agents.ingest import decode
from cxstream.agents.security import kafka_options
from cxstream.agents.topics import ensure_topics
from cxstream.errors import CxStreamError, InvalidEvent
from cxstream.events import FAMILY_OF
from cxstream.settings import Settings

__all__ = ["EventPublisher", "publish_file"]


class EventPublisher:
    """An async context manager that sends validated event bytes to their topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = settings.input_topics
        self.producer = AIOKafkaProducer(
            **kafka_options(settings),
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
        )

    async def __aenter__(self) -> EventPublisher:
        try:
            await ensure_topics(self.settings)
            await self.producer.start()
        except KafkaConnectionError as exc:
            raise CxStreamError(
                f"cannot reach Kafka at {self.settings.kafka_bootstrap}: {exc} "
                "(is the broker up? `cxstream broker up`)"
            ) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, raw: bytes) -> None:
        """Validate and send one event (raises ``InvalidEvent``)."""
        event = decode(raw)
        topic = self.topics[FAMILY_OF[event.type]]
        await self.producer.send(topic, raw, key=event.customer_id.encode())

    async def flush(self) -> None:
        await self.producer.flush()


async def publish_lines(settings: Settings, lines: Iterable[bytes],
                        rate: float | None = None) -> tuple[int, int]:
    """Publish lines, optionally paced to ``rate`` events/s; returns (sent, invalid)."""
    sent = invalid = 0
    started = time.monotonic()
    async with EventPublisher(settings) as pub:
        for lineno, line in enumerate(lines, 1):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                await pub.send(line)
            except InvalidEvent as exc:
                invalid += 1
                print(f"line {lineno}: {exc.reason}", file=sys.stderr)
                continue
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await pub.flush()
    return sent, invalid


async def publish_file(settings: Settings, path: Path,
                       rate: float | None = None) -> tuple[int, int]:
    """Publish a JSON Lines file; returns (sent, invalid)."""
    with path.open("rb") as fh:
        return await publish_lines(settings, fh, rate)
