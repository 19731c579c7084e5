"""``POST /events`` tells the truth: an event the worker would dead-letter is refused up
front (422, named), and nothing of the request is published."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from cxstream.agents.app import Service
from cxstream.engine.alerts import rfc3339
from tests.agents.conftest import Harness
from tests.factories import login


def body(event_id: str, customer_id: str, occurred_at: float) -> dict[str, Any]:
    return {"event_id": event_id, "customer_id": customer_id, "type": "login",
            "occurred_at": rfc3339(occurred_at)}


def published(service: Service) -> int:
    return sum(t.send.await_count for t in service.family_topics.values())


async def post(service: Service, payload: Any) -> tuple[int, dict[str, Any]]:
    async with TestClient(TestServer(service.app.web.web_app)) as client:  # type: ignore[attr-defined]
        resp = await client.post("/events", json=payload)
        return resp.status, await resp.json()


async def test_an_event_dated_far_after_now_is_refused_as_future(service: Service) -> None:
    now = time.time()
    ok = body("e1", "c1", now - 60)
    wrong_clock = body("e2", "c2", now + 2 * service.settings.max_future_seconds)

    status, answer = await post(service, [ok, wrong_clock])

    assert status == 422
    assert [(e["index"], e["code"]) for e in answer["errors"]] == [(1, "future")]
    assert "a clock is wrong" in answer["errors"][0]["reason"]
    assert published(service) == 0


async def test_an_event_before_an_owned_partitions_watermark_is_refused_as_late(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 10, 9))  # the partition's stream moves on
    watermark = service.scorer.processors[0].clock.watermark
    assert watermark > 0

    status, answer = await post(service, body("old", "c9", watermark - 1))
    assert status == 422
    assert [(e["index"], e["code"]) for e in answer["errors"]] == [(0, "late")]

    status, answer = await post(service, body("fine", "c9", watermark + 1))
    assert (status, answer) == (202, {"accepted": 1})
    assert published(service) == 1
