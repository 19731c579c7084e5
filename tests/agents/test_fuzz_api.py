"""``POST /events`` under hostile bodies: 10,000 mutated requests, zero server errors.

Every answer is 202 (all valid, published), 400 (named reasons) or 413 (too
large); what was accepted is exactly what was published.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from cxstream.agents.app import Service
from cxstream.schemas.events import validate_event_obj

CASES = 10_000
SEED = 20261123

VALID: list[dict[str, Any]] = [
    {"event_id": "e1", "customer_id": "c1", "type": "login",
     "occurred_at": "2026-03-01T09:30:00Z", "segment": "pro"},
    {"event_id": "e2", "customer_id": "c2", "type": "survey.response", "survey": "csat",
     "score": 4, "occurred_at": "2026-03-01T10:00:00+02:00"},
    {"event_id": "e3", "customer_id": "c3", "type": "ticket.opened", "ticket_id": "t1",
     "handle_seconds": 120.5, "occurred_at": "2026-03-01T11:00:00Z"},
]
HOSTILE = [None, True, -1, 10**30, 1e308, "NaN", "", "x" * 200, [], {}, "2026-03-01",
           "1800-01-01T00:00:00Z", "9999-12-31T23:59:59Z", {"deep": [[[[[]]]]]}, "\x00"]


def mutate(rng: random.Random) -> bytes:
    """One hostile request body, from a valid event or batch."""
    body: Any = [dict(rng.choice(VALID)) for _ in range(rng.randint(1, 3))]
    for item in body:
        for _ in range(rng.randint(0, 3)):
            key = rng.choice([*item.keys(), "unknown_field", "score", "survey"])
            if rng.random() < 0.3:
                item.pop(key, None)
            else:
                item[key] = rng.choice(HOSTILE)
    if len(body) == 1 and rng.random() < 0.5:
        body = body[0]
    raw = json.dumps(body).encode() if rng.random() < 0.9 else b"["
    if rng.random() < 0.2:  # byte-level damage
        raw = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        raw = bytes(raw)
    if rng.random() < 0.01:
        raw = b"[" + b" " * 1_048_600 + b"]"
    return raw


async def test_ten_thousand_hostile_bodies_get_202_400_or_413_never_a_crash(
    service: Service,
) -> None:
    rng = random.Random(SEED)
    statuses: dict[int, int] = {}
    accepted = 0
    async with TestClient(TestServer(service.app.web.web_app)) as client:  # type: ignore[attr-defined]
        for _ in range(CASES):
            raw = mutate(rng)
            resp = await client.post("/events", data=raw,
                                     headers={"Content-Type": "application/json"})
            body = await resp.json()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            assert resp.status in (202, 400, 413), (resp.status, raw[:200], body)
            if resp.status == 202:
                accepted += body["accepted"]
            elif resp.status == 400:
                assert body["error"]
                for err in body.get("errors", []):
                    assert err["reason"] and err["code"]
    published = sum(t.send.await_count for t in service.family_topics.values())
    assert published == accepted
    assert statuses.get(202) and statuses.get(400) and statuses.get(413), statuses
    # Everything that was published is a valid event.
    for topic in service.family_topics.values():
        for call in topic.send.await_args_list:
            validate_event_obj(orjson.loads(call.kwargs["value"]))
