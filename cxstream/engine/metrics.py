"""Rolling CX metrics over event-time windows: the aggregators and the book.

The per-customer engine emits small ``MetricDelta`` values as it settles each
event ("+1 promoter in segment *pro*, window starting 2026-03-01, 1 day").
Deltas from any number of partitions and workers fold into the same
accumulator, so the worker re-keys them by segment and folds them in the
metrics agent, and replay folds them in memory: both with ``MetricBook``.
Distinct counts stay exact because each customer counts itself once per
window; quantiles (TTR) use Apache DataSketches' KLL sketch, mergeable, with
a normalised rank error of about 1.3% at k=200 (99% confidence).

Windows are tumbling (``window_seconds`` below a day or a day) or rolling by
day (7 and 28 days, one window ending at every day boundary). Derived
metrics need several accumulators of one segment: stickiness = DAU ÷ MAU;
churn rate = cancellations in a 28-day window ÷ customers active in the 28
days before it; retention = 1 − churn.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from cxstream.engine.alerts import rfc3339
from cxstream.engine.participation import LEVELS, learn

__all__ = [
    "AGGREGATORS",
    "MetricBook",
    "MetricDelta",
    "MetricKey",
    "MetricUpdate",
    "decode_acc",
    "encode_acc",
    "window_of",
]

DAY = 86_400
MONTH = 28 * DAY
KLL_K = 200


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """An additive change to one accumulator in one window (``sample``: a quantile value)."""

    metric: str
    segment: str | None
    window_start: float
    window_seconds: int
    numerator: float
    denominator: float = 0.0
    sample: float | None = None

    @property
    def key(self) -> MetricKey:
        """Identity of the accumulator this delta folds into."""
        return (self.metric, self.segment, self.window_start, self.window_seconds)

    def to_list(self) -> list[Any]:
        """Wire form on the internal deltas topic."""
        return [self.metric, self.segment, self.window_start, self.window_seconds,
                self.numerator, self.denominator, self.sample]

    @classmethod
    def from_list(cls, row: list[Any]) -> MetricDelta:
        metric, segment, start, seconds, num, den, sample = row
        return cls(metric, segment, float(start), int(seconds), num, den, sample)


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
        """Kafka key: metric, segment and window, so compaction keeps the latest value."""
        seg = self.segment if self.segment is not None else "*"
        return f"{self.metric}|{seg}|{rfc3339(self.window_start)}|{rfc3339(self.window_end)}"


Output = tuple[str, float | None, int]


class Sum:
    """A count or sum; accumulator ``[numerator, denominator]``."""

    name: str = ""

    @staticmethod
    def initialize() -> Any:
        return [0.0, 0.0]

    @staticmethod
    def agg(acc: Any, d: MetricDelta) -> Any:
        return [acc[0] + d.numerator, acc[1] + d.denominator]

    def outputs(self, acc: Any) -> list[Output]:
        return [(self.name, acc[0], int(acc[0]))]


class Ratio(Sum):
    """numerator ÷ denominator × ``scale``; null while the denominator is 0."""

    def __init__(self, name: str, scale: float = 1.0) -> None:
        self.name = name
        self.scale = scale

    def outputs(self, acc: Any) -> list[Output]:
        num, den = acc
        if den <= 0:
            return [(self.name, None, 0)]
        return [(self.name, self.scale * num / den, int(den))]


class Count(Sum):
    def __init__(self, name: str) -> None:
        self.name = name


class Quantiles:
    """p50 and p90 of samples, from a mergeable KLL sketch."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @staticmethod
    def initialize() -> Any:
        from datasketches import kll_floats_sketch

        return kll_floats_sketch(KLL_K)

    @staticmethod
    def agg(acc: Any, d: MetricDelta) -> Any:
        if d.sample is not None:
            acc.update(float(d.sample))
        return acc

    def outputs(self, acc: Any) -> list[Output]:
        if acc.is_empty():
            return [(f"{self.prefix}_p50_seconds", None, 0),
                    (f"{self.prefix}_p90_seconds", None, 0)]
        n = int(acc.n)
        return [(f"{self.prefix}_p50_seconds", float(acc.get_quantile(0.5)), n),
                (f"{self.prefix}_p90_seconds", float(acc.get_quantile(0.9)), n)]


