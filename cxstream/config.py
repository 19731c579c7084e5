"""The engine's knobs, as frozen values (standard library only).

Service settings (Kafka, ports, stores) live in ``cxstream.settings``, which
validates the environment and the config file with pydantic and then builds
this ``EngineConfig``; the engine itself never reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DAY_SECONDS", "EngineConfig", "InactivityRule"]

DAY_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class InactivityRule:
    """Raise after ``days`` without activity; escalate after ``escalate_days``."""

    days: float = 14.0
    escalate_days: float = 28.0

    def __post_init__(self) -> None:
        if not self.days > 0:
            raise ValueError(f"inactivity days must be > 0, got {self.days}")
        if not self.escalate_days > self.days:
            raise ValueError(
                f"escalate_days ({self.escalate_days}) must be greater than days ({self.days})"
            )


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the engine decides with.

    ``allowed_lateness_seconds``: how far behind a partition's stream time an
    event may arrive and still be applied as if in order; later ones are
    rejected as late (dead-lettered). Alerts are decided only once the
    watermark (stream time minus this) has passed them, so they do not depend
    on arrival order within it.
    ``dedupe_ids``: how many recent event ids each customer remembers; a
    repeat within them has no effect.
    ``metric_windows_seconds``: tumbling event-time windows for rolling metrics.
    """

    inactivity: InactivityRule = field(default_factory=InactivityRule)
    segment_inactivity: Mapping[str, InactivityRule] = field(default_factory=dict)
    allowed_lateness_seconds: float = 300.0
    dedupe_ids: int = 32
    metric_windows_seconds: tuple[int, ...] = (3_600, 86_400)

    def __post_init__(self) -> None:
        if self.allowed_lateness_seconds < 0:
            raise ValueError("allowed_lateness_seconds must be >= 0")
        if self.dedupe_ids < 1:
            raise ValueError("dedupe_ids must be >= 1")
        if not self.metric_windows_seconds or min(self.metric_windows_seconds) <= 0:
            raise ValueError("metric_windows_seconds must be positive")

    def inactivity_for(self, segment: str | None) -> InactivityRule:
        """The inactivity rule of a segment, or the default."""
        if segment is not None:
            rule = self.segment_inactivity.get(segment)
            if rule is not None:
                return rule
        return self.inactivity
