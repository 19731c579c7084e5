"""Why the two-worker metrics test failed one run in three: its read stopped on time.

The test read the metrics topic "until nothing new arrived for 5 s". On a loaded
2-core machine a consumer can go longer than that between two fetches, and the
read then stopped short: every metric window it had not reached yet looked
*missing* (``632 windows missing; 0 extra``). A read of outputs that are final
must go to the end offsets instead (``read_to_end``). Reproduced here with a
consumer that stalls once for longer than the quiet period.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cxstream.devtools.broker import BrokerStatus

from .helpers import read_to_end, run

pytestmark = pytest.mark.integration

RECORDS = 3_000
STALL_S = 2.0  # longer than the quiet period below: a loaded machine's pause


async def _fill(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(RECORDS):
            await producer.send(topic, orjson.dumps({"i": i}), key=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _read_until_quiet(bootstrap: str, topic: str, quiet: float) -> list[Any]:
    """The old way (the helper's ``settle``): stop once no fetch brought anything new
    for ``quiet`` seconds."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    last_new = loop.time()
    try:
        while True:
            # A fetch brings a few hundred records (the metrics topic held ~140,000).
            batch = await consumer.getmany(timeout_ms=500, max_records=300)
            for msgs in batch.values():
                out.extend(msgs)
                last_new = loop.time()
            if out and loop.time() - last_new > quiet:
                break
    finally:
        await consumer.stop()
    return out


def stall_fetches_once(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """After the first batch, fetches bring nothing for ``STALL_S`` (a broker or a
    machine too busy to answer), then go on."""
    real_getmany = AIOKafkaConsumer.getmany
    state = {"stalled": False}

    async def getmany(self: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        if state["stalled"] is False and getattr(self, "_seen_batch", False):
            state["stalled"] = True
            await asyncio.sleep(STALL_S)
            return {}
        batch = await real_getmany(self, *args, **kwargs)
        if batch:
            self._seen_batch = True  # type: ignore[attr-defined]
        return batch

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany)
    return state


def test_a_read_until_quiet_stops_short_when_fetches_stall_and_one_to_the_end_does_not(
    broker: BrokerStatus, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"reads{uuid.uuid4().hex[:8]}"
    run(_fill(broker.bootstrap, topic))

    stall = stall_fetches_once(monkeypatch)
    quiet = run(_read_until_quiet(broker.bootstrap, topic, quiet=STALL_S / 2))
    assert stall["stalled"] and len(quiet) < RECORDS  # what made windows look missing

    stall = stall_fetches_once(monkeypatch)
    assert len(run(read_to_end(broker.bootstrap, topic))) == RECORDS
    assert stall["stalled"]
