"""The HTTP API for CS tooling, on the worker's Faust web server.

- ``GET /customers/{customer_id}``: health, score inputs and open alerts.
  Routed by Faust to the worker that owns the customer's table partition.
- ``GET /at-risk?segment=&limit=``: customers with an open ``churn_risk`` or
  ``at_risk`` episode, lowest health first, gathered from every worker.
- ``POST /events``: one event or a list, validated with the same contract
  as the Kafka path; all valid -> published, ``202``; any invalid -> ``400``
  naming each (nothing published); any the worker would refuse -> ``422``
  naming each (``future``: dated more than ``max_future_seconds`` ahead of this
  worker's clock; ``late``: before the watermark of its partition, when this
  worker owns it), nothing published; too large -> ``413``.
- ``GET /openapi.json``: the OpenAPI document of these endpoints.

A lookup that cannot be answered right now (partition moving, another worker
unreachable) is a ``503`` with ``Retry-After``: clients retry, nothing guesses.
"""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from faust.web import View

from cxstream.agents.openapi import openapi_document
from cxstream.agents.scoring import Scorer, late_reason
from cxstream.agents.tables import TableStore
from cxstream.engine.alerts import rfc3339
from cxstream.engine.events import FAMILY_OF, Event
from cxstream.errors import InvalidEvent
from cxstream.schemas.events import validate_event_obj
from cxstream.settings import Settings

__all__ = ["MAX_BATCH_EVENTS", "MAX_BODY_BYTES", "install_routes", "owned_partitions"]

MAX_BODY_BYTES = 1_048_576  # 1 MiB: a batch of ~1000 ordinary events
MAX_BATCH_EVENTS = 1000
MAX_AT_RISK_LIMIT = 1000
_PEER_TIMEOUT_S = 5.0
_FORWARDED = "X-Cxstream-Forwarded"  # a forwarded lookup is never forwarded again


def _json(view: View, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status,
                      headers=headers)


def _unavailable(view: View, why: str) -> Any:
    return _json(view, {"error": why, "retryable": True}, 503, {"Retry-After": "1"})


def _denied(view: View, request: Any, settings: Settings) -> Any | None:
    """A 401 unless the request carries the configured bearer token (if any)."""
    if settings.api_token is None:
        return None
    expected = f"Bearer {settings.api_token.get_secret_value()}"
    given = request.headers.get("Authorization", "")
    if hmac.compare_digest(given.encode(), expected.encode()):
        return None
    return _json(view, {"error": "missing or wrong bearer token"}, 401,
                 {"WWW-Authenticate": "Bearer"})


def install_routes(app: Any, settings: Settings, scorer: Scorer, customers: Any,
                   input_topics: dict[str, Any]) -> None:
    """Register the API's views on ``app``."""

    @app.page("/customers/{customer_id}")
    class CustomerView(View):
        async def get(self, request: Any, customer_id: str) -> Any:
            if (denied := _denied(self, request, settings)) is not None:
                return denied
            if app.rebalancing or app.in_recovery or not scorer.ready:
                return _unavailable(self, "partitions are being reassigned")
            if scorer.partition_of(customer_id) in owned_partitions(app, settings):
                st = TableStore(customers).get(customer_id)
                if st is None:
                    return _json(self, {"error": f"no customer {customer_id!r}"}, 404)
                body = scorer.engine.snapshot(st).to_dict()
                body["events"] = st.events
                body["pending_events"] = len(st.pending)
                return _json(self, body)
            if request.headers.get(_FORWARDED):
                return _unavailable(self, "this worker does not own the customer's partition")
            try:
                status, body = await _forward(app, customers, customer_id, request)
            except (TimeoutError, aiohttp.ClientError, LookupError) as exc:
                return _unavailable(self, f"the owning worker did not answer: {exc}")
            return _json(self, body, status)

    @app.page("/at-risk")
    class AtRiskView(View):
        async def get(self, request: Any) -> Any:
            if (denied := _denied(self, request, settings)) is not None:
                return denied
            segment = request.query.get("segment") or None
            try:
                limit = int(request.query.get("limit", "50"))
            except ValueError:
                return _json(self, {"error": "limit must be an integer"}, 400)
            if not 1 <= limit <= MAX_AT_RISK_LIMIT:
                return _json(self, {"error": f"limit must be 1..{MAX_AT_RISK_LIMIT}"}, 400)
            if app.rebalancing or app.in_recovery or not scorer.ready:
                return _unavailable(self, "partitions are being reassigned")
            rows = _local_at_risk(scorer, segment)
            if request.query.get("local") != "1":
                try:
                    rows += await _peer_at_risk(app, request, segment)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    return _unavailable(self, f"another worker did not answer: {exc}")
            rows.sort(key=lambda r: (r["health_score"], r["customer_id"]))
            return _json(self, {"customers": rows[:limit], "total": len(rows)})

    @app.page("/events")
    class EventsView(View):
        async def post(self, request: Any) -> Any:
            if (denied := _denied(self, request, settings)) is not None:
                return denied
            if (request.content_length or 0) > MAX_BODY_BYTES:
                return _json(self, {"error": f"body over {MAX_BODY_BYTES} bytes"}, 413)
            raw = await request.content.read(MAX_BODY_BYTES + 1)
            if len(raw) > MAX_BODY_BYTES:
                return _json(self, {"error": f"body over {MAX_BODY_BYTES} bytes"}, 413)
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return _json(self, {"error": f"invalid JSON: {exc}"}, 400)
            items = body if isinstance(body, list) else [body]
            if not items or len(items) > MAX_BATCH_EVENTS:
                return _json(self, {"error": f"send 1..{MAX_BATCH_EVENTS} events"}, 400)
            errors, valid = [], []
            for index, item in enumerate(items):
                try:
                    event = validate_event_obj(item)
                except InvalidEvent as exc:
                    errors.append({"index": index, "code": exc.code, "reason": exc.reason})
                    continue
                valid.append((event, item))
            if errors:
                return _json(self, {"error": "invalid events; nothing was published",
                                    "errors": errors}, 400)
            refused = _refused(scorer, settings, [event for event, _ in valid])
            if refused:
                return _json(self, {"error": "events the worker would refuse; nothing was "
                                    "published", "errors": refused}, 422)
            for event, item in valid:
                await input_topics[FAMILY_OF[event.type]].send(
                    key=event.customer_id.encode(), value=orjson.dumps(item))
            return _json(self, {"accepted": len(valid)}, 202)

    @app.page("/openapi.json")
    async def openapi(web: Any, request: Any) -> Any:
        return web.bytes(orjson.dumps(openapi_document(settings)),
                         content_type="application/json")


