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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cxstream.config import EngineConfig, InactivityRule
from cxstream.errors import ConfigError

__all__ = ["INPUT_FAMILIES", "SegmentProfile", "Settings"]

ENV_PREFIX = "CXSTREAM_"
INPUT_FAMILIES: tuple[str, ...] = ("logins", "emails", "tickets", "surveys", "subscriptions")


class SegmentProfile(BaseModel):
    """Per-segment overrides of the engine's defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inactivity_days: float | None = Field(None, gt=0)
    inactivity_escalate_days: float | None = Field(None, gt=0)


class Settings(BaseModel):
    """Everything the worker, replay and the CLI are configured with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap: str = Field("127.0.0.1:19092", min_length=1)
    topic_prefix: str = Field("cx", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    topic_partitions: int = Field(4, ge=1, le=1024)
    app_id: str = Field("cxstream", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    store: Literal["rocksdb://", "memory://"] = "rocksdb://"
    data_dir: Path = Path(".cxstream/worker")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    inactivity_days: float = Field(14.0, gt=0)
    inactivity_escalate_days: float = Field(28.0, gt=0)
    allowed_lateness_seconds: float = Field(300.0, ge=0)
    dedupe_ids: int = Field(32, ge=1, le=1024)
    metric_windows_seconds: tuple[int, ...] = Field((3600, 86400), min_length=1)
    segments: dict[str, SegmentProfile] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _escalation_after_raise(self) -> Settings:
        try:
            self.engine_config()
        except ValueError as exc:
            raise ValueError(str(exc)) from exc
        return self

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, config_file: Path | None = None
    ) -> Settings:
        """Read the config file (if any) and ``CXSTREAM_*`` variables, then validate."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        path = config_file or (Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None)
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
            k for k in env if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX):].lower()
            not in cls.model_fields and k != ENV_PREFIX + "CONFIG"
        )
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, origin)) from exc

    def engine_config(self) -> EngineConfig:
        """The engine's view of these settings."""
        default = InactivityRule(self.inactivity_days, self.inactivity_escalate_days)
        per_segment = {
            name: InactivityRule(
                prof.inactivity_days or default.days,
                prof.inactivity_escalate_days
                or max(default.escalate_days, 2 * (prof.inactivity_days or default.days)),
            )
            for name, prof in self.segments.items()
        }
        return EngineConfig(
            inactivity=default,
            segment_inactivity=per_segment,
            allowed_lateness_seconds=self.allowed_lateness_seconds,
            dedupe_ids=self.dedupe_ids,
            metric_windows_seconds=self.metric_windows_seconds,
        )

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``cx.logins``."""
        return f"{self.topic_prefix}.{name}"

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


def _describe(exc: ValidationError, origin: Mapping[str, str]) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        top = str(err["loc"][0]) if err["loc"] else ""
        where = f" (from {origin[top]})" if top in origin else ""
        parts.append(f"{loc}{where}: {err['msg']}")
    return "invalid settings: " + "; ".join(parts)
