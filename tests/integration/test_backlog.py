"""The backlog probe against the real broker, including a first call cut short.

When two workers start together, Faust cancels the ``on_rebalance_complete``
handler of the first one when the second joins, possibly while the probe's
consumer is still starting. The next call must still answer (it used to raise
``AttributeError`` forever after, which crashed the worker's table recovery).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cxstream.agents.backlog import BacklogProbe
from cxstream.devtools.broker import BrokerStatus

from .helpers import produce_raw

pytestmark = pytest.mark.integration

# Cancel this long after the first call began: 0 lands in the client's bootstrap,
# the later ones anywhere in start() or in the queries that follow it.
CANCEL_AFTER_S = (0.0, 0.001, 0.002, 0.005, 0.01, 0.03)


async def _scenario(bootstrap: str) -> None:
    run = uuid.uuid4().hex[:10]
    busy, idle = f"bl{run}.logins", f"bl{run}.emails"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in (busy, idle)])
    finally:
        await admin.close()
    await produce_raw(bootstrap, busy, [(b"k", b"v")] * 3)
    for delay in CANCEL_AFTER_S:
        probe = BacklogProbe({"bootstrap_servers": bootstrap}, f"bl{run}", [busy, idle])
        try:
            first = asyncio.ensure_future(probe(0))
            await asyncio.sleep(delay)
            first.cancel()
            try:
                await first
            except asyncio.CancelledError:
                pass
            # No committed offsets: the topic with records has a backlog up to its end.
            assert await asyncio.wait_for(probe(0), 30) == {busy: 3}, delay
        finally:
            await probe.close()


def test_the_probe_answers_after_its_first_call_was_cancelled(broker: BrokerStatus) -> None:
    asyncio.run(_scenario(broker.bootstrap))
