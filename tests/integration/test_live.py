"""Event time in live operation: the worker runs first, events arrive while it runs.

Three ways users run it, each against ``cxstream replay`` of the same events:

- **real time**: event time is the wall clock, published at a steady rate on all
  five family topics, the tickets producer a few seconds behind the others;
- **accelerated**: simulated days compressed to fractions of a second, every
  family published in event-time order by one producer, as ``make demo`` does;
- **restart**: the accelerated stream with the worker killed (``kill -9``)
  halfway through and started again on its data directory.

Each must dead-letter nothing, and publish exactly the alert transitions and
final metric values that replay decides for the same events (replay without
end-of-input settling: a live worker waits for the allowed lateness, since more
may come). The waits are on conditions; the time limits only bound a failure.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from cxstream.agents.publisher import EventPublisher
from cxstream.devtools.broker import BrokerStatus
from cxstream.engine.alerts import rfc3339
from cxstream.engine.churn import version_record
from cxstream.engine.config import ALERT_KINDS
from cxstream.engine.events import Event
from cxstream.replay import replay_file
from cxstream.schemas.events import event_to_json
from cxstream.settings import Settings
from cxstream.sim.simulator import simulate
from tests.factories import RULE_KINDS

from .helpers import (
    WorkerProcess,
    describe_group,
    free_port,
    fresh_settings,
    newest_thresholds,
    read_to_end,
    read_topic,
    run,
    wait_caught_up,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DAY = 86_400.0
PARTITIONS = 4
# Generous bounds for a loaded 2-core CI machine; the waits end as soon as the
# condition holds.
OUTPUT_WAIT_S = 240.0


def simulated(customers: int, days: int, seed: int, start: float) -> list[Event]:
    return list(simulate(customers, days, seed=seed, start=start))


async def publish_on_schedule(settings: Settings, plan: list[tuple[float, str, Event]]) -> None:
    """Send each ``(wall time, producer, event)`` at its time, one producer per name."""
    names = sorted({name for _, name, _ in plan})
    publishers = {name: EventPublisher(settings) for name in names}
    for pub in publishers.values():
        await pub.__aenter__()
    try:
        for at, name, event in sorted(plan, key=lambda row: row[0]):
            wait = at - time.time()
            if wait > 0:
                for pub in publishers.values():  # what waits must not sit in a buffer
                    await pub.flush()
                await asyncio.sleep(wait)
            await publishers[name].send(event_to_json(event))
        for pub in publishers.values():
            await pub.flush()
    finally:
        for pub in publishers.values():
            await pub.__aexit__(None, None, None)


def canonical(alert: dict[str, Any]) -> bytes:
    return orjson.dumps(alert, option=orjson.OPT_SORT_KEYS)


def comparable(metrics: dict[tuple[Any, ...], dict[str, Any]]
               ) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every metric window, but the participation threshold only as its newest record
    per segment (see ``newest_thresholds``)."""
    out = {k: r for k, r in metrics.items() if r["metric"] != "participation_threshold_days"}
    for segment, r in newest_thresholds(metrics.values()).items():
        out[("participation_threshold_days", segment)] = r
    return out


def metric_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["metric"], r["segment"], r["window_start"], r["window_end"])


