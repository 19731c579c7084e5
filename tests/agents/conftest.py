"""The Faust agents on an app built by ``create_app``, driven by ``test_context()``, no broker.

Every test gets a fresh app and a fresh Prometheus registry. Nothing leaves the
process: the output topics' ``send`` are ``AsyncMock``s, the Scorer's backlog
probe says "no backlog" without asking a broker, and any attempt to open a Kafka
connection fails the test at once.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import aiokafka.client
import aiokafka.conn
import orjson
import pytest
from prometheus_client import CollectorRegistry

from cxstream.agents.app import Service, create_app
from cxstream.agents.backlog import Backlog
from cxstream.engine.events import Event
from cxstream.engine.state import CustomerState
from cxstream.schemas.events import event_to_json
from cxstream.settings import Settings
from tests.factories import RULE_KINDS

# Where put() waits for the agent; a crashed or stuck agent fails the test instead of hanging.
PUT_TIMEOUT_S = 5.0


@pytest.fixture(autouse=True)
def _no_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt to a broker fails the test."""

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tests/agents must not connect to Kafka")

    monkeypatch.setattr(aiokafka.client.AIOKafkaClient, "bootstrap", refuse)
    monkeypatch.setattr(aiokafka.client, "create_conn", refuse)
    monkeypatch.setattr(aiokafka.conn, "create_conn", refuse)


@pytest.fixture()
def registry() -> CollectorRegistry:
    """A fresh registry: counters start at zero in every test."""
    return CollectorRegistry()


@pytest.fixture()
def settings_overrides() -> dict[str, Any]:
    """Settings the ``service`` is built with; parametrize this name to change them."""
    return {}


