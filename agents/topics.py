"""Creating the service's topics with the partition counts and policies it needs.

Kafka auto-creates unknown topics with one partition on first publish, which
would silently break co-partitioning of the input families with the customer
table; so both the worker and the publisher create every topic up front, and
an existing topic with the wrong partition count is a start-up error.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from cxstream.agents.security import kafka_options
from cxstream.errors import ConfigError
from cxstream.settings import Settings

__all__ = ["ensure_topics", "topic_specs"]

COMPACT = {"cleanup.policy": "compact"}
# A run's outbox record holds its learning rows and metric deltas: a partition that
# crosses several week boundaries at once (a backlog, a version arriving) snapshots and
# settles every customer each time, which can pass Kafka's default 1 MB. The topics
# that carry such records take up to this; the worker's producer and consumers are
# sized to match (app.py).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_LARGE = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
TABLES = ("customers", "clocks", "metric-accumulators")
LEADER_WAIT_SECONDS = 30.0


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic name -> (partitions, config) for every topic the service uses."""
    n = settings.topic_partitions
    specs: dict[str, tuple[int, dict[str, str]]] = {
        name: (n, {}) for name in settings.input_topics.values()
    }
    specs[settings.topic("alerts")] = (n, {})
    specs[settings.topic("metrics")] = (n, dict(COMPACT))
    specs[settings.topic("health")] = (n, dict(COMPACT))
    # A handful of churn model versions a year, in order: one partition.
    specs[settings.topic("models")] = (1, dict(COMPACT))
    specs[settings.topic("deadletters")] = (n, {})
    specs[settings.internal_topic("metric-deltas")] = (n, dict(_LARGE))  # a run's, per route
    # Ticks only wake a partition's clock; an hour of them is more than any restart needs.
    specs[settings.internal_topic("ticks")] = (n, {"retention.ms": str(3_600_000)})
    # Learning rows: every worker re-reads them all at start, so they must outlive the
    # horizon plus the training window (30 days + 12 weeks by default): 150 days.
    specs[settings.internal_topic("learning")] = (n, {"retention.ms": str(150 * 86_400_000),
                                                      **_LARGE})
    # Faust's own topics, created here so they exist (with leaders) before it checks them.
    for table in TABLES:
        specs[f"{settings.app_id}-{table}-changelog"] = (n, {**COMPACT, **_LARGE})
    specs[f"{settings.app_id}-__assignor-__leader"] = (1, dict(COMPACT))
    return specs


async def ensure_topics(settings: Settings) -> None:
    """Create missing topics; fail if an input topic has another partition count."""
    specs = topic_specs(settings)
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=parts, replication_factor=1, topic_configs=cfg)
            for name, (parts, cfg) in specs.items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        described = await _wait_for_leaders(admin, list(specs))
        inputs = set(settings.input_topics.values())
        for desc in described:
            if desc["topic"] not in inputs:
                continue
            parts = len(desc.get("partitions") or [])
            if parts and parts != settings.topic_partitions:
                raise ConfigError(
                    f"topic {desc['topic']} has {parts} partitions but topic_partitions is "
                    f"{settings.topic_partitions}; set CXSTREAM_TOPIC_PARTITIONS={parts} "
                    "or use a new topic_prefix"
                )
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> list[dict[str, Any]]:
    """Describe topics until every partition has a leader (new topics take a moment)."""
    deadline = time.monotonic() + LEADER_WAIT_SECONDS
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(names)
        ready = all(
            d.get("error_code", 0) == 0
            and d.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in d["partitions"])
            for d in described
        )
        if ready or time.monotonic() > deadline:
            return described
        await asyncio.sleep(0.2)
