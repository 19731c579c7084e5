"""The HTTP API as a CS tool uses it, against real workers on the real broker."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cxstream.agents.publisher import publish_file
from cxstream.agents.scoring import RISK_KINDS
from cxstream.devtools.broker import BrokerStatus
from cxstream.schemas.events import event_to_json
from cxstream.schemas.outputs import HealthOut
from cxstream.settings import Settings
from cxstream.sim.generator import generate_days, make_customers

from .helpers import WorkerProcess, free_port, fresh_settings, run

pytestmark = pytest.mark.integration

START = 1_772_323_200.0  # 2026-03-01T00:00:00Z


def call(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """One HTTP request; returns (status, decoded JSON body)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture()
def events_file(tmp_path: Path) -> Path:
    people = make_customers(60, 45, seed=3, silent_share=0.3)
    path = tmp_path / "events.jsonl"
    with path.open("wb") as fh:
        for day in generate_days(people, 45, START, seed=3):
            for ev in day:
                fh.write(event_to_json(ev) + b"\n")
    return path


@pytest.fixture()
def two_workers(broker: BrokerStatus, tmp_path: Path, events_file: Path
                ) -> Iterator[tuple[Settings, WorkerProcess, WorkerProcess]]:
    first = fresh_settings(broker.bootstrap, tmp_path, topic_partitions=4)
    second = first.model_copy(update={"web_port": free_port(),
                                      "data_dir": tmp_path / "worker-b"})
    run(publish_file(first, events_file))
    a = WorkerProcess(first, tmp_path / "a.log")
    b = WorkerProcess(second, tmp_path / "b.log")
    try:
        a.wait_ready()
        b.wait_ready()
        yield first, a, b
    finally:
        a.stop()
        b.stop()


def _base(w: WorkerProcess) -> str:
    return f"http://127.0.0.1:{w.settings.web_port}"


def _ok(answer: tuple[int, Any]) -> tuple[int, Any] | None:
    """The answer unless it is a retryable 503 (partitions moving)."""
    status, body = answer
    return None if status == 503 and body.get("retryable") else answer


def _until(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    return check()


def test_lookups_answer_from_any_worker_and_match_the_contract(
    two_workers: tuple[Settings, WorkerProcess, WorkerProcess]
) -> None:
    _settings, a, b = two_workers

    seen: list[Any] = []

    def ids(worker: WorkerProcess) -> tuple[int, set[str], Any]:
        status, body = call("GET", f"{_base(worker)}/at-risk?limit=1000")
        seen.append((status, sorted(c["customer_id"] for c in body.get("customers", []))
                     if isinstance(body, dict) else body))
        if status != 200:
            return status, set(), body
        return status, {c["customer_id"] for c in body["customers"]}, body

    def settled() -> Any:
        # Both workers see the same complete list (each gathers the other's
        # partitions) once the backlog is processed and the list stops changing.
        sa, from_a, body = ids(a)
        sb, from_b, _ = ids(b)
        if 503 in (sa, sb):
            return None
        return body if sa == sb == 200 and len(from_a) >= 3 and from_a == from_b else None

    listed = _until(settled, 90)
    assert listed, f"workers never agreed on >= 3 at-risk customers; last: {seen[-4:]}"
    scores = [c["health_score"] for c in listed["customers"]]
    assert scores == sorted(scores)
    for row in listed["customers"]:
        HealthOut.model_validate(row)
        assert any(al["kind"] in RISK_KINDS for al in row["open_alerts"])

    # A lookup is answered by whichever worker is asked (routed to the owner).
    worst = listed["customers"][0]["customer_id"]
    s1, one = _until(lambda: _ok(call("GET", f"{_base(a)}/customers/{worst}")), 30)
    s2, two = _until(lambda: _ok(call("GET", f"{_base(b)}/customers/{worst}")), 30)
    assert s1 == s2 == 200
    assert one["customer_id"] == two["customer_id"] == worst
    assert one["inputs"] and one["inputs"][0]["risk"] >= one["inputs"][-1]["risk"]

    status, body = _until(lambda: _ok(call("GET", f"{_base(a)}/customers/nobody-at-all")), 30)
    assert status == 404 and "nobody-at-all" in body["error"]
    status, body = call("GET", f"{_base(a)}/at-risk?limit=0")
    assert status == 400


def test_ingest_publishes_valid_events_and_names_every_invalid_field(
    two_workers: tuple[Settings, WorkerProcess, WorkerProcess]
) -> None:
    _settings, a, _b = two_workers
    good = {"event_id": "api-1", "customer_id": "api-cust", "type": "login",
            "occurred_at": "2026-04-15T10:00:00Z", "segment": "pro"}
    bad = {"event_id": "api-2", "customer_id": "api-cust", "type": "survey.response",
           "survey": "nps", "score": 11, "occurred_at": "2026-04-15T10:00:00"}
    status, body = call("POST", f"{_base(a)}/events", [good, bad])
    assert status == 400
    assert body["errors"] == [{"index": 1, "code": "schema", "reason": body["errors"][0]["reason"]}]
    assert "occurred_at" in body["errors"][0]["reason"] and "score" in body["errors"][0]["reason"]
    status, body = call("POST", f"{_base(a)}/events", raw=b"{nope")
    assert status == 400 and "invalid JSON" in body["error"]
    status, body = call("POST", f"{_base(a)}/events", raw=b"[" + b" " * 1_048_577 + b"]")
    assert status == 413

    status, body = call("POST", f"{_base(a)}/events", good)
    assert (status, body) == (202, {"accepted": 1})
    # The event went through Kafka and the engine: the customer now exists.
    found = _until(lambda: call("GET", f"{_base(a)}/customers/api-cust")[0] == 200, 30)
    assert found


def test_openapi_document_describes_every_route(
    two_workers: tuple[Settings, WorkerProcess, WorkerProcess]
) -> None:
    _settings, a, _b = two_workers
    status, doc = call("GET", f"{_base(a)}/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/customers/{customer_id}", "/at-risk", "/events", "/metrics",
                                 "/openapi.json"}
    # The Health schema in the document validates what the API returns.
    status, listed = _until(lambda: _ok(call("GET", f"{_base(a)}/at-risk?limit=5")), 60)
    health = {**doc["components"]["schemas"]["Health"],
              "$defs": doc["components"]["schemas"]}
    schema = json.loads(json.dumps(health).replace("#/components/schemas/", "#/$defs/"))
    for row in listed["customers"]:
        jsonschema.validate(row, schema)