@pytest.fixture()
def settings_factory(tmp_path: Path) -> Any:
    """``settings_factory(**overrides)``: settings for an in-memory app with one partition."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "store": "memory://",
            "app_id": f"t{uuid.uuid4().hex[:16]}",
            "topic_partitions": 1,
            "data_dir": tmp_path,
            "kafka_bootstrap": "127.0.0.1:9",  # discard port: nothing listens there
            "publish_grace_seconds": 0.0,
            # The rule-based kinds these tests were written for; churn_risk has its own.
            "profile": {"alert_kinds": list(RULE_KINDS)},
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture()
async def service(
    settings_factory: Any,
    settings_overrides: dict[str, Any],
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> Service:
    """The worker as ``create_app`` builds it, ready for ``agent.test_context()``."""
    svc = create_app(settings_factory(**settings_overrides), registry=registry)
    svc.app.loop = asyncio.get_running_loop()
    svc.app.finalize()
    svc.app.flow_control.resume()

    async def no_backlog(partition: int) -> Backlog:
        return Backlog({}, dict.fromkeys(svc.scorer.inputs, 0))

    monkeypatch.setattr(svc.scorer, "probe", no_backlog)
    # Every input looks read to its end by a fetch made just now: nothing holds the
    # clock back but the events themselves (the live merge is tested on the broker).
    monkeypatch.setattr(svc.scorer, "highwater", lambda tp: 0)
    monkeypatch.setattr(svc.scorer, "polled", lambda tp: time.time())
    svc.scorer.ready = True  # no rebalance happens under test_context
    outputs = output_topics(svc)
    for topic in outputs.values():
        monkeypatch.setattr(topic, "send", AsyncMock())
    # The Scorer publishes through these same topic objects, so the mocks see its sends.
    assert svc.scorer.topics.alerts is svc.alerts_topic
    assert svc.scorer.topics.deltas is svc.deltas_topic
    assert svc.scorer.topics.deadletters is svc.deadletters_topic
    for name, topic in vars(svc.scorer.topics).items():
        assert any(topic is t for t in outputs.values()), f"scorer topic {name} is not mocked"
    return svc


def output_topics(svc: Service) -> dict[str, Any]:
    """Every topic the service writes to, by ``Service`` field name (all but the input)."""
    topics = {
        name: getattr(svc, name)
        for name in svc._fields
        if name.endswith("_topic") and name != "events_topic"
    }
    # POST /events publishes to the family topics.
    topics.update({f"{family}_family_topic": t for family, t in svc.family_topics.items()})
    return topics


class Harness:
    """Feeds the agents like the consumer would and decodes what they sent.

    ``score`` and ``aggregate`` return once the agent has handled the message;
    a crash inside the agent is raised there, and an agent that never finishes
    fails after ``PUT_TIMEOUT_S`` rather than hanging the suite.
    """

    def __init__(self, svc: Service, registry: CollectorRegistry) -> None:
        self.svc = svc
        self.registry = registry
        self.handled: list[tuple[str, int]] = []
        self.agents: list[Any] = []
        real_handle = svc.scorer.handle_batch

        async def recording_handle(events: Any) -> None:
            await real_handle(events)
            self.handled.extend((ev.message.topic, ev.message.offset) for ev in events)

        # The agent looks ``scorer.handle_batch`` up per batch, so this sees every one.
        svc.scorer.handle_batch = recording_handle  # type: ignore[method-assign]

    def topic_of(self, family: str) -> str:
        return self.svc.settings.topic(family)

    async def score(
        self,
        agent: Any,
        value: Event | bytes | None,
        *,
        key: bytes | None = b"c1",
        family: str = "logins",
    ) -> int:
        """Deliver one message to ``score_events``; an ``Event`` goes to its family's topic.

        Returns the message's offset.
        """
        if isinstance(value, Event):
            key, family, value = value.customer_id.encode(), value.family, event_to_json(value)
        # AgentTestWrapper names message.topic after its "original channel"; the real one
        # subscribes to all five input topics, which has no single name.
        self._track(agent)
        agent.original_channel = self.topic_of(family)
        offset: int = agent.sent_offset
        await asyncio.wait_for(agent.put(value=value, key=key), PUT_TIMEOUT_S)
        await self._until(lambda: (self.topic_of(family), offset) in self.handled, agent)
        return offset

    async def score_batch(self, agent: Any, values: list[Event | bytes]) -> list[int]:
        """Deliver messages to ``score_events`` as one batch (all on the logins topic
        unless an ``Event`` says otherwise); returns their offsets.

        The agent takes a batch once it holds ``SCORE_BATCH`` messages, so the test
        sets that to ``len(values)`` first (``batch_of`` fixture)."""
        self._track(agent)
        sent = []
        for value in values:
            key, family = b"c1", "logins"
            if isinstance(value, Event):
                key, family, value = (value.customer_id.encode(), value.family,
                                      event_to_json(value))
            agent.original_channel = self.topic_of(family)
            sent.append((self.topic_of(family), agent.sent_offset))
            await asyncio.wait_for(agent.put(value=value, key=key, wait=False), PUT_TIMEOUT_S)
        await self._until(lambda: all(s in self.handled for s in sent), agent)
        return [offset for _, offset in sent]

    async def aggregate(self, agent: Any, key: bytes, value: bytes,
                        headers: dict[str, bytes] | None = None) -> None:
        """Deliver one delta to ``aggregate_metrics`` and wait for its update to be sent."""
        self._track(agent)
        before = self.svc.metrics_topic.send.await_count
        agent.original_channel = self.svc.settings.internal_topic("metric-deltas")
        await asyncio.wait_for(agent.put(value=value, key=key, headers=headers), PUT_TIMEOUT_S)
        await self._until(lambda: self.svc.metrics_topic.send.await_count > before, agent)

    def _track(self, agent: Any) -> None:
        if agent not in self.agents:
            self.agents.append(agent)

    def assert_no_agent_crashed(self) -> None:
        """A crash after the last awaited step of a test must still fail it."""
        for agent in self.agents:
            assert agent.crash_reason is None, f"{agent} crashed: {agent.crash_reason!r}"

    @staticmethod
    async def _until(done: Any, agent: Any) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUT_TIMEOUT_S
        while not done():
            if agent.crash_reason is not None:
                raise agent.crash_reason
            if loop.time() > deadline:
                raise AssertionError("the agent did not finish the message")
            await asyncio.sleep(0.001)
        if agent.crash_reason is not None:
            raise agent.crash_reason

    # -- what was sent --------------------------------------------------------------------

    @staticmethod
    def _calls(topic: Any) -> Iterator[tuple[bytes | None, bytes]]:
        for call in topic.send.await_args_list:
            assert not call.args, f"send called positionally: {call}"
            yield call.kwargs.get("key"), call.kwargs["value"]

    def alerts(self) -> list[tuple[bytes | None, dict[str, Any]]]:
        return [(k, orjson.loads(v)) for k, v in self._calls(self.svc.alerts_topic)]

    def dead_letters(self) -> list[tuple[bytes | None, dict[str, Any]]]:
        return [(k, orjson.loads(v)) for k, v in self._calls(self.svc.deadletters_topic)]

    def delta_messages(self) -> list[tuple[bytes, bytes, dict[str, bytes] | None]]:
        """(key, value, headers) of every metric-delta message."""
        return [(c.kwargs["key"], c.kwargs["value"], c.kwargs.get("headers"))
                for c in self.svc.deltas_topic.send.await_args_list]

    def deltas(self) -> list[tuple[bytes, bytes]]:
        out = []
        for k, v in self._calls(self.svc.deltas_topic):
            assert k is not None
            out.append((k, v))
        return out

    @staticmethod
    def payload_of(dead_letter: dict[str, Any]) -> bytes:
        """The original message bytes a dead letter carries."""
        return base64.b64decode(dead_letter["payload_b64"], validate=True)

    def metric_updates(self) -> list[tuple[bytes | None, dict[str, Any]]]:
        return [(k, orjson.loads(v)) for k, v in self._calls(self.svc.metrics_topic)]

    # -- state and counters ---------------------------------------------------------------

    def customer(self, customer_id: str) -> CustomerState | None:
        raw = self.svc.customers.get(customer_id)
        return None if raw is None else CustomerState.from_wire(orjson.loads(raw))

    def sample(self, name: str, **labels: str) -> float:
        """A sample's value; 0 when the labelled child was never touched."""
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@pytest.fixture()
def harness(service: Service, registry: CollectorRegistry) -> Iterator[Harness]:
    """Drives ``service``'s agents; fails the test if one of them crashed."""
    h = Harness(service, registry)
    yield h
    h.assert_no_agent_crashed()
