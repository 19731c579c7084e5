"""The local Kafka broker: one single-node Apache Kafka KRaft process on loopback.

This module decides how cxstream gets a broker without Docker: Maven fetches the
Kafka jars once into ``<home>/kafka/libs``; ``up()`` writes ``server.properties``
(combined broker+controller, node 1, PLAINTEXT on 127.0.0.1, sized for a 2-core
machine), formats the data directory only the first time, starts ``kafka.Kafka``
detached and returns only once the broker answers a Kafka ApiVersions request and
its log says "Kafka Server started". It owns exactly one process, the one in its
pid file, and only ever signals a process whose command line is ``kafka.Kafka``
with this home's ``server.properties``. Standard library only.

Optionally (``BrokerConfig.sasl_ssl``) the broker also serves clients on a second
listener, ``SASL_SSL://127.0.0.1:<port>``: TLS with a PKCS12 keystore the caller
provides, and SASL/SCRAM users that are written into the cluster metadata when the
data directory is formatted (``StorageTool format --add-scram``). The PLAINTEXT
listener stays (inter-broker traffic, the readiness probe); the controller listener
is unchanged.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cxstream.errors import BrokerError, ConfigError

__all__ = [
    "BrokerConfig",
    "BrokerStatus",
    "SaslSsl",
    "down",
    "fetch",
    "reset",
    "status",
    "up",
]

log = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_STARTED_LINE = "Kafka Server started"
_LOG_TAIL_LINES = 20
# Maven resolves ~60 jars (~8 s warm here); a cold cache on a slow mirror takes minutes.
_FETCH_TIMEOUT_S = 600.0
# A StorageTool JVM takes ~1 s; 120 s only trips on a wedged machine.
_FORMAT_TIMEOUT_S = 120.0
# After SIGKILL the kernel reaps within milliseconds; 10 s means something is badly wrong.
_KILL_WAIT_S = 10.0
_POLL_S = 0.2
_API_VERSIONS_KEY = 18

# Brokers this process started, kept so they are reaped (no zombie, no ResourceWarning
# from a collected Popen) when down() stops them from the same process, as tests do.
_children: dict[int, subprocess.Popen[bytes]] = {}


_SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
# Characters the ``--add-scram`` syntax ('MECH=[name=x,password=y]') or a
# properties file would misread; rejected rather than escaped.
_SCRAM_FORBIDDEN = set(',[]"=\\') | {" ", "\t", "\n", "\r"}


@dataclass(frozen=True, slots=True)
class SaslSsl:
    """A ``SASL_SSL`` client listener: TLS from a keystore, SCRAM users set at format time.

    ``users`` are ``(name, password)`` pairs; they are added to the cluster metadata
    only when the data directory is first formatted, so a changed user list needs a
    ``reset()`` (a broker with SCRAM users wants its own home). ``keystore`` holds
    the broker's certificate and key (PKCS12 by default); it must be valid for
    127.0.0.1, the advertised host.
    """

    port: int
    keystore: Path
    keystore_password: str
    users: tuple[tuple[str, str], ...]
    keystore_type: str = "PKCS12"
    mechanism: str = "SCRAM-SHA-256"

    def __post_init__(self) -> None:
        object.__setattr__(self, "keystore", Path(self.keystore).expanduser().resolve())
        object.__setattr__(self, "users", tuple((str(u), str(p)) for u, p in self.users))
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"sasl_ssl port must be in 1..65535, got {self.port}")
        if self.mechanism not in _SCRAM_MECHANISMS:
            raise ConfigError(
                f"sasl_ssl mechanism must be one of {', '.join(_SCRAM_MECHANISMS)}, "
                f"got {self.mechanism!r}"
            )
        if not self.users:
            raise ConfigError("sasl_ssl needs at least one SCRAM user (name, password)")
        for name, password in self.users:
            for what, value in (("user name", name), ("password", password)):
                if not value or set(value) & _SCRAM_FORBIDDEN:
                    raise ConfigError(
                        f"sasl_ssl {what} for user {name!r} is empty or contains one of "
                        "',[]\"=\\' or whitespace"
                    )
        if not self.keystore_password or set(self.keystore_password) & {"\\", "\n", "\r"}:
            raise ConfigError("sasl_ssl keystore_password is empty or contains '\\' or a newline")
        if not self.keystore_type.strip():
            raise ConfigError("sasl_ssl keystore_type is empty")

    def __repr__(self) -> str:
        # Never print passwords (tracebacks, logs, pytest assertion output).
        names = ", ".join(name for name, _ in self.users)
        return (
            f"SaslSsl(port={self.port}, keystore={str(self.keystore)!r}, "
            f"keystore_type={self.keystore_type!r}, mechanism={self.mechanism!r}, "
            f"users=[{names}], passwords=***)"
        )


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where the local broker lives and which loopback ports it listens on.

    ``home`` is made absolute at construction, so a later ``chdir`` does not move it.
    ``libs_dir`` overrides ``<home>/kafka/libs`` (tests share one Maven download).
    ``sasl_ssl`` adds a SCRAM-over-TLS client listener (see ``SaslSsl``).
    """

    home: Path = Path(".cxstream")
    port: int = 19092
    controller_port: int = 19093
    kafka_version: str = "3.9.1"
    heap: str = "512m"
    libs_dir: Path | None = None
    sasl_ssl: SaslSsl | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        if self.libs_dir is not None:
            object.__setattr__(self, "libs_dir", Path(self.libs_dir).expanduser().resolve())
        for name in ("port", "controller_port"):
            value = getattr(self, name)
            if not 1 <= value <= 65535:
                raise ConfigError(f"broker {name} must be in 1..65535, got {value}")
        if self.port == self.controller_port:
            raise ConfigError(f"broker port and controller_port are both {self.port}")
        if self.sasl_ssl is not None and self.sasl_ssl.port in (self.port, self.controller_port):
            raise ConfigError(
                f"sasl_ssl port {self.sasl_ssl.port} clashes with the broker's other ports"
            )
        if not self.kafka_version.strip():
            raise ConfigError("kafka_version is empty")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrokerConfig:
        """Build from CXSTREAM_HOME, CXSTREAM_BROKER_PORT, CXSTREAM_BROKER_CONTROLLER_PORT,
        CXSTREAM_KAFKA_VERSION; unset variables keep the defaults."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        if env.get("CXSTREAM_HOME"):
            kwargs["home"] = Path(env["CXSTREAM_HOME"])
        for var, name in (
            ("CXSTREAM_BROKER_PORT", "port"),
            ("CXSTREAM_BROKER_CONTROLLER_PORT", "controller_port"),
        ):
            raw = env.get(var, "").strip()
            if not raw:
                continue
            try:
                value = int(raw)
            except ValueError as exc:
                raise ConfigError(f"{var} must be an integer port, got {raw!r}") from exc
            if not 1 <= value <= 65535:
                raise ConfigError(f"{var} must be a port in 1..65535, got {value}")
            kwargs[name] = value
        if env.get("CXSTREAM_KAFKA_VERSION", "").strip():
            kwargs["kafka_version"] = env["CXSTREAM_KAFKA_VERSION"].strip()
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} (check CXSTREAM_BROKER_PORT and CXSTREAM_BROKER_CONTROLLER_PORT)"
            ) from exc

    @property
    def bootstrap(self) -> str:
        """The address clients connect to, e.g. ``127.0.0.1:19092``."""
        return f"{_HOST}:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        """The SASL_SSL address, e.g. ``127.0.0.1:19094``; None without ``sasl_ssl``."""
        return None if self.sasl_ssl is None else f"{_HOST}:{self.sasl_ssl.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the broker listens on."""
        extra = () if self.sasl_ssl is None else (self.sasl_ssl.port,)
        return (self.port, self.controller_port, *extra)

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def libs_path(self) -> Path:
        return self.libs_dir if self.libs_dir is not None else self.kafka_dir / "libs"

    @property
    def data_dir(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.kafka_dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.kafka_dir / "broker.pid"

    @property
    def properties_path(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def log4j_path(self) -> Path:
        return self.kafka_dir / "log4j.properties"


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """What ``status()`` saw.

    ``running`` means our process is alive *and* answers Kafka requests; a ``pid``
    with ``running=False`` is a broker that is still starting or is wedged.
    """

    running: bool
    pid: int | None
    bootstrap: str
    log_path: Path
    data_dir: Path


# --------------------------------------------------------------------------- fetch


def _pom(cfg: BrokerConfig) -> str:
    deps = [
        ("org.apache.kafka", "kafka_2.13", cfg.kafka_version),
        ("org.slf4j", "slf4j-reload4j", "1.7.36"),
        ("ch.qos.reload4j", "reload4j", "1.2.25"),
    ]
    dep_xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by cxstream.broker.fetch(); only used to download the broker's jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cxstream</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{cfg.kafka_version}</version>
  <packaging>pom</packaging>
  <dependencies>
{dep_xml}
  </dependencies>
</project>
"""


def _marker(libs: Path, version: str) -> Path:
    return libs / f".cxstream-fetched-{version}"


def _libs_ready(cfg: BrokerConfig) -> bool:
    libs = cfg.libs_path
    return (libs / f"kafka_2.13-{cfg.kafka_version}.jar").is_file() and _marker(
        libs, cfg.kafka_version
    ).is_file()


def fetch(cfg: BrokerConfig) -> Path:
    """Download the Kafka jars with Maven into ``cfg.libs_path`` unless already complete.

    Maven writes into a sibling staging folder that replaces the libs folder only on
    success, so a half-finished download is redone and jars of another version never
    mix into the classpath.
    """
    libs = cfg.libs_path
    if _libs_ready(cfg):
        return libs
    # Locked on the libs folder, not the home: homes may share one libs_dir.
    with _flock(libs.with_name(f".{libs.name}.lock")):
        return _fetch_unlocked(cfg)


def _fetch_unlocked(cfg: BrokerConfig) -> Path:
    libs = cfg.libs_path
    if _libs_ready(cfg):  # another process finished it while we waited for the lock
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH; it is needed once to fetch the Kafka jars")
    cfg.kafka_dir.mkdir(parents=True, exist_ok=True)
    pom = cfg.kafka_dir / "pom.xml"
    pom.write_text(_pom(cfg), encoding="utf-8")
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    fetch_log = cfg.kafka_dir / "fetch.log"
    log.info("fetching Kafka %s jars with Maven into %s", cfg.kafka_version, libs)
    try:
        with fetch_log.open("wb") as out:
            proc = subprocess.run(
                cmd,
                cwd=cfg.kafka_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=_FETCH_TIMEOUT_S,
                check=False,
            )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(
            f"Maven did not finish fetching Kafka {cfg.kafka_version} within "
            f"{_FETCH_TIMEOUT_S:.0f} s; see {fetch_log}\n{_tail(fetch_log)}"
        ) from exc
    jar = staging / f"kafka_2.13-{cfg.kafka_version}.jar"
    if proc.returncode != 0 or not jar.is_file():
        raise BrokerError(
            f"Maven could not fetch Kafka {cfg.kafka_version} (exit {proc.returncode}); "
            f"see {fetch_log}\n{_tail(fetch_log)}"
        )
    _marker(staging, cfg.kafka_version).write_text(" ".join(cmd) + "\n", encoding="utf-8")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


# --------------------------------------------------------------------------- config files


def _server_properties(cfg: BrokerConfig) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{_HOST}:{cfg.controller_port}",
        "listeners": f"PLAINTEXT://{_HOST}:{cfg.port},CONTROLLER://{_HOST}:{cfg.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{_HOST}:{cfg.port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(cfg.data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "log.retention.hours": "168",
        # One node: every internal topic has exactly one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # The defaults (50 offsets partitions, 50 transaction partitions) cost seconds of
        # start-up and 100 open segments on a dev box; 4 of each is plenty for one node.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        # Consumers join at once instead of after the 3 s default delay.
        "group.initial.rebalance.delay.ms": "0",
        # Sized for a 2-core machine (defaults: 3 network, 8 io, 10 background threads).
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
    }
    if cfg.sasl_ssl is not None:
        settings.update(_sasl_ssl_properties(cfg, cfg.sasl_ssl))
    body = "\n".join(f"{k}={v}" for k, v in settings.items())
    return f"# Written by cxstream.broker.up(); edits are overwritten.\n{body}\n"


def _sasl_ssl_properties(cfg: BrokerConfig, sec: SaslSsl) -> dict[str, str]:
    """The extra client listener; inter-broker and controller traffic stay PLAINTEXT."""
    mech = sec.mechanism.lower()
    prefix = "listener.name.sasl_ssl."
    return {
        "listeners": (
            f"PLAINTEXT://{_HOST}:{cfg.port},SASL_SSL://{_HOST}:{sec.port},"
            f"CONTROLLER://{_HOST}:{cfg.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{_HOST}:{cfg.port},SASL_SSL://{_HOST}:{sec.port}",
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
        ),
        "sasl.enabled.mechanisms": sec.mechanism,
        f"{prefix}sasl.enabled.mechanisms": sec.mechanism,
        # The broker only verifies SCRAM logins against the metadata; it logs in nowhere.
        f"{prefix}{mech}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        f"{prefix}ssl.keystore.location": str(sec.keystore),
        f"{prefix}ssl.keystore.password": sec.keystore_password,
        f"{prefix}ssl.keystore.type": sec.keystore_type,
        f"{prefix}ssl.client.auth": "none",
    }


def _log4j_properties() -> str:
    # The console goes to broker.log (the JVM's stdout/stderr are redirected there), so
    # log4j lines and JVM start-up errors land in one file with one writer.
    return """# Written by cxstream.broker.up(); edits are overwritten.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- processes


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not on PATH (and JAVA_HOME is unset); Kafka needs Java 11+")
    return java


def _classpath(cfg: BrokerConfig) -> str:
    return str(cfg.libs_path / "*")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    """True while any thread of ``pid`` still runs; a fully exited zombie counts as gone."""
    child = _children.get(pid)
    if child is not None:
        # Our own child: waitpid is authoritative, and poll() also reaps it.
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    state = fields.get("State", "").strip()[:1]
    # A JVM's main thread can exit (state Z) while its other threads are still shutting
    # down; the process is gone only when it is a zombie with no thread left but itself.
    threads = int(fields.get("Threads", "1").strip() or "1")
    return state not in ("Z", "X") or threads > 1


def _is_ours(pid: int, cfg: BrokerConfig) -> bool:
    """Whether ``pid`` is a live ``java ... kafka.Kafka <our server.properties>``."""
    args = _cmdline(pid)
    return (
        bool(args)
        and "java" in Path(args[0]).name
        and "kafka.Kafka" in args
        and str(cfg.properties_path) in args
        and _alive(pid)
    )


def _read_pid(cfg: BrokerConfig) -> int | None:
    try:
        return int(cfg.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def _find_pid(cfg: BrokerConfig) -> int | None:
    """Our broker's pid: the pid file if it is ours, else a scan of /proc (lost pid file)."""
    pid = _read_pid(cfg)
    if pid is not None and _is_ours(pid, cfg):
        return pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_ours(int(entry.name), cfg):
            return int(entry.name)
    return None


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if not _alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _stop(pid: int, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout_s):
        return
    log.warning("broker pid %d ignored SIGTERM for %.0f s; sending SIGKILL", pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, _KILL_WAIT_S):
        raise BrokerError(f"broker pid {pid} survived SIGKILL")


@contextlib.contextmanager
def _flock(path: Path, timeout_s: float = 900.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BrokerError(
                        f"another cxstream process has held {path} for over {timeout_s:.0f} s"
                    ) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _locked(cfg: BrokerConfig) -> contextlib.AbstractContextManager[None]:
    """Serialise up/down/reset on one home (kafka/.lock). Taken before the libs lock."""
    return _flock(cfg.kafka_dir / ".lock")


# --------------------------------------------------------------------------- probes


def _api_versions_ok(port: int, timeout_s: float = 1.0) -> bool:
    """Send a Kafka ApiVersions v0 request; True if the broker answers with no error.

    A bare TCP connect is not enough: the socket accepts before the broker serves.
    """
    client_id = b"cxstream-broker-probe"
    correlation_id = 0x0C5
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((_HOST, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            if size < 6:
                return False
            reply = _recv_exact(sock, size)
    except (OSError, struct.error):
        return False
    got_id, error_code = struct.unpack(">ih", reply[:6])
    return got_id == correlation_id and error_code == 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed mid-reply")
        buf += chunk
    return bytes(buf)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR so a port in TIME_WAIT after our own broker stopped counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _listener_of(port: int) -> str:
    """Best effort: 'pid 123 (cmd)' of whoever listens on ``port``, or ''."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return ""
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in targets:
                    args = _cmdline(int(proc.name))
                    return f"pid {proc.name} ({' '.join(args)[:120]})"
        except OSError:
            continue
    return ""


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _log_says_started(cfg: BrokerConfig) -> bool:
    try:
        return _STARTED_LINE in cfg.log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


# --------------------------------------------------------------------------- lifecycle


def status(cfg: BrokerConfig) -> BrokerStatus:
    """Look at the pid file, /proc and the port; starts and stops nothing."""
    pid = _find_pid(cfg)
    running = pid is not None and _api_versions_ok(cfg.port)
    return BrokerStatus(
        running=running,
        pid=pid,
        bootstrap=cfg.bootstrap,
        log_path=cfg.log_path,
        data_dir=cfg.data_dir,
    )


def _format(cfg: BrokerConfig, java: str) -> None:
    if (cfg.data_dir / "meta.properties").is_file():
        return
    cluster_id = _random_cluster_id()
    cmd = [
        java,
        "-cp",
        _classpath(cfg),
        f"-Dlog4j.configuration=file:{cfg.log4j_path}",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(cfg.properties_path),
    ]
    if cfg.sasl_ssl is not None:
        for name, password in cfg.sasl_ssl.users:
            cmd += ["--add-scram", f"{cfg.sasl_ssl.mechanism}=[name={name},password={password}]"]
    log.info("formatting %s (cluster id %s)", cfg.data_dir, cluster_id)
    try:
        proc = subprocess.run(
            cmd,
            cwd=cfg.kafka_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_FORMAT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"formatting {cfg.data_dir} took over {_FORMAT_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-2000:]
        if cfg.sasl_ssl is not None:
            for _, password in cfg.sasl_ssl.users:
                output = output.replace(password, "***")
        raise BrokerError(f"formatting {cfg.data_dir} failed (exit {proc.returncode}):\n{output}")


def _random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding (22 chars).

    Like Kafka's ``Uuid.randomUuid()``, never one that starts with '-' (it would read
    as a CLI flag).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _launch(cfg: BrokerConfig, java: str) -> subprocess.Popen[bytes]:
    if cfg.log_path.exists():
        # Keep the previous run's log for post-mortems; the new log starts empty so the
        # "started" line we wait for is from this run.
        cfg.log_path.replace(cfg.log_path.with_name(cfg.log_path.name + ".1"))
    cmd = [
        java,
        f"-Xmx{cfg.heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{cfg.log4j_path}",
        "-cp",
        _classpath(cfg),
        "kafka.Kafka",
        str(cfg.properties_path),
    ]
    with cfg.log_path.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cfg.kafka_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    cfg.pid_path.write_text(f"{proc.pid}\n")
    return proc


def _wait_ready(
    cfg: BrokerConfig, pid: int, proc: subprocess.Popen[bytes] | None, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            _children.pop(pid, None)
            cfg.pid_path.unlink(missing_ok=True)
            raise BrokerError(
                f"Kafka exited during start-up (exit {proc.returncode}); "
                f"log {cfg.log_path}, last lines:\n{_tail(cfg.log_path)}"
            )
        if proc is None and not _alive(pid):
            raise BrokerError(
                f"Kafka pid {pid} died while starting; log {cfg.log_path}, "
                f"last lines:\n{_tail(cfg.log_path)}"
            )
        if _api_versions_ok(cfg.port) and (proc is None or _log_says_started(cfg)):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    if proc is not None:
        # Do not leave a half-started broker holding the ports.
        _stop(pid, 10.0)
        cfg.pid_path.unlink(missing_ok=True)
    raise BrokerError(
        f"Kafka did not become ready on {cfg.bootstrap} within {timeout_s:.0f} s; "
        f"log {cfg.log_path}, last lines:\n{_tail(cfg.log_path)}"
    )


def up(cfg: BrokerConfig, *, timeout_s: float = 60) -> BrokerStatus:
    """Start the broker (fetching and formatting first if needed) and wait until it serves.

    Idempotent: a broker of ours that is already running is returned as is.
    :param timeout_s: bounds the wait for readiness after launch; the one-time Maven
        fetch and the format step have their own bounds.
    """
    with _locked(cfg):
        cfg.kafka_dir.mkdir(parents=True, exist_ok=True)
        props = _server_properties(cfg)
        pid = _find_pid(cfg)
        if pid is not None:
            try:
                on_disk = cfg.properties_path.read_text(encoding="utf-8")
            except OSError:
                on_disk = ""
            if on_disk != props:
                raise BrokerError(
                    f"a broker (pid {pid}) is running from {cfg.properties_path} with other "
                    f"settings than requested (ports {cfg.port}/{cfg.controller_port}); "
                    "run `cxstream broker down` first"
                )
            if _read_pid(cfg) != pid:
                cfg.pid_path.write_text(f"{pid}\n")
            _wait_ready(cfg, pid, None, timeout_s)
            return status(cfg)
        cfg.pid_path.unlink(missing_ok=True)
        for port in cfg.ports:
            if not _port_free(port):
                holder = _listener_of(port)
                raise BrokerError(
                    f"port {_HOST}:{port} is already in use by another process"
                    f"{' — ' + holder if holder else ''}; stop it or choose other ports "
                    "(CXSTREAM_BROKER_PORT / CXSTREAM_BROKER_CONTROLLER_PORT)"
                )
        java = _java()
        fetch(cfg)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        _write_if_changed(cfg.properties_path, props)
        if cfg.sasl_ssl is not None:
            cfg.properties_path.chmod(0o600)  # it holds the keystore password
        _write_if_changed(cfg.log4j_path, _log4j_properties())
        _format(cfg, java)
        log.info("starting Kafka %s on %s", cfg.kafka_version, cfg.bootstrap)
        proc = _launch(cfg, java)
        _wait_ready(cfg, proc.pid, proc, timeout_s)
        return status(cfg)


def down(cfg: BrokerConfig, *, timeout_s: float = 30) -> bool:
    """Stop our broker (SIGTERM, then SIGKILL after ``timeout_s``); True if one was running."""
    with _locked(cfg):
        pid = _find_pid(cfg)
        if pid is None:
            cfg.pid_path.unlink(missing_ok=True)
            return False
        log.info("stopping Kafka pid %d", pid)
        _stop(pid, timeout_s)
        cfg.pid_path.unlink(missing_ok=True)
        return True


def reset(cfg: BrokerConfig) -> None:
    """Stop the broker and delete its data directory; the next ``up()`` formats afresh."""
    down(cfg)
    with _locked(cfg):
        shutil.rmtree(cfg.data_dir, ignore_errors=True)
