"""Integration fixtures: one real Kafka broker per test session, on its own ports.

The session broker lives in ``.cxstream/test`` on 127.0.0.1:29092/29093, apart from
the developer's broker (``make broker-up``, 19092/19093), and shares the Kafka jars
Maven fetches once into ``.cxstream/kafka/libs``. Override with
CXSTREAM_TEST_HOME, CXSTREAM_TEST_BROKER_PORT, CXSTREAM_TEST_BROKER_CONTROLLER_PORT.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxstream.devtools.broker import BrokerConfig, BrokerStatus, reset, up

REPO_ROOT = Path(__file__).resolve().parents[2]
# First start on a cold machine includes the one-time Maven fetch (~10 s) and format.
_START_TIMEOUT_S = 90.0


@pytest.fixture(scope="session")
def shared_kafka_libs() -> Path:
    """The Kafka jar folder every test broker shares, so Maven downloads them once."""
    home = Path(os.environ.get("CXSTREAM_HOME") or REPO_ROOT / ".cxstream")
    return home / "kafka" / "libs"


@pytest.fixture(scope="session")
def broker_config(shared_kafka_libs: Path) -> BrokerConfig:
    """Where the session broker lives; ports 29092/29093 unless the environment says otherwise."""
    return BrokerConfig(
        home=Path(os.environ.get("CXSTREAM_TEST_HOME") or REPO_ROOT / ".cxstream" / "test"),
        port=int(os.environ.get("CXSTREAM_TEST_BROKER_PORT", "29092")),
        controller_port=int(os.environ.get("CXSTREAM_TEST_BROKER_CONTROLLER_PORT", "29093")),
        libs_dir=shared_kafka_libs,
    )


@pytest.fixture(scope="session")
def broker(broker_config: BrokerConfig) -> Iterator[BrokerStatus]:
    """A running broker for the whole session; ``broker.bootstrap`` is its address.

    Tests share it, so each test uses fresh topic and group names. At the end it is
    stopped and its data deleted; ``broker.log`` stays for post-mortems.
    """
    status = up(broker_config, timeout_s=_START_TIMEOUT_S)
    try:
        yield status
    finally:
        reset(broker_config)
