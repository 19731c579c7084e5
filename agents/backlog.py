"""Which input partitions still have a backlog for this consumer group.

The watermark of a partition is held back by every input topic that still
has records to deliver (see ``cxstream.partition.StreamClock``). A topic
whose first record has not arrived yet can only be known to have a backlog
by asking the broker: its end offset against the group's committed offset.
This asks once per partition per assignment, with its own small consumer
that joins no group.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

__all__ = ["Backlog", "BacklogProbe"]


class Backlog(dict[str, int]):
    """{topic: end offset} for the topics with a backlog; ``committed``: every topic's
    committed offset (the first offset that will be delivered)."""

    committed: dict[str, int]

    def __init__(self, ends: dict[str, int], committed: dict[str, int]) -> None:
        super().__init__(ends)
        self.committed = committed


class BacklogProbe:
    """``await probe(partition)`` -> a ``Backlog`` of the partition's input topics."""

    def __init__(self, kafka: dict[str, Any], group_id: str, topics: list[str]) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self.topics = topics
        self._consumer: AIOKafkaConsumer | None = None

    async def __call__(self, partition: int) -> Backlog:
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
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                **self.kafka, group_id=self.group_id,
                enable_auto_commit=False,
            )
            await self._consumer.start()
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
