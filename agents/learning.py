"""Every worker follows the learning topic and trains the same churn model versions.

Each partition's scorer publishes its learning rows (weekly feature snapshots,
cancellations, boundary markers) to its partition of ``{app_id}-learning``.
This follower reads *every* partition of that topic, from the beginning, with
a consumer of its own that joins no group, into the worker's ``Learner``; a
version is trained as soon as every partition has passed its boundary, so all
workers train the same versions from the same rows, and a restarted worker
rebuilds them by reading the topic again. Partitions that waited for a version
are woken (``Scorer.wake``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from cxstream.agents.security import kafka_options
from cxstream.agents.topics import MAX_MESSAGE_BYTES
from cxstream.engine.alerts import rfc3339
from cxstream.engine.churn import version_record
from cxstream.engine.learning import Learner, row_from_list
from cxstream.settings import Settings

__all__ = ["follow"]

log = logging.getLogger(__name__)
_WAIT_REPORT_S = 60.0  # how often a partition still waiting for a version is logged


async def follow(settings: Settings, learner: Learner, scorer: Any, metrics: Any,
                 models: Any) -> None:
    """Consume the learning topic forever (until the worker stops); publish each version
    it settles to ``models`` (every worker settles the same ones: the compacted topic
    keeps one record per version)."""
    topic = settings.internal_topic("learning")
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None,
                                enable_auto_commit=False,
                                max_partition_fetch_bytes=MAX_MESSAGE_BYTES)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        await consumer.seek_to_beginning()
        loop = asyncio.get_running_loop()
        reported = loop.time()
        late = 0
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                for message in messages:
                    rows = [row_from_list(r) for r in orjson.loads(message.value)]
                    learner.add(rows, tp.partition)
            trained = learner.train_ready()
            for boundary in trained:
                record = version_record(boundary, learner.versions[boundary],
                                        learner.config.effective_delay_days)
                await models.send(key=record["version"].encode(), value=orjson.dumps(record))
            if trained:
                latest = learner.versions[trained[-1]]
                metrics.model_version.set(trained[-1])
                log.info("churn model versions %s trained (newest: %s)", len(trained),
                         "warming up" if latest is None else
                         f"{latest.rows} snapshots, {latest.churned} churned, "
                         f"alert line {latest.threshold:.1%}")
                scorer.wake()
            for partition, boundary in learner.started_late[late:]:
                log.warning("partition %s said it was empty, then got customers from the week "
                            "of %s: versions up to %s were settled without them (replay, in "
                            "event-time order, would have waited)", partition,
                            rfc3339(boundary), rfc3339(learner.settled_until()))
            late = len(learner.started_late)
            if loop.time() - reported > _WAIT_REPORT_S:
                reported = loop.time()
                waiting = [p for p, proc in scorer.processors.items() if proc.waiting]
                if waiting:
                    log.warning("partitions %s wait for a churn model version; the learner "
                                "waits for partitions %s to pass the boundary", waiting,
                                learner.waiting_for())
    finally:
        await consumer.stop()
