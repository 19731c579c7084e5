"""Service settings: one frozen, validated object, read once at start.

Sources, later ones winning: the defaults below, an optional TOML config file
(``--config`` or ``CXSTREAM_CONFIG``), then ``CXSTREAM_<FIELD>`` environment
variables. ``Settings(...)`` itself reads nothing implicitly, so tests build
exactly what they pass. Any invalid value stops start-up with a
``ConfigError`` that names the field and where it came from.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Literal, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    model_validator,
)

from cxstream.engine.config import EngineConfig, LearnConfig, Profile
from cxstream.errors import ConfigError

__all__ = ["INPUT_FAMILIES", "ProfileModel", "Settings"]

ENV_PREFIX = "CXSTREAM_"
# CXSTREAM_* variables that are not service settings: the config file's path and
# the local broker's (``cxstream.broker.BrokerConfig.from_env``); CXSTREAM_TEST_*
# belong to the test suite.
OTHER_VARIABLES = frozenset({
    "CXSTREAM_CONFIG", "CXSTREAM_HOME", "CXSTREAM_BROKER_PORT",
    "CXSTREAM_BROKER_CONTROLLER_PORT", "CXSTREAM_KAFKA_VERSION",
})
INPUT_FAMILIES: tuple[str, ...] = ("logins", "emails", "tickets", "surveys", "subscriptions")


def _profile_model() -> type[BaseModel]:
    """A pydantic model with exactly the engine ``Profile``'s knobs, types and defaults."""
    hints = get_type_hints(Profile)
    defaults = Profile()
    fields_: dict[str, Any] = {
        f.name: (hints[f.name], getattr(defaults, f.name)) for f in dataclass_fields(Profile)
    }
    return create_model(  # type: ignore[call-overload,no-any-return]
        "ProfileModel", __config__=ConfigDict(frozen=True, extra="forbid"), **fields_
    )


ProfileModel = _profile_model()


class Settings(BaseModel):
    """Everything the worker, replay and the CLI are configured with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap: str = Field("127.0.0.1:19092", min_length=1)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-256"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    api_token: SecretStr | None = None
    include_comments: bool = False
    topic_prefix: str = Field("cx", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    topic_partitions: int = Field(4, ge=1, le=1024)
    app_id: str = Field("cxstream", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    standby_replicas: int = Field(1, ge=0, le=3)
    store: Literal["rocksdb://", "memory://"] = "rocksdb://"
    data_dir: Path = Path(".cxstream/worker")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    allowed_lateness_seconds: float = Field(300.0, ge=0)
    max_future_seconds: float = Field(3600.0, ge=0)
    publish_grace_seconds: float = Field(0.25, ge=0, le=60)
    dedupe_ids: int = Field(16, ge=1, le=1024)
    alert_budget_per_1k_week: float = Field(15.0, gt=0, lt=1000)
    learn_horizon_days: float = Field(30.0, gt=0, le=365)
    learn_window_weeks: int = Field(12, ge=1, le=104)
    learn_min_churned: int = Field(20, ge=1)
    learn_rows_per_week: int = Field(20_000, ge=100, le=1_000_000)
    learn_delay_days: float = Field(1.0, ge=0, lt=7)
    metric_windows_seconds: tuple[int, ...] = Field((3600, 86400), min_length=1)
    rolling_windows_days: tuple[int, ...] = (7, 28)
    profile: ProfileModel = Field(default_factory=ProfileModel)  # type: ignore[valid-type]
    segments: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _profiles_are_valid(self) -> Settings:
        self.engine_config()
        sasl = self.kafka_security_protocol.startswith("SASL")
        if sasl and (not self.kafka_sasl_username or self.kafka_sasl_password is None):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "kafka_sasl_username and kafka_sasl_password"
            )
        for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, config_file: Path | None = None
    ) -> Settings:
        """Read the config file (if any) and ``CXSTREAM_*`` variables, then validate."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        from_env = env.get(ENV_PREFIX + "CONFIG")
        path = config_file or (Path(from_env) if from_env else None)
        if path is not None:
            try:
                values.update(tomllib.loads(path.read_text()))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"config file {path}: {exc}") from exc
            origin.update({k: f"{path}" for k in values})
        for name in cls.model_fields:
            var = ENV_PREFIX + name.upper()
            if var in env:
                values[name] = _decode_env(env[var])
                origin[name] = f"${var}"
        unknown = sorted(
            k for k in env if k.startswith(ENV_PREFIX)
            and k[len(ENV_PREFIX):].lower() not in cls.model_fields
            and k not in OTHER_VARIABLES and not k.startswith(ENV_PREFIX + "TEST_")
        )
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, origin)) from exc

    def engine_config(self) -> EngineConfig:
        """The engine's view of these settings (raises ValueError naming a bad knob)."""
        base: dict[str, Any] = dict(self.profile)  # type: ignore[call-overload]
        try:
            default = Profile(**base)
        except ValueError as exc:
            raise ValueError(f"profile: {exc}") from exc
        per_segment = {}
        for name, overrides in self.segments.items():
            try:
                merged = ProfileModel.model_validate({**base, **overrides})
                per_segment[name] = Profile(**dict(merged))
            except (ValueError, ValidationError) as exc:
                raise ValueError(f"segments.{name}: {_flat(exc)}") from exc
        return EngineConfig(
            profile=default,
            segments=per_segment,
            allowed_lateness_seconds=self.allowed_lateness_seconds,
            max_future_seconds=self.max_future_seconds,
            dedupe_ids=self.dedupe_ids,
            metric_windows_seconds=self.metric_windows_seconds,
            rolling_windows_days=self.rolling_windows_days,
            include_comments=self.include_comments,
            learning=LearnConfig(
                horizon_days=self.learn_horizon_days, window_weeks=self.learn_window_weeks,
                min_churned=self.learn_min_churned,
                budget_per_1k_week=self.alert_budget_per_1k_week,
                rows_per_week=self.learn_rows_per_week,
                effective_delay_days=self.learn_delay_days),
        )

    def to_env(self) -> dict[str, str]:
        """These settings as ``CXSTREAM_*`` variables, for a worker subprocess (inverse of
        ``from_env``; unset values are left out)."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or (name == "segments" and not value):
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, BaseModel):
                text = json.dumps(value.model_dump())
            elif isinstance(value, tuple | list | dict):
                text = json.dumps(value)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[f"{ENV_PREFIX}{name.upper()}"] = text
        return env

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``cx.logins``."""
        return f"{self.topic_prefix}.{name}"

    def internal_topic(self, name: str) -> str:
        """A topic of this deployment alone, named like Faust's changelogs:
        ``cxstream-metric-deltas``. Two app ids on one prefix (a rebuild beside the
        running deployment) must not fold each other's metric deltas."""
        return f"{self.app_id}-{name}"

    @property
    def input_topics(self) -> dict[str, str]:
        """Event family -> topic name."""
        return {family: self.topic(family) for family in INPUT_FAMILIES}


def _decode_env(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    return raw


def _flat(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def _describe(exc: ValidationError, origin: Mapping[str, str]) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        top = str(err["loc"][0]) if err["loc"] else ""
        where = f" (from {origin[top]})" if top in origin else ""
        parts.append(f"{loc}{where}: {err['msg']}")
    return "invalid settings: " + "; ".join(parts)