class Thresholds:
    """The pooled participation histogram of a segment and the threshold it supports.

    Accumulator ``[churned by level, observed by level, latest labelling time]``
    (see ``measures.participation_deltas``); not windowed: it covers every
    outcome so far, and the update's window ends with the latest one's day.
    """

    name = "participation_threshold_days"

    @staticmethod
    def initialize() -> Any:
        return [[0] * LEVELS, [0] * LEVELS, 0.0]

    @staticmethod
    def agg(acc: Any, d: MetricDelta) -> Any:
        level = int(d.sample or 0)
        acc[1][level] += 1
        if d.numerator:
            acc[0][level] += 1
        acc[2] = max(acc[2], d.denominator)
        return acc

    def outputs(self, acc: Any) -> list[Output]:
        learned = learn(acc[0], acc[1])
        return [(self.name, None if learned is None else float(learned.days), sum(acc[1]))]

    @staticmethod
    def window_end(acc: Any, start: float, seconds: int) -> float:
        return window_of(acc[2], DAY) + DAY


AGGREGATORS: Final[dict[str, Any]] = {
    "active_customers": Count("active_customers"),
    "email_open_rate": Ratio("email_open_rate"),
    "nps": Ratio("nps", 100.0),
    "csat": Ratio("csat_pct", 100.0),
    "ces": Ratio("ces_mean"),
    "fcr": Ratio("fcr_rate"),
    "aht": Ratio("aht_seconds"),
    "ttr": Quantiles("ttr"),
    "cancellations": Count("cancellations"),
    "trial_to_paid": Ratio("trial_to_paid_rate"),
    "at_risk_raised": Count("at_risk_raised"),
    "participation": Thresholds(),
}


def encode_acc(metric: str, acc: Any) -> bytes:
    """An accumulator as bytes for the metrics agent's table."""
    if isinstance(AGGREGATORS[metric], Quantiles):
        return b"K" + base64.b64encode(acc.serialize())
    if isinstance(AGGREGATORS[metric], Thresholds):
        return b"H" + json.dumps(acc, separators=(",", ":")).encode()
    return f"{acc[0]!r},{acc[1]!r}".encode()


def decode_acc(metric: str, raw: bytes) -> Any:
    """Inverse of ``encode_acc``."""
    if raw[:1] == b"K":
        from datasketches import kll_floats_sketch

        return kll_floats_sketch.deserialize(base64.b64decode(raw[1:]))
    if raw[:1] == b"H":
        return json.loads(raw[1:])
    num, den = raw.decode().split(",")
    return [float(num), float(den)]


