"""The worker's ``/metrics`` page, through its real route, without starting the web server."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import make_mocked_request
from prometheus_client.parser import text_string_to_metric_families

from cxstream.agents.app import Service
from tests.agents.conftest import Harness
from tests.factories import login


async def get(service: Service, path: str) -> Any:
    """Route a GET through the app's aiohttp router to its handler, as the server would."""
    web_app = service.app.web.web_app  # type: ignore[attr-defined]  # the aiohttp driver
    request = make_mocked_request("GET", path, app=web_app)
    match = await web_app.router.resolve(request)
    assert match.http_exception is None, f"no route for GET {path}: {match.http_exception}"
    return await match.handler(request)


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def test_the_metrics_page_serves_the_worker_counters(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("c1", 0, 9))
        await harness.score(agent, b"{oops", key=b"c2")

    response = await get(service, "/metrics")

    assert response.status == 200
    assert response.content_type == "text/plain"
    found = samples(response.body)
    assert found[("cxstream_events_processed_total", (("type", "login"),))] == 1
    assert found[("cxstream_dead_letters_total", (("reason", "invalid_json"),))] == 1
    assert found[("cxstream_table_customers", ())] == 1
    assert found[("cxstream_processing_seconds_count", ())] == 2  # the dead letter too


async def test_the_metrics_page_shows_only_the_service_registry(
    service: Service, harness: Harness
) -> None:
    response = await get(service, "/metrics")

    names = {name for name, _ in samples(response.body)}
    assert "cxstream_duplicate_events_total" in names
    # The service's metrics and Faust's internals, each under its own prefix.
    assert all(name.startswith(("cxstream_", "faust_")) for name in names), sorted(names)
    assert any(name.startswith("faust_") for name in names)


async def test_the_metrics_page_never_names_a_customer(
    service: Service, harness: Harness
) -> None:
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("acme-7f3a", 0, 9, segment="pro"))
        await harness.score(agent, login("acme-7f3a", 0, 9, segment="pro"))  # a duplicate
        await harness.score(agent, b"[]", key=b"acme-7f3a")
        # 30 days on, past any customer's inactivity line: acme's alert is raised.
        await harness.score(agent, login("globex-1", 30, 9))

    body = (await get(service, "/metrics")).body

    assert harness.sample("cxstream_alerts_total", kind="inactivity", state="raised") == 1
    assert b"acme" not in body
    assert b"globex" not in body
