"""Records fetched while Faust finishes a recovery are not thrown away.

After ``on_rebalance_complete`` Faust resumes the stream partitions, awaits a seek
and only then calls ``flow_control.resume()``, which clears every stream queue
(faust-streaming 0.15.3, ``Recovery.on_recovery_completed``). A worker that had
just restored tables already has its fetcher running, so records delivered in
that await were cleared unprocessed; for a partition without a committed offset
nothing read them again, and the worker never consumed it (the two-worker stall
of ``tests/integration/test_metrics_independent.py``). Here the conductor's step
(wait for flow control, then put into the agent's queue) and Faust's next step
(``flow_control.resume()``) run after the worker's real handler.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

import cxstream.agents.app as app_module
from cxstream.agents.app import Service


async def test_a_record_delivered_before_faust_resumes_the_flow_survives_the_clear(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = service.app
    monkeypatch.setattr(app_module, "owned_partitions", lambda app, settings: {0})
    monkeypatch.setattr(app.consumer, "assignment", lambda: set())  # no consumer thread here
    queue = app.FlowControlQueue(maxsize=16, clear_on_resume=True)  # a stream's queue

    await app.on_rebalance_complete.send()  # the worker's handler: index partitions, ...
    assert service.scorer.ready and 0 in service.scorer.processors

    async def conductor_delivers(record: Any) -> None:  # faust.transport.conductor
        await app.flow_control.acquire()
        queue.put_nowait(record)

    delivery = asyncio.ensure_future(conductor_delivers("record at offset 0"))
    await asyncio.sleep(0.05)  # Faust awaits perform_seek(): the fetcher runs meanwhile
    app.flow_control.resume()  # Faust: clears the stream queues, then lets flow go on
    await asyncio.wait_for(delivery, 5)

    assert queue.qsize() == 1, "the record delivered before resume() was cleared"


async def test_owned_stream_partitions_without_a_commit_are_read_from_the_beginning(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust 0.15.3 can consume and drop a stream partition's records during a table
    recovery (an empty set of partitions to fetch makes aiokafka return every buffered
    one); without a committed offset its own seek never reads them again."""
    app, settings = service.app, service.settings
    logins, deltas = settings.input_topics["logins"], settings.internal_topic("metric-deltas")
    changelog = f"{settings.app_id}-customers-changelog"
    assigned = {TP(logins, 0), TP(logins, 1), TP(deltas, 0), TP(changelog, 0)}
    committed = {(logins, 1): 42, (deltas, 0): 0}  # logins[0]: never committed
    sought: list[tuple[tuple[str, int], int]] = []

    async def probe_committed(topic: str, partition: int) -> int | None:
        return committed.get((topic, partition))

    async def seek(tp: Any, offset: int) -> None:
        sought.append(((tp.topic, tp.partition), offset))

    monkeypatch.setattr(app.consumer, "assignment", lambda: assigned)
    monkeypatch.setattr(app.consumer, "seek", seek)
    probe = app_module.BacklogProbe({}, settings.app_id, [logins])
    monkeypatch.setattr(probe, "committed", probe_committed)

    await app_module.reread_uncommitted(app, probe, [logins, deltas])

    # Committed 0 is skipped by aiokafka's seek_to_committed too; the changelog is Faust's.
    assert sorted(sought) == sorted([((logins, 0), 0), ((deltas, 0), 0)])