def assert_worker_equals_replay(settings: Settings, events_file: Path,
                                workers: list[WorkerProcess],
                                dead_codes: tuple[str, ...] = ()) -> dict[str, int]:
    """The worker's outputs equal replay's, and its dead letters have exactly
    ``dead_codes``; returns counts of what was compared."""
    replayed = replay_file(settings, events_file, settle=False)
    assert replayed.late == replayed.future == 0
    want_alerts = {(a.alert_id, a.seq): canonical(a.to_dict()) for a in replayed.alerts}
    want_metrics = comparable(
        {metric_key(u.to_dict()): u.to_dict() for u in replayed.metrics.latest()})
    assert want_alerts and want_metrics
    bootstrap = settings.kafka_bootstrap
    caught_up = wait_caught_up(settings, OUTPUT_WAIT_S)
    context = "\n".join(f"--- {w.log_path}:\n{w.log_tail(40)}" for w in workers)
    assert caught_up, f"the group never caught up\n{describe_group(settings)}\n{context}"

    def alerts_of(records: list[dict[str, Any]]) -> dict[tuple[str, int], bytes]:
        return {(r["alert_id"], r["seq"]): canonical(r) for r in records}

    records = run(read_topic(bootstrap, settings.topic("alerts"),
                             until=lambda r: alerts_of(r) == want_alerts,
                             timeout=OUTPUT_WAIT_S))
    got_alerts = alerts_of(records)
    missing = sorted(set(want_alerts) - set(got_alerts))
    extra = sorted(set(got_alerts) - set(want_alerts))
    differ = [k for k in set(want_alerts) & set(got_alerts) if want_alerts[k] != got_alerts[k]]
    assert not missing and not extra and not differ, (
        f"alerts: {len(missing)} missing, e.g. {[want_alerts[k] for k in missing[:3]]}; "
        f"{len(extra)} extra, e.g. {[got_alerts[k] for k in extra[:3]]}; "
        f"{len(differ)} differ, e.g. {[(want_alerts[k], got_alerts[k]) for k in differ[:2]]}"
        f"\n{context}")
    # Every (alert_id, seq) sent more than once carries the same content (checked above).
    for r in records:
        assert canonical(r) == want_alerts[(r["alert_id"], r["seq"])]

    def latest(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in records:
            out[metric_key(r)] = r
        return comparable(out)

    metrics = latest(run(read_topic(bootstrap, settings.topic("metrics"),
                                    until=lambda r: latest(r) == want_metrics,
                                    timeout=OUTPUT_WAIT_S)))
    wrong = [k for k in want_metrics if metrics.get(k) != want_metrics[k]]
    extra_metrics = [k for k in metrics if k not in want_metrics]
    assert not wrong and not extra_metrics, (
        f"metrics: {len(wrong)} windows differ, e.g. "
        f"{[(want_metrics[k], metrics.get(k)) for k in wrong[:3]]}; "
        f"{len(extra_metrics)} extra")

    dead = run(read_to_end(bootstrap, settings.topic("deadletters")))
    codes = sorted(d["code"] for d in dead)
    assert codes == sorted(dead_codes), (
        f"dead letters {codes}, expected {sorted(dead_codes)}; e.g. "
        f"{[d['reason'] for d in dead[:3]]}")
    return {"alerts": len(want_alerts), "metric windows": len(want_metrics)}


def alert_counts(events_file: Path, settings: Settings) -> dict[tuple[str, str], int]:
    """Alert transitions by (kind, state) that replay decides for the file."""
    counts: dict[tuple[str, str], int] = {}
    for a in replay_file(settings, events_file, settle=False).alerts:
        counts[(a.kind, a.state)] = counts.get((a.kind, a.state), 0) + 1
    return counts


def write(path: Path, events: list[Event]) -> Path:
    path.write_bytes(b"".join(event_to_json(e) + b"\n" for e in events))
    return path


@pytest.fixture()
def live_settings(broker: BrokerStatus, tmp_path: Path) -> Settings:
    return fresh_settings(broker.bootstrap, tmp_path, topic_partitions=PARTITIONS)


def test_real_time_stream_with_a_producer_behind_loses_nothing_and_equals_replay(
    broker: BrokerStatus, tmp_path: Path
) -> None:
    # Lateness 10 s, the tickets producer 3 s behind the others: within it. Every rule
    # kind, so that 40 s of event time decide something (feedback, support friction).
    settings = fresh_settings(broker.bootstrap, tmp_path, topic_partitions=PARTITIONS,
                              allowed_lateness_seconds=10.0,
                              profile={"alert_kinds": list(RULE_KINDS)})
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        sim = simulated(100, 30, seed=11, start=1_767_225_600.0)
        # 30 simulated days played in 40 s of wall time: event time *is* the wall clock.
        span, behind = 40.0, 3.0
        t0, first = time.time() + 2.0, sim[0].occurred_at
        scale = span / (30 * DAY)
        plan: list[tuple[float, str, Event]] = []
        stamped: list[Event] = []
        for e in sim:
            t = t0 + (e.occurred_at - first) * scale
            ev = replace(e, occurred_at=round(t, 3))
            stamped.append(ev)
            late_producer = ev.type.startswith("ticket.")
            plan.append((t + behind if late_producer else t,
                         "tickets" if late_producer else "main", ev))
        run(publish_on_schedule(settings, plan))
        counts = assert_worker_equals_replay(settings, write(tmp_path / "rt.jsonl", stamped),
                                             [worker])
        assert counts["alerts"] > 0
    finally:
        worker.stop()


def accelerated_plan(events: list[Event], day_seconds: float) -> list[tuple[float, str, Event]]:
    """One producer, every family in event-time order, one simulated day per ``day_seconds``."""
    t0, first = time.time() + 2.0, events[0].occurred_at
    return [(t0 + (e.occurred_at - first) / DAY * day_seconds, "main", e) for e in events]


def test_accelerated_stream_as_the_demo_runs_it_loses_nothing_and_equals_replay(
    broker: BrokerStatus, tmp_path: Path
) -> None:
    """Also: one event from a far-future clock is refused as ``future`` and changes
    no one else's alerts; and a second deployment (a new app id) started afterwards
    replays the topics from the beginning to the same result: the rebuild path."""
    # What the demo runs with, every kind routed: the learned one and the rules.
    settings = fresh_settings(broker.bootstrap, tmp_path, topic_partitions=PARTITIONS,
                              allowed_lateness_seconds=3600.0,
                              profile={"alert_kinds": list(ALERT_KINDS)})
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    workers = [worker]
    try:
        worker.wait_ready()
        start = float(int(time.time() // DAY - 45) * DAY)
        events = simulated(150, 40, seed=5, start=start)
        plan = accelerated_plan(events, 0.4)
        middle = plan[len(plan) // 2]
        wrong_clock = Event("wrong-clock", events[0].customer_id, "login", 4_100_000_000.0)
        plan.append((middle[0], "main", wrong_clock))  # 2099-12-05, published mid-stream
        run(publish_on_schedule(settings, plan))
        events_file = write(tmp_path / "acc.jsonl", events)
        counts = assert_worker_equals_replay(settings, events_file, workers, ("future",))
        assert counts["alerts"] > 50

        rebuilt = settings.model_copy(update={
            "app_id": settings.app_id + "-v2", "data_dir": tmp_path / "v2",
            "web_port": free_port()})
        second = WorkerProcess(rebuilt, tmp_path / "v2.log")
        workers.append(second)
        second.wait_ready()
        assert wait_caught_up(rebuilt, OUTPUT_WAIT_S), describe_group(rebuilt)
        want = alert_counts(events_file, settings)

        def counted() -> dict[tuple[str, str], int]:
            return {key: int(second.sample("cxstream_alerts_total", kind=key[0],
                                           state=key[1])) for key in want}

        deadline = time.monotonic() + OUTPUT_WAIT_S
        while counted() != want and time.monotonic() < deadline:
            time.sleep(1.0)
        assert counted() == want
        assert second.sample("cxstream_dead_letters_total", reason="future") == 1
        assert second.sample("cxstream_dead_letters_total", reason="late") == 0
        # Its alerts are the same messages the first deployment published.
        assert_worker_equals_replay(settings, events_file, workers, ("future", "future"))
    finally:
        for w in workers:
            w.stop()


def test_a_worker_killed_and_restarted_mid_stream_loses_nothing_and_equals_replay(
    broker: BrokerStatus, tmp_path: Path
) -> None:
    settings = fresh_settings(broker.bootstrap, tmp_path, topic_partitions=PARTITIONS,
                              allowed_lateness_seconds=3600.0,
                              profile={"alert_kinds": list(ALERT_KINDS)})
    first = WorkerProcess(settings, tmp_path / "first.log")
    workers = [first]
    try:
        first.wait_ready()
        start = float(int(time.time() // DAY - 45) * DAY)
        events = simulated(150, 40, seed=9, start=start)
        plan = accelerated_plan(events, 0.4)
        half = len(plan) // 2
        run(publish_on_schedule(settings, plan[:half]))
        first.stop(sig=9)
        second = WorkerProcess(settings, tmp_path / "second.log")
        workers.append(second)
        shift = time.time() + 1.0 - plan[half][0]  # the rest goes on from now, same pace
        run(publish_on_schedule(settings, [(t + shift, n, e) for t, n, e in plan[half:]]))
        second.wait_ready()
        counts = assert_worker_equals_replay(settings, write(tmp_path / "rs.jsonl", events),
                                             workers)
        assert counts["alerts"] > 50
    finally:
        for w in workers:
            w.stop()


def test_two_workers_learn_the_same_churn_model_versions_replay_learns(
    broker: BrokerStatus, tmp_path: Path
) -> None:
    """The learned churn risk, pooled over every partition and both workers: the alerts
    (which name the model version, its snapshot and churn counts and the drivers) equal
    replay's, so every version was trained from the same rows in the worker and in
    replay. A small base, so versions come early: 5 churned snapshots, a wide budget."""
    settings = fresh_settings(broker.bootstrap, tmp_path, topic_partitions=PARTITIONS,
                              allowed_lateness_seconds=3600.0, learn_min_churned=5,
                              alert_budget_per_1k_week=60.0)
    second = settings.model_copy(update={"web_port": free_port(), "data_dir": tmp_path / "b"})
    workers = [WorkerProcess(settings, tmp_path / "a.log"),
               WorkerProcess(second, tmp_path / "b.log")]
    try:
        for w in workers:
            w.wait_ready()
        start = float(int(time.time() // DAY - 100) * DAY)
        events = simulated(200, 90, seed=3, start=start)
        run(publish_on_schedule(settings, accelerated_plan(events, 0.15)))
        events_file = write(tmp_path / "learn.jsonl", events)
        replayed = replay_file(settings, events_file, settle=False)
        learned = [a for a in replayed.alerts
                   if a.reasons and a.reasons[0].code == "churn_probability"]
        assert learned, "no alert came from a learned model version"
        assert_worker_equals_replay(settings, events_file, workers)
        # Each version the workers settled is on the models topic, as replay settled it.
        delay = settings.engine_config().learning.effective_delay_days
        want = {rfc3339(b): version_record(b, m, delay) for b, m in replayed.versions.items()}
        got = {r["version"]: r for r in run(read_to_end(settings.kafka_bootstrap,
                                                        settings.topic("models")))}
        assert any(not r["warming_up"] for r in got.values()), sorted(got)
        assert all(want.get(v) == r for v, r in got.items()), (sorted(got), sorted(want))
    finally:
        for w in workers:
            w.stop()
