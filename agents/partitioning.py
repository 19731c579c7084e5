"""Where a customer's events land: Kafka's default (murmur2) partitioner on the key."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.partitioner import DefaultPartitioner

__all__ = ["partitioner_for"]


def partitioner_for(partitions: int) -> Callable[[str], int]:
    """customer_id -> partition, exactly as the producer places keyed messages."""
    part = DefaultPartitioner()
    all_parts = list(range(partitions))

    def partition_of(customer_id: str) -> int:
        return int(part(customer_id.encode(), all_parts, all_parts))

    return partition_of
