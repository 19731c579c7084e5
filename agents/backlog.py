"""Which input partitions still have a backlog for this consumer group.

The watermark of a partition is held back by every input topic that still
has records to deliver (see ``cxstream.partition.StreamClock``). A topic
whose first record has not arrived yet can only be known to have a backlog
by asking the broker: its end offset against the group's committed offset.
This asks once per partition per assignment, with its own small consumer
that joins no group.

The first call starts that consumer, and it is made from the worker's
``on_rebalance_complete`` handler, which Faust cancels when another rebalance
begins (two workers starting together). A consumer whose ``start()`` was cut
short is never kept: it is stopped and the next call starts a fresh one.
Keeping it broke every later call (``AttributeError`` on its missing fetcher),
which crashed the worker's table recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

__all__ = ["PROBE_TIMEOUT_S", "Backlog", "BacklogProbe"]

# The probe runs inside Faust's table recovery, which keeps the worker's partitions
# paused until it returns, and aiokafka's ``committed()`` retries for as long as the
# group coordinator is unavailable. A worker that fails saying so beats one that
# silently stops consuming.
PROBE_TIMEOUT_S = 60.0


class Backlog(dict[str, int]):
    """{topic: end offset} for the topics with a backlog; ``committed``: every topic's
    committed offset (the first offset that will be delivered)."""

    committed: dict[str, int]

    def __init__(self, ends: dict[str, int], committed: dict[str, int]) -> None:
        super().__init__(ends)
        self.committed = committed


class BacklogProbe:
    """``await probe(partition)`` -> a ``Backlog`` of the partition's input topics."""

    def __init__(self, kafka: dict[str, Any], group_id: str, topics: list[str],
                 timeout: float = PROBE_TIMEOUT_S) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.topics = topics
        self.timeout = timeout
        self._consumer: AIOKafkaConsumer | None = None
        self._starting = asyncio.Lock()  # one start at a time; callers wait for it

    async def __call__(self, partition: int) -> Backlog:
        try:
            return await asyncio.wait_for(self._ask(partition), self.timeout)
        except TimeoutError:
            raise TimeoutError(
                f"backlog probe: no answer from the broker about partition {partition} of "
                f"{self.topics} for group {self.group_id!r} in {self.timeout:g}s") from None

    async def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset of one partition (None: nothing committed)."""
        async def ask() -> int | None:
            consumer = await self._ensure()
            return await consumer.committed(TopicPartition(topic, partition))  # type: ignore[no-any-return]

        try:
            return await asyncio.wait_for(ask(), self.timeout)
        except TimeoutError:
            raise TimeoutError(
                f"backlog probe: no answer from the broker about the committed offset of "
                f"{topic}[{partition}] for group {self.group_id!r} in {self.timeout:g}s") from None

    async def _ask(self, partition: int) -> Backlog:
        consumer = await self._ensure()
        tps = [TopicPartition(t, partition) for t in self.topics]
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        backlog: dict[str, int] = {}
        starts: dict[str, int] = {}
        for tp in tps:
            committed = await consumer.committed(tp)
            start = committed if committed is not None else begins[tp]
            starts[tp.topic] = start
            if ends[tp] > start:
                backlog[tp.topic] = ends[tp]
        return Backlog(backlog, starts)

    async def _ensure(self) -> AIOKafkaConsumer:
        async with self._starting:
            if self._consumer is None:
                consumer = AIOKafkaConsumer(
                    **self.kafka, group_id=self.group_id,
                    enable_auto_commit=False,
                )
                try:
                    await consumer.start()
                except BaseException:  # cancelled (a new rebalance) or failed: not half-kept
                    await asyncio.shield(_stop_quietly(consumer))
                    raise
                self._consumer = consumer
            return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Release what a half-started consumer opened (its client's connections)."""
    with contextlib.suppress(Exception):
        await consumer.stop()
