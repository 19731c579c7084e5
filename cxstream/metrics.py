"""Rolling CX metrics over tumbling event-time windows.

The per-customer engine emits small additive ``MetricDelta`` values (for
example "+1 active customer in segment *pro* for the hour starting 09:00");
deltas from any number of partitions and workers add up to the global value,
so the streaming worker re-keys them by (metric, segment, window) and sums,
and replay sums them in memory. Distinct counts stay exact because each
customer's state remembers in which open windows it was already counted.

Each metric is an aggregator in the initialize/agg/result shape: the store
keeps only the accumulator, a ``(numerator, denominator)`` pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cxstream.alerts import rfc3339

__all__ = [
    "METRICS",
    "fold",
    "MetricBook",
    "MetricDelta",
    "MetricKey",
    "MetricUpdate",
    "window_of",
]

Acc = tuple[float, float]


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """An additive change to one metric's accumulator in one window."""

    metric: str
    segment: str | None
    window_start: float
    window_seconds: int
    numerator: float
    denominator: float = 0.0

    @property
    def key(self) -> MetricKey:
        """Identity of the window this delta belongs to."""
        return (self.metric, self.segment, self.window_start, self.window_seconds)


MetricKey = tuple[str, str | None, float, int]


@dataclass(frozen=True, slots=True)
class MetricUpdate:
    """The current value of one metric in one window (idempotent by its key)."""

    metric: str
    segment: str | None
    window_start: float
    window_end: float
    value: float | None
    sample_size: int

    def to_dict(self) -> dict[str, Any]:
        """The wire form documented in ``schemas/json/metric-update.schema.json``."""
        return {
            "metric": self.metric,
            "segment": self.segment,
            "window_start": rfc3339(self.window_start),
            "window_end": rfc3339(self.window_end),
            "value": self.value,
            "sample_size": self.sample_size,
        }

    @property
    def key(self) -> str:
        """The Kafka key: metric, segment and window, so compaction keeps the latest."""
        seg = self.segment if self.segment is not None else "*"
        return f"{self.metric}|{seg}|{rfc3339(self.window_start)}|{rfc3339(self.window_end)}"


class Count:
    """A count of things (e.g. distinct active customers); sample size is the count."""

    @staticmethod
    def initialize() -> Acc:
        return (0.0, 0.0)

    @staticmethod
    def agg(acc: Acc, delta: MetricDelta) -> Acc:
        return (acc[0] + delta.numerator, acc[1] + delta.denominator)

    @staticmethod
    def result(acc: Acc) -> tuple[float | None, int]:
        return acc[0], int(acc[0])


class Ratio(Count):
    """numerator ÷ denominator, undefined (null) while the denominator is 0."""

    @staticmethod
    def result(acc: Acc) -> tuple[float | None, int]:
        num, den = acc
        if den <= 0:
            return None, 0
        return num / den, int(den)


METRICS: Final[dict[str, type[Count]]] = {
    "active_customers": Count,
    "email_open_rate": Ratio,
}


def window_of(ts: float, window_seconds: int) -> float:
    """Start of the tumbling window of ``window_seconds`` that holds ``ts``."""
    return float(int(ts // window_seconds) * window_seconds)


def fold(acc: Acc | None, delta: MetricDelta) -> tuple[Acc, MetricUpdate]:
    """Fold one delta into a window's accumulator (``None``: a new window)."""
    agg = METRICS[delta.metric]
    new = agg.agg(acc if acc is not None else agg.initialize(), delta)
    return new, MetricBook.update_for(delta.key, new)


class MetricBook:
    """Accumulators by metric, segment and window; ``add`` returns the new value."""

    __slots__ = ("_accs",)

    def __init__(self) -> None:
        self._accs: dict[MetricKey, Acc] = {}

    def add(self, delta: MetricDelta) -> MetricUpdate:
        """Fold one delta in and return the window's updated value."""
        acc, update = fold(self._accs.get(delta.key), delta)
        self._accs[delta.key] = acc
        return update

    @staticmethod
    def update_for(key: MetricKey, acc: Acc) -> MetricUpdate:
        """Turn an accumulator into the published update."""
        metric, segment, start, seconds = key
        value, sample = METRICS[metric].result(acc)
        return MetricUpdate(metric, segment, start, start + seconds, value, sample)

    def updates(self) -> list[MetricUpdate]:
        """Every window's current value, in a stable order."""
        keys = sorted(self._accs, key=lambda k: (k[0], k[1] or "", k[3], k[2]))
        return [self.update_for(k, self._accs[k]) for k in keys]
