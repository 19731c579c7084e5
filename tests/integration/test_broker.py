"""The local broker's lifecycle against a real Kafka: up, idempotent up, a round trip, down.

These tests run their own broker on two free ports in a temporary home (sharing the
Maven jar folder), so they never touch the session broker or a developer's broker.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from cxstream.devtools.broker import BrokerConfig, BrokerStatus, down, status, up
from cxstream.errors import BrokerError, ConfigError

_WAIT_S = 20.0


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (held together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def own_config(
    tmp_path_factory: pytest.TempPathFactory, shared_kafka_libs: Path
) -> Iterator[BrokerConfig]:
    port, controller_port = _free_ports(2)
    cfg = BrokerConfig(
        home=tmp_path_factory.mktemp("broker-home"),
        port=port,
        controller_port=controller_port,
        libs_dir=shared_kafka_libs,
    )
    yield cfg
    down(cfg)  # whatever a failed test left behind


@pytest.fixture()
def own_broker(own_config: BrokerConfig) -> BrokerStatus:
    """Our test broker, running (``up`` is idempotent, so this is cheap after the first)."""
    return up(own_config, timeout_s=90)


@pytest.mark.integration
def test_up_starts_a_broker_that_answers_on_its_bootstrap(
    own_config: BrokerConfig, own_broker: BrokerStatus
) -> None:
    assert own_broker.running
    assert own_broker.pid is not None
    assert own_broker.bootstrap == f"127.0.0.1:{own_config.port}"
    assert (own_config.data_dir / "meta.properties").is_file()
    assert own_config.pid_path.read_text().strip() == str(own_broker.pid)
    assert "Kafka Server started" in own_config.log_path.read_text()
    assert status(own_config) == own_broker


@pytest.mark.integration
def test_up_twice_returns_the_same_process(
    own_config: BrokerConfig, own_broker: BrokerStatus
) -> None:
    again = up(own_config, timeout_s=10)
    assert again.running
    assert again.pid == own_broker.pid


@pytest.mark.integration
def test_a_produced_message_can_be_consumed(own_broker: BrokerStatus) -> None:
    topic = f"broker-test-{uuid.uuid4().hex[:8]}"
    record = asyncio.run(_round_trip(own_broker.bootstrap, topic, b'{"hello": "kafka"}'))
    assert record.topic == topic
    assert record.key == b"c-1"
    assert record.value == b'{"hello": "kafka"}'


async def _round_trip(bootstrap: str, topic: str, value: bytes) -> ConsumerRecord[bytes, bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await asyncio.wait_for(producer.start(), _WAIT_S)
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"c-1"), _WAIT_S)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"broker-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await asyncio.wait_for(consumer.start(), _WAIT_S)
    try:
        return await asyncio.wait_for(consumer.getone(), _WAIT_S)
    finally:
        await consumer.stop()


@pytest.mark.integration
def test_down_stops_the_broker_and_a_second_down_is_harmless(
    own_config: BrokerConfig, own_broker: BrokerStatus
) -> None:
    assert own_broker.pid is not None
    assert down(own_config) is True
    after = status(own_config)
    assert not after.running
    assert after.pid is None
    assert not own_config.pid_path.exists()
    assert not Path(f"/proc/{own_broker.pid}/cmdline").exists()
    assert down(own_config) is False


@pytest.mark.integration
def test_up_refuses_a_port_held_by_another_process(tmp_path: Path, shared_kafka_libs: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        cfg = BrokerConfig(
            home=tmp_path,
            port=taken,
            controller_port=_free_ports(1)[0],
            libs_dir=shared_kafka_libs,
        )
        with pytest.raises(BrokerError, match=f"port 127.0.0.1:{taken} is already in use"):
            up(cfg, timeout_s=10)
    assert not cfg.pid_path.exists()


@pytest.mark.integration
def test_a_broker_that_cannot_start_raises_with_the_log_tail(
    tmp_path: Path, shared_kafka_libs: Path
) -> None:
    port, controller_port = _free_ports(2)
    cfg = BrokerConfig(
        home=tmp_path,
        port=port,
        controller_port=controller_port,
        heap="1k",  # the JVM refuses to start: "Too small maximum heap"
        libs_dir=shared_kafka_libs,
    )
    with pytest.raises(BrokerError) as caught:
        up(cfg, timeout_s=30)
    message = str(caught.value)
    assert str(cfg.log_path) in message
    assert "heap" in message
    assert not cfg.pid_path.exists()
    assert not status(cfg).running


@pytest.mark.integration
def test_down_leaves_a_process_that_is_not_our_broker_alone(tmp_path: Path) -> None:
    cfg = BrokerConfig(home=tmp_path, port=_free_ports(1)[0], controller_port=1)
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        cfg.kafka_dir.mkdir(parents=True)
        cfg.pid_path.write_text(f"{stranger.pid}\n")
        assert down(cfg) is False
        assert stranger.poll() is None
        assert not cfg.pid_path.exists()
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CXSTREAM_BROKER_PORT", "nineteen"),
        ("CXSTREAM_BROKER_CONTROLLER_PORT", "70000"),
    ],
)
def test_from_env_names_the_bad_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        BrokerConfig.from_env({variable: value})


def test_from_env_reads_home_and_ports(tmp_path: Path) -> None:
    cfg = BrokerConfig.from_env(
        {
            "CXSTREAM_HOME": str(tmp_path),
            "CXSTREAM_BROKER_PORT": "39092",
            "CXSTREAM_BROKER_CONTROLLER_PORT": "39093",
            "CXSTREAM_KAFKA_VERSION": "3.9.1",
        }
    )
    assert cfg.home == tmp_path.resolve()
    assert cfg.bootstrap == "127.0.0.1:39092"
    assert cfg.controller_port == 39093
    assert cfg.data_dir == tmp_path.resolve() / "kafka" / "data"
