"""Finding and running Prometheus for the rule checks and the dashboard test.

The project installs Prometheus from Debian's ``prometheus`` package (``make
prometheus``): it provides ``prometheus`` (the server) and ``promtool`` (rule
checks and unit tests). ``find_prometheus`` and ``find_promtool`` return the
binaries or raise ``PrometheusNotFound`` saying how to install them.
``PrometheusServer`` runs a throw-away server on a loopback port with its own
storage, for tests and local checks; it never touches port 9090 unless asked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any

from cxstream.errors import CxStreamError

__all__ = [
    "PrometheusNotFound",
    "PrometheusServer",
    "find_prometheus",
    "find_promtool",
    "scrape_config",
]

INSTALL_HINT = (
    "run `make prometheus` (installs Debian's `prometheus` package with apt-get, "
    "as root), or put the binaries on PATH"
)


class PrometheusNotFound(CxStreamError, FileNotFoundError):
    """``prometheus`` or ``promtool`` is not on PATH.

    Run ``make prometheus`` (Debian's ``prometheus`` package), or install
    Prometheus another way and put both binaries on PATH.
    """


def _find(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise PrometheusNotFound(f"`{name}` not found on PATH: {INSTALL_HINT}")
    return Path(found)


def find_prometheus() -> Path:
    """The ``prometheus`` server binary on PATH."""
    return _find("prometheus")


def find_promtool() -> Path:
    """The ``promtool`` binary on PATH."""
    return _find("promtool")


def scrape_config(
    targets: list[str],
    *,
    job: str = "cxstream",
    interval: str = "15s",
    rule_files: list[Path] | None = None,
) -> str:
    """A minimal ``prometheus.yml`` scraping ``targets`` (host:port) at ``/metrics``.

    JSON is valid YAML, so the config is written as JSON: no quoting surprises.
    """
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "scrape_configs": [{
            "job_name": job,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": list(targets)}],
        }],
    }
    if rule_files:
        config["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
    return json.dumps(config, indent=2) + "\n"


class PrometheusServer:
    """A ``prometheus`` subprocess on 127.0.0.1:``port``; its log in a file.

    ``start()`` waits (bounded) until ``/-/ready`` answers; ``stop()`` ends it
    (TERM, then KILL). Also a context manager.
    """

    def __init__(self, config_file: Path, storage_dir: Path, port: int,
                 log_path: Path, *, binary: Path | None = None) -> None:
        self.config_file = config_file
        self.storage_dir = storage_dir
        self.port = port
        self.log_path = log_path
        self.binary = binary or find_prometheus()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.storage_dir}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=info",
            ],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise CxStreamError(
                    f"prometheus exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise CxStreamError(f"prometheus not ready in {timeout}s:\n{self.log_tail()}")

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; returns ``data`` or raises with Prometheus's error."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query, with a JSON reason
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise CxStreamError(f"{url}: HTTP {exc.code}") from exc
        if body.get("status") != "success":
            raise CxStreamError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; returns the result list (vector or scalar as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def log_tail(self, lines: int = 30) -> str:
        if self._log is not None and not self._log.closed:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
