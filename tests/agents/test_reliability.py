"""Promises the worker keeps when input or code misbehaves: poison pills, tokens, comments."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from cxstream.agents.app import Service
from cxstream.agents.scoring import POISON_ATTEMPTS
from cxstream.engine.engine import Engine
from cxstream.engine.events import Event
from tests.agents.conftest import Harness
from tests.factories import at, login

TOKEN = "s3cret-token-value"


async def call(service: Service, method: str, path: str, token: str | None = None) -> Any:
    """Route a request through the app's aiohttp router to its handler."""
    web_app = service.app.web.web_app  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = make_mocked_request(method, path, app=web_app, headers=headers)
    match = await web_app.router.resolve(request)
    assert match.http_exception is None, match.http_exception
    request._match_info = match  # what aiohttp's request pipeline does after resolving
    return await match.handler(request)


async def test_an_event_that_makes_processing_fail_is_dead_lettered_and_the_stream_goes_on(
    service: Service, harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_apply = Engine.apply
    calls: list[str] = []

    def apply(self: Engine, state: Any, event: Event, *args: Any) -> Any:
        calls.append(event.customer_id)
        if event.customer_id == "poison":
            raise ZeroDivisionError("boom")
        return real_apply(self, state, event, *args)

    monkeypatch.setattr(Engine, "apply", apply)
    async with service.score_events.test_context() as agent:
        await harness.score(agent, login("poison", 0, 9))
        await harness.score(agent, login("c1", 0, 10))

    assert calls.count("poison") == POISON_ATTEMPTS
    (key, dead), = harness.dead_letters()
    assert (key, dead["code"]) == (b"poison", "processing_error")
    assert "ZeroDivisionError: boom" in dead["reason"]
    assert harness.customer("poison") is None  # nothing half-written
    assert harness.customer("c1") is not None
    assert harness.sample("cxstream_dead_letters_total", reason="processing_error") == 1


@pytest.mark.parametrize("settings_overrides", [{"api_token": TOKEN}])
async def test_with_a_token_configured_the_api_needs_it(service: Service) -> None:
    for path in ("/at-risk", "/customers/c1"):
        denied = await call(service, "GET", path)
        assert denied.status == 401, path
        assert denied.headers["WWW-Authenticate"] == "Bearer"
        wrong = await call(service, "GET", path, token="nope")
        assert wrong.status == 401
    ok = await call(service, "GET", "/at-risk?local=1", token=TOKEN)
    assert ok.status == 200
    assert (await call(service, "GET", "/metrics")).status == 200  # scrapers stay open
    assert TOKEN not in repr(service.settings) and TOKEN not in str(service.settings)


async def test_without_a_token_the_api_is_open(service: Service) -> None:
    assert (await call(service, "GET", "/at-risk?local=1")).status == 200


def _nps_story() -> list[Event]:
    base = at(0, 9)
    return [
        Event("s1", "c1", "survey.response", base, survey="nps", score=2.0,
              comment="Your billing page made me furious"),
        Event("clock", "c2", "login", base + 3600),
    ]


async def _feedback_alerts(service: Service, harness: Harness) -> list[dict[str, Any]]:
    async with service.score_events.test_context() as agent:
        for ev in _nps_story():
            await harness.score(agent, ev)
    return [a for _, a in harness.alerts() if a["kind"] == "feedback"]


async def test_survey_comments_stay_out_of_alerts_by_default(
    service: Service, harness: Harness
) -> None:
    alerts = await _feedback_alerts(service, harness)
    assert [a["reasons"][0]["code"] for a in alerts] == ["nps_detractor"]
    assert "furious" not in orjson.dumps(alerts).decode()
    assert "furious" not in harness.svc.customers["c1"].decode()  # not even in state


@pytest.mark.parametrize("settings_overrides", [{"include_comments": True}])
async def test_survey_comments_appear_in_feedback_alerts_when_enabled(
    service: Service, harness: Harness
) -> None:
    alerts = await _feedback_alerts(service, harness)
    assert "Your billing page made me furious" in alerts[0]["reasons"][0]["message"]
