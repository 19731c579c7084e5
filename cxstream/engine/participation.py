"""Learned participation thresholds: which activity level comes before churn, per segment.

The seed article's rule, "determine what percentage of participation leads to
abandonment and alert when a client gets close", made online and per segment.

*Participation* is the number of active days (a login or an email open or
click) in the trailing 28 days, 0–28. Every customer with 28 days of history
takes a *snapshot* of its participation every 14 days of event time. A
snapshot is labelled by what happens next: *churned* if the customer cancels
within 30 days, *survived* once 30 days pass without a cancellation. The
labelled snapshots fill a histogram per segment (churned and observed counts
by participation level), and the learned threshold is the highest level at or
below which the churn rate is at least ``LIFT`` times the segment's overall
rate: the level below which churn rises sharply. A customer whose
participation comes within a profile's ``participation_margin_days`` of it
raises a ``participation`` alert (critical at or below the threshold itself).

Determinism: each partition learns from its own customers (a hash sample of
~1/P of them), so the threshold behind a decision depends only on the events
of that partition, exactly as replay routes them. A decision at event time
``t`` uses only outcomes labelled before the day of ``t`` (``frozen``); the
partition processor sweeps day by day, so every outcome of a day is in
before any decision of the next one, whatever the arrival order within the
allowed lateness. Every labelled outcome is also a metric delta, so the
metrics agent pools all partitions into the service-wide threshold it
publishes (``participation_threshold_days``) and ``cxstream thresholds``
prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cxstream.engine.alerts import Reason
from cxstream.engine.config import DAY_SECONDS, Profile
from cxstream.engine.signals import Observation
from cxstream.engine.state import RING_DAYS, CustomerState

__all__ = [
    "HORIZON_DAYS",
    "LEVELS",
    "LIFT",
    "Learned",
    "ParticipationModel",
    "inactive",
    "learn",
    "observe",
    "participation_days",
]

WINDOW_DAYS: Final = 28
LEVELS: Final = WINDOW_DAYS + 1  # participation 0..28 active days
SNAPSHOT_EVERY_DAYS: Final = 14.0
HORIZON_DAYS: Final = 30.0  # a snapshot followed by a cancellation within this is "churned"
MAX_SNAPSHOTS: Final = 3  # 30-day horizon / 14-day spacing, plus the newest
# What "churn rises sharply" means: at or below the threshold, churn is at
# least LIFT times the segment's overall rate...
LIFT: Final = 2.0
# ...measured on enough outcomes to mean something.
MIN_CHURNED: Final = 10
MIN_OBSERVED: Final = 50
MIN_BELOW: Final = 10  # snapshots at or below a candidate threshold
_ALL = "*"  # histogram of every customer: the threshold of customers without a segment


def participation_days(st: CustomerState, t: float) -> int:
    """Active days (login or email engagement) in the 28 days ending with ``t``'s day."""
    if st.ring_day0 is None:
        return 0
    end = int(t // DAY_SECONDS) - st.ring_day0
    ring = st.ring
    return sum(1 for i in range(max(0, end - WINDOW_DAYS + 1), min(len(ring), end + 1))
               if ring[i][0] or ring[i][1])


assert WINDOW_DAYS <= RING_DAYS


@dataclass(frozen=True, slots=True)
class Learned:
    """A learned threshold and the evidence behind it."""

    days: int  # participation at or below which churn is >= LIFT x the overall rate
    churn_at_or_below: float
    churn_overall: float
    churned: int
    observed: int

    def to_dict(self) -> dict[str, Any]:
        return {"threshold_days": self.days, "churn_at_or_below": round(self.churn_at_or_below, 4),
                "churn_overall": round(self.churn_overall, 4), "churned": self.churned,
                "observed": self.observed}


def learn(churned: list[int], observed: list[int]) -> Learned | None:
    """The threshold a histogram supports, or None while the evidence is too thin."""
    total_c, total_o = sum(churned), sum(observed)
    if total_c < MIN_CHURNED or total_o < MIN_OBSERVED:
        return None
    base = total_c / total_o
    best: Learned | None = None
    cc = oo = 0
    for level in range(LEVELS - 1):  # the top level (every day active) is no threshold
        cc += churned[level]
        oo += observed[level]
        # Only a level someone was observed at can be the threshold: an empty
        # level says nothing about the churn there.
        if observed[level] and oo >= MIN_BELOW and cc / oo >= LIFT * base:
            best = Learned(level, cc / oo, base, total_c, total_o)
    return best


class _Histogram:
    """Churned and observed snapshot counts by participation level."""

    __slots__ = ("churned", "observed")

    def __init__(self, churned: list[int] | None = None,
                 observed: list[int] | None = None) -> None:
        self.churned = churned if churned is not None else [0] * LEVELS
        self.observed = observed if observed is not None else [0] * LEVELS

    def add(self, level: int, churned: bool) -> None:
        self.observed[level] += 1
        if churned:
            self.churned[level] += 1

    def fold(self, other: _Histogram) -> None:
        for i in range(LEVELS):
            self.churned[i] += other.churned[i]
            self.observed[i] += other.observed[i]


class ParticipationModel:
    """One partition's outcome histograms per segment, frozen a day at a time."""

    __slots__ = ("_cache", "dirty", "frozen", "open", "open_day")

    def __init__(self) -> None:
        self.frozen: dict[str, _Histogram] = {}  # outcomes labelled before ``open_day``
        self.open: dict[str, _Histogram] = {}  # outcomes labelled on ``open_day``
        self.open_day: int | None = None
        self._cache: dict[str, Learned | None] = {}
        self.dirty = False  # changed since the worker last saved it

    def _roll(self, day: int) -> None:
        if self.open_day is not None and day <= self.open_day:
            return
        for seg, hist in self.open.items():
            self.frozen.setdefault(seg, _Histogram()).fold(hist)
        if self.open:
            self._cache.clear()
        self.open = {}
        self.open_day = day

    def add(self, segment: str | None, level: int, churned: bool, t: float) -> None:
        """Count one labelled snapshot, labelled at event time ``t``."""
        day = int(t // DAY_SECONDS)
        self._roll(day)
        for seg in (_ALL, segment) if segment is not None else (_ALL,):
            if self.open_day is not None and day < self.open_day:
                # Settled out of day order (only in a flood; see engine.MAX_PENDING).
                self.frozen.setdefault(seg, _Histogram()).add(level, churned)
                self._cache.pop(seg, None)
            else:
                self.open.setdefault(seg, _Histogram()).add(level, churned)
        self.dirty = True

    def threshold(self, segment: str | None, t: float) -> Learned | None:
        """The threshold for a decision at ``t``: outcomes labelled before ``t``'s day only."""
        self._roll(int(t // DAY_SECONDS))
        seg = segment if segment is not None else _ALL
        if seg not in self._cache:
            hist = self.frozen.get(seg)
            self._cache[seg] = learn(hist.churned, hist.observed) if hist is not None else None
        return self._cache[seg]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, saved per partition by the worker."""
        return {"day": self.open_day,
                "frozen": {s: [h.churned, h.observed] for s, h in self.frozen.items()},
                "open": {s: [h.churned, h.observed] for s, h in self.open.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParticipationModel:
        model = cls()
        model.open_day = d["day"]
        model.frozen = {s: _Histogram(list(c), list(o)) for s, (c, o) in d["frozen"].items()}
        model.open = {s: _Histogram(list(c), list(o)) for s, (c, o) in d["open"].items()}
        return model


_QUIET = Observation(False, "warning", ())


def inactive() -> Observation:
    """No participation condition (no threshold learned yet, or too new to measure)."""
    return _QUIET


def observe(level: int, learned: Learned | None, prof: Profile, is_open: bool) -> Observation:
    """Participation against the learned threshold, with one day of hysteresis to resolve."""
    if learned is None:
        return _QUIET
    line = learned.days + prof.participation_margin_days + (1 if is_open else 0)
    if level > line:
        return _QUIET
    severity = "critical" if level <= learned.days else "warning"

    def reasons() -> tuple[Reason, ...]:
        where = ("at or below" if level <= learned.days else
                 f"within {prof.participation_margin_days} days of")
        return (Reason(
            "participation_low", float(level), float(learned.days),
            f"Active on {level} of the last 28 days ({level / 28:.0%}), {where} the learned "
            f"threshold of {learned.days} days: customers at or below it churned within 30 days "
            f"{learned.churn_at_or_below:.0%} of the time, against {learned.churn_overall:.0%} "
            f"overall ({learned.churned} churned of {learned.observed} observed)."),)

    return Observation(True, severity, reasons)
