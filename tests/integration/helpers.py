"""Building blocks for tests on the real broker: settings, a worker process, topic readers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cxstream.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_settings(bootstrap: str, tmp: Path, **overrides: Any) -> Settings:
    """Settings with their own topics, group, state dir and web port."""
    run = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": f"it{run}",
        "app_id": f"it{run}",
        "data_dir": tmp / f"worker-{run}",
        "web_port": free_port(),
        "topic_partitions": 2,
    }
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a worker subprocess needs to run with ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    return env | settings.to_env()


class WorkerProcess:
    """A ``cxstream worker`` subprocess, its log in a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cxstream.cli", "worker"],
            env=settings_env(settings), stdout=self._log, stderr=subprocess.STDOUT,
            cwd=REPO_ROOT, start_new_session=True,
        )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}/metrics"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /metrics answers; fails with the log tail if the worker died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.scrape()
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log_tail()}")

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            return resp.read().decode()

    def sample(self, name: str, **labels: str) -> float:
        """One sample's value from /metrics (0 if absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.scrape()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def log_tail(self, lines: int = 40, skip: tuple[str, ...] = ()) -> str:
        """The last ``lines`` lines of the log, leaving out lines containing any of ``skip``."""
        if not self._log.closed:
            self._log.flush()
        kept = [line for line in self.log_path.read_text(errors="replace").splitlines()
                if not any(s in line for s in skip)]
        return "\n".join(kept[-lines:])

    def stacks(self, wait: float = 3.0, limit: int = 30_000) -> str:
        """Every thread's stack and every asyncio task of the live worker, from its log.

        ``SIGUSR1`` makes the mode worker under Faust print them (``mode.utils.logging.cry``).
        """
        if self.proc.poll() is not None:
            return "(worker not running)"
        self._log.flush()
        start = self.log_path.stat().st_size
        os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(wait)
        with self.log_path.open("rb") as fh:
            fh.seek(start)
            text = fh.read().decode(errors="replace")
        return text if len(text) <= limit else text[:limit] + f"\n... ({len(text)} chars)"

    def stop(self, sig: int = 15, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        self._log.close()


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Read a topic from the start, decoding JSON, until ``until(records)`` or timeout.

    To check that nothing *more* comes, wait for the group to commit everything,
    then ``read_to_end``: never "until nothing new arrived for a while".
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None,
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


async def read_to_end(bootstrap: str, topic: str, timeout: float = 120.0
                      ) -> list[dict[str, Any]]:
    """Every record of a topic up to the end offsets it has when the read starts.

    For outputs that are final (the group has committed everything that produces
    them): unlike a read that stops once nothing new came for a while, a slow
    fetch cannot end it early. Fails if the end is not reached within ``timeout``.
    """
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - a fresh client
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            if time.monotonic() > deadline:
                got = {tp.partition: await consumer.position(tp) for tp in tps}
                raise AssertionError(f"{topic}: read to {got} of {ends} in {timeout}s")
            batch = await consumer.getmany(timeout_ms=500, max_records=1_000)
            for msgs in batch.values():
                records.extend(orjson.loads(m.value) for m in msgs if m.value is not None)
    finally:
        await consumer.stop()
    return records


async def produce_raw(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    """Send raw (key, value) pairs, e.g. malformed messages a buggy publisher might send."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def run(coro: Any) -> Any:
    """Run a coroutine from a sync test."""
    return asyncio.run(coro)


async def group_lag(settings: Settings) -> tuple[int, int, int]:
    """(input lag, committed input offsets, metric-delta lag) of the worker group."""
    async with _group_clients(settings) as (admin, consumer, tps):
        committed = await admin.list_consumer_group_offsets(settings.app_id)
        ends = await consumer.end_offsets(tps)
        inputs = done = deltas = 0
        for tp in tps:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else 0
            behind = max(0, ends[tp] - offset)
            if tp.topic == settings.internal_topic("metric-deltas"):
                deltas += behind
            else:
                inputs += behind
                done += offset
        return inputs, done, deltas


@contextlib.asynccontextmanager
async def _group_clients(settings: Settings) -> AsyncIterator[tuple[Any, AIOKafkaConsumer,
                                                                      list[Any]]]:
    """An admin client, a group-less consumer and every input and metric-delta partition."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    topics = [*settings.input_topics.values(), settings.internal_topic("metric-deltas")]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        yield admin, consumer, [TopicPartition(t, p) for t in topics
                                for p in range(settings.topic_partitions)]
    finally:
        await consumer.stop()
        await admin.close()


async def group_report(settings: Settings) -> str:
    """The worker group as text, for a failure message: state, members and, per
    input and metric-delta partition, owner, committed offset, end offset and lag."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
    from aiokafka.structs import TopicPartition

    async with _group_clients(settings) as (admin, consumer, tps):
        lines: list[str] = []
        owner: dict[TopicPartition, str] = {}
        for response in await admin.describe_consumer_groups([settings.app_id]):
            for group in response.to_object()["groups"]:
                members = group["members"]
                lines.append(f"group {group['group']}: state {group['state']}, "
                             f"{len(members)} member(s)")
                for i, m in enumerate(members):
                    name = f"m{i}:{m['client_host']}:{m['member_id'][-8:]}"
                    raw = m["member_assignment"]
                    assigned = (ConsumerProtocolMemberAssignment.decode(raw).partitions()
                                if raw else [])  # empty while the group rebalances
                    for tp in assigned:
                        owner[tp] = name
                    mine = sorted(tp.partition for tp in assigned
                                  if tp.topic == settings.input_topics["logins"])
                    lines.append(f"  {name} owns input partitions {mine}")
        committed = await admin.list_consumer_group_offsets(settings.app_id)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None else -1
            lag = ends[tp] - max(offset, 0)
            lines.append(f"  {tp.topic}[{tp.partition}] owner={owner.get(tp, '-')} "
                         f"committed={offset} end={ends[tp]} lag={lag}")
        return "\n".join(lines)


def describe_group(settings: Settings) -> str:
    """``group_report`` from sync code; never raises (it runs on the failure path)."""
    try:
        return str(run(group_report(settings)))
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the failure
        return f"(group report failed: {type(exc).__name__}: {exc})"


def wait_caught_up(settings: Settings, timeout: float) -> bool:
    """Until the group has committed every input and metric-delta offset (twice in a row)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        try:
            inputs, _done, deltas = run(group_lag(settings))
            streak = streak + 1 if inputs == deltas == 0 else 0
        except Exception:  # coordinator not ready yet: not caught up
            streak = 0
        if streak >= 2:
            return True
        time.sleep(1.0)
    return False


def newest_thresholds(records: Iterable[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The newest ``participation_threshold_days`` record per segment.

    The threshold is not windowed: each update's window ends on the day of the newest
    outcome folded so far, so the metrics topic keeps a key per such day (in the
    arrival order of the partitions' outcomes) and replay one per segment."""
    latest: dict[Any, dict[str, Any]] = {}
    for r in records:
        if r["metric"] == "participation_threshold_days" and (
                r["segment"] not in latest
                or r["window_end"] >= latest[r["segment"]]["window_end"]):
            latest[r["segment"]] = r
    return latest
