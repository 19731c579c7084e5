"""Publishing events to the input topics: keyed by customer, routed by family.

The producer is idempotent with ``acks=all`` so a retry cannot duplicate or
reorder a customer's events; lines that are not valid events are reported and
not sent (the worker would only dead-letter them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cxstream.agents.ingest import decode
from cxstream.agents.security import kafka_options
from cxstream.agents.topics import ensure_topics
from cxstream.engine.events import FAMILY_OF
from cxstream.errors import CxStreamError, InvalidEvent
from cxstream.settings import Settings

__all__ = ["EventPublisher", "publish_file"]


@contextlib.contextmanager
def _kafka_errors() -> Iterator[list[str]]:
    """Collect aiokafka's logged errors: it logs why a connection failed (e.g. a SASL
    authentication failure) but raises only a generic bootstrap error."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect(logging.ERROR)
    logger = logging.getLogger("aiokafka")
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def _unreachable(settings: Settings, exc: Exception, logged: list[str]) -> str:
    auth = next((m for m in logged if "Authentication" in m or "SaslAuth" in m), None)
    if auth is not None:
        return (f"Kafka at {settings.kafka_bootstrap} refused authentication for "
                f"{settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}): {auth}")
    tls = next((m for m in logged if "CERTIFICATE_VERIFY_FAILED" in m or "SSL" in m), None)
    if tls is not None:
        return f"TLS to Kafka at {settings.kafka_bootstrap} failed: {tls}"
    return (f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc} "
            "(is the broker up? `cxstream broker up`)")


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
        with _kafka_errors() as logged:
            try:
                await ensure_topics(self.settings)
                await self.producer.start()
            except KafkaError as exc:
                with contextlib.suppress(Exception):
                    await self.producer.stop()
                raise CxStreamError(_unreachable(self.settings, exc, logged)) from exc
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
