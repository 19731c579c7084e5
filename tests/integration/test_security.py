"""Kafka over SASL/SCRAM + TLS, end to end, against a broker secured by this module.

The module makes its own CA and a server certificate for localhost/127.0.0.1 with
``openssl``, packs it into a PKCS12 keystore, and starts a second local broker (its
own temporary home, free ports, the shared Maven jars) whose data directory is
formatted with the SCRAM-SHA-256 user ``alice``. Clients reach it only through the
``SASL_SSL`` listener; the settings are the same ones an operator sets with
``CXSTREAM_KAFKA_SECURITY_PROTOCOL`` and friends.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from cxstream.agents.publisher import publish_file
from cxstream.agents.security import kafka_options
from cxstream.devtools.broker import BrokerConfig, SaslSsl, reset, up
from cxstream.engine.events import Event
from cxstream.errors import CxStreamError
from cxstream.schemas.events import event_to_json
from cxstream.settings import Settings

from .helpers import WorkerProcess, free_port, fresh_settings, run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI"),
]

USER = "alice"
PASSWORD = "alice-s3cret-Zq81"
API_TOKEN = "tok-9f3c1e77b2a54d0e"
KEYSTORE_PASSWORD = "keystore-pass-4711"
_START_TIMEOUT_S = 90.0
# A wrong password or an untrusted certificate must fail fast, not hang the test.
_REFUSE_WITHIN_S = 30.0

DAY = 86_400.0
T0 = 1_772_323_200.0  # 2026-03-01T00:00:00Z
# 14 days without activity raise an inactivity alert (escalation only at 28).
FIXED_14_DAYS = {
    "inactivity_min_days": 14,
    "inactivity_max_days": 14,
    "escalate_factor": 2,
    "alert_kinds": ["inactivity"],
}


@dataclass(frozen=True)
class Pki:
    ca: Path
    keystore: Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"openssl {' '.join(args)} failed:\n{proc.stderr}"


def make_pki(folder: Path) -> Pki:
    """A throwaway CA and a server certificate for localhost and 127.0.0.1, as PKCS12."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=cxstream test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=folder,
    )
    (folder / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509",
        "-req",
        "-sha256",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
        cwd=folder,
    )
    _openssl(
        "pkcs12",
        "-export",
        "-name",
        "broker",
        "-in",
        "server.pem",
        "-inkey",
        "server.key",
        "-certfile",
        "ca.pem",
        "-out",
        "server.p12",
        "-passout",
        f"pass:{KEYSTORE_PASSWORD}",
        cwd=folder,
    )
    return Pki(ca=folder / "ca.pem", keystore=folder / "server.p12")


@dataclass(frozen=True)
class SecureBroker:
    cfg: BrokerConfig
    ca: Path
    started_in_s: float

    @property
    def bootstrap(self) -> str:
        assert self.cfg.sasl_ssl_bootstrap is not None
        return self.cfg.sasl_ssl_bootstrap


@pytest.fixture(scope="module")
def secure_broker(
    tmp_path_factory: pytest.TempPathFactory, shared_kafka_libs: Path
) -> Iterator[SecureBroker]:
    """A broker with a SASL_SSL listener (SCRAM-SHA-256 user alice), for this module only."""
    home = tmp_path_factory.mktemp("secure-broker")
    pki = make_pki(home / "pki")
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    port, controller_port, sasl_port = sorted(ports)
    cfg = BrokerConfig(
        home=home,
        port=port,
        controller_port=controller_port,
        libs_dir=shared_kafka_libs,
        sasl_ssl=SaslSsl(
            port=sasl_port,
            keystore=pki.keystore,
            keystore_password=KEYSTORE_PASSWORD,
            users=((USER, PASSWORD),),
        ),
    )
    t0 = time.monotonic()
    up(cfg, timeout_s=_START_TIMEOUT_S)
    started = time.monotonic() - t0
    try:
        yield SecureBroker(cfg, pki.ca, started)
    finally:
        reset(cfg)


def secure_settings(broker: SecureBroker, tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-256",
        "kafka_sasl_username": USER,
        "kafka_sasl_password": PASSWORD,
        "kafka_ssl_cafile": broker.ca,
        "api_token": API_TOKEN,
        "profile": FIXED_14_DAYS,
        # One partition: the one active customer moves stream time for everybody.
        "topic_partitions": 1,
    }
    values.update(overrides)
    return fresh_settings(broker.bootstrap, tmp, **values)


