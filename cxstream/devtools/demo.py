"""``cxstream demo``: the whole service on this machine, alerts printed as they arrive.

Starts the local broker (if it is not up), a worker in a subprocess, and the
simulator (``cxstream.sim.simulator``) paced to one simulated day per
``day_seconds`` of wall time, so disengaging customers cross their
inactivity lines within the first minute. Every ``STATUS_EVERY_S`` it prints
what the worker processed and dead-lettered (by reason), from its /metrics;
if the worker dies, the demo says so with the end of its log and stops.
Each run uses fresh topics and state. Ctrl-C stops everything it started.
"""

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
from pathlib import Path

from cxstream.devtools.broker import BrokerConfig, status, up
from cxstream.errors import CxStreamError
from cxstream.settings import Settings

__all__ = ["run_demo"]


STATUS_EVERY_S = 15.0


def run_demo(settings: Settings, customers: int = 200, day_seconds: float = 1.0) -> int:
    """Run until Ctrl-C; returns the exit code."""
    import logging

    # aiokafka's transient start-up warnings (coordinator not ready yet) are noise here.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    broker_cfg = BrokerConfig.from_env()
    was_running = status(broker_cfg).running
    print(f"* Kafka: {'already running' if was_running else 'starting'} at {broker_cfg.bootstrap}",
          flush=True)
    up(broker_cfg)
    run_id = time.strftime("%Y%m%d%H%M%S")
    demo_dir = Path(broker_cfg.home) / "demo" / run_id
    demo_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    port = settings.web_port
    if not _port_free(settings.web_host, port):
        port = _free_port(settings.web_host)
        print(f"* port {settings.web_port} is taken; the worker serves on {port}", flush=True)
    env.update({
        "CXSTREAM_WEB_PORT": str(port),
        "CXSTREAM_KAFKA_BOOTSTRAP": broker_cfg.bootstrap,
        "CXSTREAM_TOPIC_PREFIX": f"demo{run_id}",
        "CXSTREAM_APP_ID": f"cxstream-demo{run_id}",
        "CXSTREAM_DATA_DIR": str(demo_dir / "worker"),
        "CXSTREAM_ALLOWED_LATENESS_SECONDS": "3600",
    })
    demo_settings = Settings.from_env(env)
    log_path = demo_dir / "worker.log"
    metrics_url = f"http://{demo_settings.web_host}:{demo_settings.web_port}/metrics"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "cxstream.cli", "worker"], env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    print(f"* worker: pid {worker.pid}, log {log_path}", flush=True)
    print(f"* topics: {demo_settings.topic_prefix}.* (fresh for this run)", flush=True)
    try:
        _wait_for(metrics_url, worker, log_path)
        print(f"* metrics: {metrics_url}", flush=True)
        print(f"* generating {customers} customers, one simulated day every {day_seconds:g}s; "
              "alerts below (Ctrl-C to stop)\n", flush=True)
        asyncio.run(_generate_and_tail(demo_settings, customers, day_seconds,
                                       _Watch(worker, metrics_url, log_path)))
    except KeyboardInterrupt:
        print("\n* stopping", flush=True)
    except CxStreamError as exc:
        print(f"\n* {exc}", flush=True)
        return 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        if not was_running:
            from cxstream.devtools.broker import down

            down(broker_cfg)
            print("* Kafka stopped", flush=True)
    return 0


def _wait_for(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CxStreamError(f"worker exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise CxStreamError(f"worker did not serve {url} within {timeout:.0f}s; see {log_path}")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Watch:
    """The demo's worker, watched: alive, and what it processed and dead-lettered."""

    def __init__(self, proc: subprocess.Popen[bytes], metrics_url: str, log_path: Path) -> None:
        self.proc = proc
        self.metrics_url = metrics_url
        self.log_path = log_path

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            raise CxStreamError(f"the worker exited with {self.proc.returncode}; the end of "
                                f"{self.log_path}:\n" + "\n".join(tail))

    def status(self) -> str:
        """One line from the worker's /metrics: events, dead letters by reason, alerts."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        events = alerts = 0.0
        dead: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "cxstream_events_processed_total":
                    events += sample.value
                elif sample.name == "cxstream_dead_letters_total":
                    dead[sample.labels["reason"]] = sample.value
                elif sample.name == "cxstream_alerts_total":
                    alerts += sample.value
        by_reason = ", ".join(f"{r} {int(n)}" for r, n in sorted(dead.items()) if n)
        return (f"* worker: {int(events):,} events, {int(alerts):,} alert transitions, "
                f"{int(sum(dead.values())):,} dead letters" + (f" ({by_reason})" if by_reason
                                                                else ""))

    async def run(self) -> None:
        """Every ``STATUS_EVERY_S``: stop if the worker died, else print its status."""
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            self.check_alive()
            try:
                line = await asyncio.to_thread(self.status)
            except OSError as exc:
                line = f"* worker: /metrics did not answer ({exc})"
            print(line, flush=True)


async def _generate_and_tail(settings: Settings, customers: int, day_seconds: float,
                             watch: _Watch) -> None:
    from cxstream.agents.publisher import EventPublisher
    from cxstream.agents.tail import tail_alerts
    from cxstream.schemas.events import event_to_json
    from cxstream.sim.simulator import simulate

    days = 180
    start = float(int(time.time() // 86_400 - days) * 86_400)
    tail = asyncio.create_task(tail_alerts(settings, from_beginning=True))
    watcher = asyncio.create_task(watch.run())
    try:
        async with EventPublisher(settings) as pub:
            day_end = start + 86_400.0
            began = time.monotonic()
            for event in simulate(customers, days, seed=7, start=start):
                while event.occurred_at >= day_end:  # pace: one simulated day per day_seconds
                    if watcher.done():
                        watcher.result()  # the worker died: say so
                    await pub.flush()
                    await asyncio.sleep(max(0.0, day_seconds - (time.monotonic() - began)))
                    began = time.monotonic()
                    day_end += 86_400.0
                await pub.send(event_to_json(event))
            await pub.flush()
        print(f"* all {days} simulated days published; alerts still arriving below "
              "(Ctrl-C to stop)", flush=True)
        await asyncio.gather(tail, watcher)
    finally:
        for task in (tail, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, CxStreamError):
                await task
