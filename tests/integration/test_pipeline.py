"""The walking skeleton end to end on the real broker.

A scripted story (active customers, one who goes silent, one who comes back,
a duplicate, malformed messages) is published to Kafka; a real worker process
(RocksDB tables) consumes it; the alert topic, dead-letter topic, metrics
topic and /metrics must say exactly what the story implies, and the same as
``cxstream replay`` over the same file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from cxstream.agents.partitioning import partitioner_for
from cxstream.agents.publisher import publish_file
from cxstream.devtools.broker import BrokerStatus
from cxstream.engine.alerts import alert_id, rfc3339
from cxstream.engine.events import Event
from cxstream.replay import replay_file
from cxstream.schemas.events import event_to_json
from cxstream.settings import Settings
from tests.factories import RULE_KINDS

from .helpers import (
    WorkerProcess,
    fresh_settings,
    newest_thresholds,
    produce_raw,
    read_to_end,
    read_topic,
    run,
    wait_caught_up,
)

pytestmark = pytest.mark.integration

DAY = 86_400.0
T0 = 1_772_323_200.0  # 2026-03-01T00:00:00Z
DAYS = 45
ACTIVE = [f"act-{i:02d}" for i in range(12)]


def story() -> list[Event]:
    """The scripted events, in event-time order, plus one duplicate."""
    events: list[Event] = []
    for d in range(DAYS):
        for i, cid in enumerate(ACTIVE):
            events.append(Event(f"{cid}-login-{d}", cid, "login", T0 + d * DAY + 9 * 3600 + i * 60,
                                segment="pro" if i % 2 else "starter"))
        if d < 5:
            events.append(Event(f"silent-login-{d}", "silent-1", "login",
                                T0 + d * DAY + 10 * 3600, segment="pro"))
        if d % 3 == 0:
            events.append(Event(f"silent-mail-{d}", "silent-1", "email.sent",
                                T0 + d * DAY + 8 * 3600, segment="pro", message_id=f"m{d}"))
        if d < 3 or d == 25:
            events.append(Event(f"ret-login-{d}", "returner", "login",
                                T0 + d * DAY + (12 if d == 25 else 11) * 3600,
                                segment="starter"))
    events.sort(key=lambda e: e.occurred_at)
    dup_at = len(events) // 2
    events.insert(dup_at + 1, events[dup_at])
    return events


MALFORMED: list[tuple[bytes | None, bytes, str]] = [
    (b"bad-1", b"{not json", "invalid_json"),
    (b"bad-2", orjson.dumps({"event_id": "x1", "customer_id": "bad-2", "type": "login.magic",
                             "occurred_at": "2026-03-02T00:00:00Z"}), "unknown_type"),
    (b"bad-3", orjson.dumps({"event_id": "x2", "customer_id": "bad-3", "type": "login",
                             "occurred_at": "2026-03-02T00:00:00"}), "schema"),
]


def expected_alerts() -> list[dict[str, Any]]:
    """What the story implies, worked out by hand from the 14/28-day rule."""
    silent_last = T0 + 4 * DAY + 10 * 3600
    ret_last = T0 + 2 * DAY + 11 * 3600
    ret_back = T0 + 25 * DAY + 12 * 3600
    sid = alert_id("silent-1", "inactivity", silent_last + 14 * DAY)
    rid = alert_id("returner", "inactivity", ret_last + 14 * DAY)
    return [
        {"alert_id": sid, "customer_id": "silent-1", "state": "raised", "severity": "warning",
         "seq": 0, "decided_at": rfc3339(silent_last + 14 * DAY), "segment": "pro",
         "codes": ["inactive_days"]},
        {"alert_id": sid, "customer_id": "silent-1", "state": "escalated", "severity": "critical",
         "seq": 1, "decided_at": rfc3339(silent_last + 28 * DAY), "segment": "pro",
         "codes": ["inactive_days"]},
        {"alert_id": rid, "customer_id": "returner", "state": "raised", "severity": "warning",
         "seq": 0, "decided_at": rfc3339(ret_last + 14 * DAY), "segment": "starter",
         "codes": ["inactive_days"]},
        {"alert_id": rid, "customer_id": "returner", "state": "resolved", "severity": "info",
         "seq": 1, "decided_at": rfc3339(ret_back), "segment": "starter",
         "codes": ["recovered"]},
        # Back once on day 25, then silent again: a new episode, with a new id.
        {"alert_id": alert_id("returner", "inactivity", ret_back + 14 * DAY),
         "customer_id": "returner", "state": "raised", "severity": "warning", "seq": 0,
         "decided_at": rfc3339(ret_back + 14 * DAY), "segment": "starter",
         "codes": ["inactive_days"]},
    ]


def _essentials(alert: dict[str, Any]) -> dict[str, Any]:
    keep = ("alert_id", "customer_id", "state", "severity", "seq", "decided_at", "segment")
    out = {k: alert[k] for k in keep}
    out["codes"] = [r["code"] for r in alert["reasons"]]
    return out


def _key(a: dict[str, Any]) -> tuple[str, int]:
    return (a["alert_id"], a["seq"])


@pytest.fixture()
def story_file(tmp_path: Path) -> Path:
    path = tmp_path / "story.jsonl"
    path.write_bytes(b"".join(event_to_json(e) + b"\n" for e in story()))
    return path


# The story is worked out by hand for the plain rule: inactivity only, a fixed
# 14-day line, escalation at 28. The full engine is compared with replay below.
FIXED_14_DAYS = {"inactivity_min_days": 14, "inactivity_max_days": 14, "escalate_factor": 2,
                 "alert_kinds": ["inactivity"]}


@pytest.fixture()
def settings(broker: BrokerStatus, tmp_path: Path) -> Settings:
    return fresh_settings(broker.bootstrap, tmp_path, profile=FIXED_14_DAYS)


@pytest.fixture()
def full_settings(broker: BrokerStatus, tmp_path: Path) -> Settings:
    # The stories here are about the rule kinds; churn_risk has tests in test_live.py.
    return fresh_settings(broker.bootstrap, tmp_path,
                          profile={"alert_kinds": list(RULE_KINDS)})


@pytest.fixture()
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(settings: Settings, name: str = "worker") -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path / f"{name}.log")
        started.append(w)
        w.wait_ready()
        return w

    yield start
    for w in started:
        w.stop()


def test_story_gives_exact_alerts_dead_letters_and_counters(
    settings: Settings, story_file: Path, worker_factory: Any
) -> None:
    part = partitioner_for(settings.topic_partitions)
    assert {part(c) for c in ACTIVE} == set(range(settings.topic_partitions)), (
        "every partition needs active customers to move its stream time"
    )
    sent, invalid = run(publish_file(settings, story_file))
    assert (sent, invalid) == (len(story()), 0)
    run(produce_raw(settings.kafka_bootstrap, settings.topic("logins"),
                    [(k, v) for k, v, _ in MALFORMED]))

    worker = worker_factory(settings)
    want = expected_alerts()
    # Exactly these, none more: read once the worker has committed every input (and
    # a tick, if events were held, has come and gone: the group commits it too).
    assert wait_caught_up(settings, 120), worker.log_tail()
    alerts = run(read_to_end(settings.kafka_bootstrap, settings.topic("alerts")))
    assert sorted(map(_essentials, alerts), key=_key) == sorted(want, key=_key)

    dead = run(read_topic(settings.kafka_bootstrap, settings.topic("deadletters"),
                          until=lambda r: len(r) >= len(MALFORMED), timeout=30))
    assert sorted((d["key"], d["code"]) for d in dead) == sorted(
        (k.decode() if k else None, code) for k, _, code in MALFORMED
    )
    for d in dead:
        original = next(v for k, v, _ in MALFORMED if k and k.decode() == d["key"])
        assert d["source_topic"] == settings.topic("logins")
        assert isinstance(d["source_partition"], int) and isinstance(d["source_offset"], int)
        assert d["reason"]
        import base64

        assert base64.b64decode(d["payload_b64"]) == original

    # Give the worker a moment to finish the last events, then read its counters.
    valid = len(story()) - 1
    deadline_ok = _wait(lambda: sum(
        worker.sample("cxstream_events_processed_total", type=t)
        for t in ("login", "email.sent")) == valid)
    assert deadline_ok, worker.log_tail()
    assert worker.sample("cxstream_duplicate_events_total") == 1
    for _, _, code in MALFORMED:
        assert worker.sample("cxstream_dead_letters_total", reason=code) == 1
    assert worker.sample("cxstream_alerts_total", kind="inactivity", state="raised") == 3
    assert worker.sample("cxstream_alerts_total", kind="inactivity", state="escalated") == 1
    assert worker.sample("cxstream_alerts_total", kind="inactivity", state="resolved") == 1
    assert worker.sample("cxstream_table_customers") == len(ACTIVE) + 2
    assert worker.sample("cxstream_processing_seconds_count") >= valid


def test_replay_and_worker_agree_on_alerts_and_metrics(
    full_settings: Settings, story_file: Path, worker_factory: Any
) -> None:
    settings = full_settings
    replayed = replay_file(settings, story_file, settle=False)
    want_alerts = sorted(orjson.dumps(a.to_dict(), option=orjson.OPT_SORT_KEYS)
                          for a in replayed.alerts)
    want_metrics = {_metric_key(u.to_dict()): u.to_dict() for u in replayed.metrics.latest()}
    assert len(want_alerts) > len(expected_alerts()) and want_metrics

    run(publish_file(settings, story_file))
    worker_factory(settings)
    alerts = run(read_topic(settings.kafka_bootstrap, settings.topic("alerts"),
                            until=lambda r: len(r) >= len(want_alerts), timeout=90))
    got_alerts = sorted(orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in alerts)
    assert got_alerts == want_alerts

    def latest_equal(records: list[dict[str, Any]]) -> bool:
        latest = {}
        for r in records:
            latest[_metric_key(r)] = r
        return latest == want_metrics

    records = run(read_topic(settings.kafka_bootstrap, settings.topic("metrics"),
                             until=latest_equal, timeout=90))
    latest = {_metric_key(r): r for r in records}
    assert latest == want_metrics


def _metric_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["metric"], r["segment"], r["window_start"], r["window_end"])


def _wait(check: Any, timeout: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return bool(check())


def staggered_cohort(n: int, partitions: int) -> list[Event]:
    """``n`` customers who taper off and cancel (starting two days apart), ``n`` who stay
    active daily, and a late login on every partition so each one settles everything."""
    events: list[Event] = []
    for i in range(n):
        s = 2 * i
        leaver, stayer = f"leave-{i:02d}", f"stay-{i:02d}"
        days = list(range(s, s + 30)) + list(range(s + 30, s + 50, 6))
        events += [Event(f"{leaver}-{d}", leaver, "login", T0 + d * DAY + 9 * 3600,
                         segment="starter") for d in days]
        events.append(Event(f"{leaver}-bye", leaver, "subscription.cancelled",
                            T0 + (s + 50 + i % 7) * DAY + 12 * 3600, segment="starter"))
        events += [Event(f"{stayer}-{d}", stayer, "login", T0 + d * DAY + 8 * 3600,
                         segment="starter") for d in range(2 * n + 60)]
    part = partitioner_for(partitions)
    clocks: dict[int, str] = {}
    i = 0
    while len(clocks) < partitions:
        clocks.setdefault(part(f"clock-{i}"), f"clock-{i}")
        i += 1
    events += [Event(f"{cid}-end", cid, "login", T0 + (2 * n + 200) * DAY)
               for cid in clocks.values()]
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


def test_the_worker_learns_the_participation_thresholds_replay_learns(
    full_settings: Settings, tmp_path: Path, worker_factory: Any
) -> None:
    import subprocess
    import sys

    from .helpers import settings_env

    settings = full_settings
    path = tmp_path / "cohort.jsonl"
    path.write_bytes(b"".join(event_to_json(e) + b"\n"
                              for e in staggered_cohort(24, settings.topic_partitions)))
    replayed = replay_file(settings, path, settle=False)
    # The newest threshold per segment (the topic also keeps one key per day before it).
    want = {u.segment: u.to_dict() for u in replayed.metrics.latest()
            if u.metric == "participation_threshold_days"}
    final = want[None]
    assert final["value"] is not None, want
    want_alerts = sorted(orjson.dumps(a.to_dict(), option=orjson.OPT_SORT_KEYS)
                         for a in replayed.alerts)

    run(publish_file(settings, path))
    worker_factory(settings)

    records = run(read_topic(settings.kafka_bootstrap, settings.topic("metrics"),
                             until=lambda r: newest_thresholds(r) == want, timeout=120))
    assert newest_thresholds(records) == want
    alerts = run(read_topic(settings.kafka_bootstrap, settings.topic("alerts"),
                            until=lambda r: len(r) >= len(want_alerts), timeout=60))
    assert sorted(orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in alerts) == want_alerts

    # What an analyst runs: `cxstream thresholds` reads the same value off the topic.
    proc = subprocess.run([sys.executable, "-m", "cxstream.cli", "thresholds"],
                          env=settings_env(settings), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    row = next((line for line in out.splitlines() if line.startswith("(all)")), out)
    assert f"{int(final['value'])}/28 d" in row, out
