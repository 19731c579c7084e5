"""The backlog probe survives a rebalance that cancels its first call mid-start.

The worker's first probe call starts the probe's consumer from the
``on_rebalance_complete`` handler, which Faust cancels when another rebalance
begins, as when two workers start together. The probe used to keep the
half-started consumer, so every later call raised ``AttributeError`` (no
fetcher) and the next recovery crashed the worker. No broker here: the
client's bootstrap is held open to cancel inside ``start()`` deterministically;
``tests/integration/test_backlog.py`` does the same against the real broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiokafka.client
import pytest

from cxstream.agents.backlog import BacklogProbe


class _Refused(Exception):
    """What the second bootstrap raises: proof that a fresh start was attempted."""


async def test_a_call_cancelled_inside_start_leaves_no_half_started_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered = asyncio.Event()
    calls = 0

    async def bootstrap(self: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await asyncio.Event().wait()  # a slow broker: the rebalance cancels us here
        raise _Refused

    monkeypatch.setattr(aiokafka.client.AIOKafkaClient, "bootstrap", bootstrap)
    probe = BacklogProbe({"bootstrap_servers": "127.0.0.1:9"}, "group", ["t.logins"])

    first = asyncio.ensure_future(probe(0))
    await asyncio.wait_for(entered.wait(), 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first

    # The next call starts a new consumer (and so reaches bootstrap again) instead of
    # using the one whose start was cut short (AttributeError: no fetcher).
    with pytest.raises(_Refused):
        await asyncio.wait_for(probe(1), 5)
    assert calls == 2
    # A failed start is not kept either: the call after that tries afresh too.
    with pytest.raises(_Refused):
        await asyncio.wait_for(probe(2), 5)
    assert calls == 3
    await probe.close()


async def test_a_probe_that_gets_no_answer_fails_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faust keeps the worker's partitions paused while the probe runs: a probe that
    waited forever (a coordinator that never answers) would stall the worker silently."""

    async def never(self: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(aiokafka.client.AIOKafkaClient, "bootstrap", never)
    probe = BacklogProbe({"bootstrap_servers": "127.0.0.1:9"}, "group", ["t.logins"],
                         timeout=0.2)
    with pytest.raises(TimeoutError, match="no answer from the broker about partition 3"):
        await asyncio.wait_for(probe(3), 5)
    await probe.close()