def story() -> list[Event]:
    """An active customer every day for 20 days; ``quiet`` only on the first two."""
    events = [
        Event(f"act-{d}", "act", "login", T0 + d * DAY + 9 * 3600, segment="pro") for d in range(20)
    ]
    events += [
        Event(f"quiet-{d}", "quiet", "login", T0 + d * DAY + 10 * 3600, segment="starter")
        for d in range(2)
    ]
    return sorted(events, key=lambda e: e.occurred_at)


@pytest.fixture()
def story_file(tmp_path: Path) -> Path:
    path = tmp_path / "story.jsonl"
    path.write_bytes(b"".join(event_to_json(e) + b"\n" for e in story()))
    return path


async def read_topic_secure(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Like ``helpers.read_topic``, but with the settings' security options."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_options(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(orjson.loads(m.value) for m in msgs)
    finally:
        await consumer.stop()
    return records


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _refused(settings: Settings, story_file: Path) -> tuple[BaseException, float, str]:
    """Publish and expect a refusal; returns the error, how long it took, aiokafka's log."""
    handler = _Records()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(handler)
    t0 = time.monotonic()
    try:
        with pytest.raises((CxStreamError, KafkaError)) as info:
            run(publish_file(settings, story_file))
    finally:
        aiokafka_log.removeHandler(handler)
    return info.value, time.monotonic() - t0, "\n".join(handler.lines)


def _chain(exc: BaseException) -> str:
    """The message of an error and of every error it was raised from."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


def test_pipeline_runs_over_scram_and_tls_without_leaking_secrets(
    secure_broker: SecureBroker, tmp_path: Path, story_file: Path
) -> None:
    settings = secure_settings(secure_broker, tmp_path)
    sent, invalid = run(publish_file(settings, story_file))
    assert (sent, invalid) == (len(story()), 0)

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready(timeout=60)
        alerts = run(
            read_topic_secure(
                settings,
                settings.topic("alerts"),
                until=lambda r: any(a["customer_id"] == "quiet" for a in r),
                timeout=60,
            )
        )
        quiet = [a for a in alerts if a["customer_id"] == "quiet"]
        assert quiet, f"no alert for 'quiet' over SASL_SSL:\n{worker.log_tail()}"
        assert quiet[0]["state"] == "raised" and quiet[0]["segment"] == "starter"
        assert all(a["customer_id"] != "act" for a in alerts)
    finally:
        worker.stop()

    log_text = worker.log_path.read_text(errors="replace")
    # The worker really logged in with SCRAM (not through the PLAINTEXT listener).
    assert f"Authenticated as {USER} via SCRAM-SHA-256" in log_text, worker.log_tail()
    assert PASSWORD not in log_text
    assert API_TOKEN not in log_text
    # Nor in the broker's own log or the CLI-visible config repr.
    broker_log = secure_broker.cfg.log_path.read_text(errors="replace")
    assert PASSWORD not in broker_log and KEYSTORE_PASSWORD not in broker_log
    assert PASSWORD not in repr(secure_broker.cfg)


def test_wrong_password_is_refused_as_an_authentication_failure(
    secure_broker: SecureBroker, tmp_path: Path, story_file: Path
) -> None:
    settings = secure_settings(secure_broker, tmp_path, kafka_sasl_password="not-the-password")
    exc, took, client_log = _refused(settings, story_file)
    assert isinstance(exc, CxStreamError), _chain(exc)
    assert took < _REFUSE_WITHIN_S
    # The broker refused the SCRAM login (not a network problem), and said why.
    assert "SaslAuthenticationFailed" in client_log, client_log
    assert "invalid credentials" in client_log, client_log
    assert "not-the-password" not in _chain(exc) + client_log


def test_wrong_password_error_message_names_authentication(
    secure_broker: SecureBroker, tmp_path: Path, story_file: Path
) -> None:
    settings = secure_settings(secure_broker, tmp_path, kafka_sasl_password="not-the-password")
    exc, _, _ = _refused(settings, story_file)
    assert "authenticat" in str(exc).lower(), _chain(exc)


def test_client_without_the_ca_fails_tls_verification(
    secure_broker: SecureBroker, tmp_path: Path, story_file: Path
) -> None:
    # No kafka_ssl_cafile: only the system CAs, which do not know the test CA.
    settings = secure_settings(secure_broker, tmp_path, kafka_ssl_cafile=None)
    exc, took, client_log = _refused(settings, story_file)
    assert isinstance(exc, CxStreamError), _chain(exc)
    assert took < _REFUSE_WITHIN_S
    assert "CERTIFICATE_VERIFY_FAILED" in client_log, client_log