def _refused(scorer: Scorer, settings: Settings, events: list[Event]) -> list[dict[str, Any]]:
    """The events the worker would dead-letter as ``future`` or ``late``, as 422 errors.

    ``future`` against this worker's clock (the publish time will be about now);
    ``late`` only for partitions this worker owns, the only watermarks it knows:
    the watermark never goes back, so an event before it now is late when it comes.
    """
    now = time.time()
    limit = settings.max_future_seconds
    errors = []
    for index, event in enumerate(events):
        if event.occurred_at > now + limit:
            errors.append({"index": index, "code": "future", "reason": (
                f"occurred_at {rfc3339(event.occurred_at)} is more than {limit:g}s after "
                f"now ({rfc3339(now)}): a clock is wrong")})
            continue
        proc = scorer.processors.get(scorer.partition_of(event.customer_id))
        if proc is not None and event.occurred_at < proc.clock.watermark:
            errors.append({"index": index, "code": "late", "reason": late_reason(
                event.occurred_at, proc.clock.watermark, now,
                settings.allowed_lateness_seconds)})
    return errors


def owned_partitions(app: Any, settings: Settings) -> set[int]:
    """Partitions this worker's consumer holds now (the input topics are co-partitioned)."""
    first = settings.input_topics["logins"]
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == first}


async def _forward(app: Any, customers: Any, customer_id: str, request: Any
                   ) -> tuple[int, Any]:
    """Ask the other workers; the one that holds the customer's partition answers.

    Only the owner answers 200 or 404 (the others say 503), so this needs no
    assignment metadata beyond the list of workers, which is what makes it
    right during and just after a rebalance.
    """
    headers = {_FORWARDED: "1"}
    if auth := request.headers.get("Authorization"):
        headers["Authorization"] = auth
    timeout = aiohttp.ClientTimeout(total=_PEER_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for host in _peers(app):
            url = f"{host}/customers/{quote(customer_id, safe='')}"
            async with session.get(url, headers=headers) as resp:
                if resp.status in (200, 401, 404):
                    return resp.status, await resp.json()
    raise LookupError("no worker holds the customer's partition right now")


def _peers(app: Any) -> list[str]:
    """The other workers' base URLs, from the group's table metadata."""
    me = str(app.conf.canonical_url).rstrip("/")
    return sorted({str(h).rstrip("/") for h in app.router.tables_metadata()} - {me})


def _local_at_risk(scorer: Scorer, segment: str | None) -> list[dict[str, Any]]:
    return [
        snap.to_dict() for snap in scorer.at_risk.values()
        if segment is None or snap.segment == segment
    ]


async def _peer_at_risk(app: Any, request: Any, segment: str | None) -> list[dict[str, Any]]:
    """Ask every other worker for its local at-risk customers."""
    hosts = _peers(app)
    if not hosts:
        return []
    params = {"local": "1", "limit": str(MAX_AT_RISK_LIMIT)}
    if segment:
        params["segment"] = segment
    timeout = aiohttp.ClientTimeout(total=_PEER_TIMEOUT_S)
    rows: list[dict[str, Any]] = []
    auth = request.headers.get("Authorization")
    headers = {"Authorization": auth} if auth else {}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for host in hosts:
            async with session.get(f"{host}/at-risk", params=params, headers=headers) as resp:
                resp.raise_for_status()
                rows.extend((await resp.json())["customers"])
    return rows