def window_of(ts: float, window_seconds: int) -> float:
    """Start of the tumbling window of ``window_seconds`` that holds ``ts``."""
    return float(int(ts // window_seconds) * window_seconds)


def _update(metric: str, segment: str | None, start: float, seconds: int,
            out: Output, acc: Any) -> MetricUpdate:
    name, value, sample = out
    agg = AGGREGATORS[metric]
    end = agg.window_end(acc, start, seconds) if hasattr(agg, "window_end") else start + seconds
    return MetricUpdate(name, segment, start, end, value, sample)


class MetricBook:
    """Accumulators by metric, segment and window, in any mutable mapping.

    ``store`` maps a ``MetricKey`` to an accumulator: a dict in replay, a
    Faust-table adapter in the worker. ``add`` folds a delta in and returns
    every update it causes, derived metrics included.
    """

    __slots__ = ("store",)

    def __init__(self, store: MutableMapping[MetricKey, Any] | None = None) -> None:
        self.store: MutableMapping[MetricKey, Any] = store if store is not None else {}

    def add(self, delta: MetricDelta) -> list[MetricUpdate]:
        """Fold one delta in; return the window's new value(s) and any derived ones."""
        return self._updates(delta, self.fold(delta))

    def fold(self, delta: MetricDelta) -> Any:
        """Fold one delta in, computing no update (a batch asks ``current`` once per
        window after its last fold); returns the window's accumulator."""
        agg = AGGREGATORS[delta.metric]
        key = delta.key
        acc = self.store.get(key)
        acc = agg.agg(acc if acc is not None else agg.initialize(), delta)
        self.store[key] = acc
        return acc

    def current(self, delta: MetricDelta) -> list[MetricUpdate]:
        """The updates ``add`` gave for this delta's window, without folding it again.

        For a delta that was already folded (a redelivery): its window's and the
        derived metrics' current values, to publish again in case the first
        publication was lost.
        """
        acc = self.store.get(delta.key)
        if acc is None:
            return self._derived(delta)
        return self._updates(delta, acc)

    def _updates(self, delta: MetricDelta, acc: Any) -> list[MetricUpdate]:
        agg = AGGREGATORS[delta.metric]
        updates = [_update(delta.metric, delta.segment, delta.window_start,
                           delta.window_seconds, o, acc) for o in agg.outputs(acc)]
        updates.extend(self._derived(delta))
        return updates

    def _get(self, metric: str, segment: str | None, start: float, seconds: int) -> float:
        acc = self.store.get((metric, segment, start, seconds))
        return float(acc[0]) if acc is not None else 0.0

    def _derived(self, d: MetricDelta) -> list[MetricUpdate]:
        out: list[MetricUpdate] = []
        seg = d.segment
        if d.metric == "active_customers" and d.window_seconds == DAY:
            out.append(self._stickiness(seg, d.window_start))
        elif d.metric == "active_customers" and d.window_seconds == MONTH:
            # DAU ÷ MAU for the day this 28-day window ends on...
            out.append(self._stickiness(seg, d.window_start + MONTH - DAY))
            # ...and the churn of the 28 days after it (this window is their base).
            out.extend(self._churn(seg, d.window_start + MONTH))
        elif d.metric == "cancellations" and d.window_seconds == MONTH:
            out.extend(self._churn(seg, d.window_start))
        return out

    def _stickiness(self, seg: str | None, day: float) -> MetricUpdate:
        dau = self._get("active_customers", seg, day, DAY)
        mau = self._get("active_customers", seg, day + DAY - MONTH, MONTH)
        value = dau / mau if mau > 0 else None
        return MetricUpdate("stickiness", seg, day, day + DAY, value, int(mau))

    def _churn(self, seg: str | None, start: float) -> list[MetricUpdate]:
        lost = self._get("cancellations", seg, start, MONTH)
        base = self._get("active_customers", seg, start - MONTH, MONTH)
        churn = lost / base if base > 0 else None
        return [MetricUpdate("churn_rate", seg, start, start + MONTH, churn, int(base)),
                MetricUpdate("retention_rate", seg, start, start + MONTH,
                             None if churn is None else 1.0 - churn, int(base))]

    def latest(self) -> list[MetricUpdate]:
        """Every metric's final value per window (derived ones too), in a stable order."""
        final: dict[tuple[str, str | None, float, float], MetricUpdate] = {}
        for key in list(self.store):
            metric, seg, start, seconds = key
            acc = self.store[key]
            for o in AGGREGATORS[metric].outputs(acc):
                u = _update(metric, seg, start, seconds, o, acc)
                final[(u.metric, u.segment, u.window_start, u.window_end)] = u
            probe = MetricDelta(metric, seg, start, seconds, 0.0)
            for u in self._derived(probe):
                final[(u.metric, u.segment, u.window_start, u.window_end)] = u
        return [final[k] for k in sorted(final, key=lambda k: (k[0], k[1] or "", k[3] - k[2],
                                                                k[2]))]


def rolling_windows(day_start: float, days: int, first_day: float | None) -> Iterator[float]:
    """Starts of the ``days``-day windows (one ending at each day boundary) that contain
    day ``day_start`` but not ``first_day`` (a day already counted), in order."""
    size = days * DAY
    lo = day_start - size + DAY
    if first_day is not None:
        lo = max(lo, first_day + DAY)
    start = lo
    while start <= day_start:
        yield start
        start += DAY


def each_window(t: float, tumbling: tuple[int, ...], rolling_days: tuple[int, ...]
                ) -> Iterator[tuple[float, int]]:
    """Every (start, seconds) window that holds event time ``t``."""
    for seconds in tumbling:
        yield window_of(t, seconds), seconds
    day = window_of(t, DAY)
    for days in rolling_days:
        for start in rolling_windows(day, days, None):
            yield start, days * DAY


