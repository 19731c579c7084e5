"""Learning churn from the stream's own cancellations, pooled over every partition.

**Labels from the stream only.** Every customer's features are snapshotted at
each week boundary of event time (``Snapshot``); a ``subscription.cancelled``
is a ``Cancellation``. A snapshot taken at ``s`` is *churned* if the customer
cancels within the horizon (30 days) after it, *survived* once the horizon has
passed without one. Only matured snapshots (``s`` + horizon before the cut-off)
are learned from, so positives and negatives are judged alike.

**Versions in event time.** Version ``B`` is trained at week boundary ``B``
(every 7 days of event time) on the matured snapshots of the last
``window_weeks`` and is used by decisions from ``B`` + ``effective_delay_days``
on. It may be trained only once *every partition* has passed ``B`` (each says
so with a ``Marker``; a partition that never reported anything has no
customers and holds nothing back), so it learns from exactly the labels known
before ``B``, whatever the arrival order, in the worker (where every worker
reads every partition's rows from the learning topic) and in replay alike. A
partition whose watermark would pass the version's effective time before the
version exists waits (``ready_until``).

One arrival order breaks that: a partition that said it was empty and then
receives customers whose events are dated before versions the others already
settled (a backfill that reaches one partition long after the rest). Replay,
in event-time order, would have waited for it; the worker cannot know it is
coming. Those versions stay as settled, and ``started_late`` names the
partition and boundary so an operator sees it (the worker logs it).

**Bounded.** Snapshots are kept per week, at most ``rows_per_week`` of them:
those of the customers with the smallest hashes (the same customers every
week), each weighted by how many it stands for; older weeks than the window
are dropped. Training time is bounded by the rows, not by the customer count.

**Alert line.** The new version scores every customer's snapshot at its own
boundary (the customers it will decide for); the alert line is the probability
that the budget's share of them (alerts per 1,000 customers per week ÷ 1,000)
reaches, so a version raises about the budget, whatever its calibration and
however the population moved since the rows it learned from. Until
``min_churned`` churned snapshots are in the window there is no version (warm-up).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from cxstream.engine.churn import ChurnModel, transform
from cxstream.engine.config import DAY_SECONDS, LearnConfig
from cxstream.engine.features import FEATURES, unpack

__all__ = ["WEEK", "Cancellation", "Empty", "Fit", "Learner", "LearningRow", "Marker", "Snapshot",
           "row_from_list", "row_to_list",
           "boundary_after", "boundary_at"]

WEEK: Final = 7 * DAY_SECONDS
_SEGMENTS_MAX: Final = 12  # segments given a weight of their own; rarer ones share none
_N: Final = len(FEATURES)


def boundary_at(t: float) -> float:
    """The week boundary at or before ``t``."""
    return math.floor(t / WEEK) * WEEK


def boundary_after(t: float) -> float:
    """The first week boundary strictly after ``t``."""
    return boundary_at(t) + WEEK


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A customer's features at week boundary ``taken_at`` (``features.pack``)."""

    customer_id: str
    taken_at: float
    segment: str | None
    packed: str


@dataclass(frozen=True, slots=True)
class Cancellation:
    customer_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Marker:
    """Partition ``partition`` has settled everything before ``boundary``."""

    partition: int
    boundary: float


@dataclass(frozen=True, slots=True)
class Empty:
    """Partition ``partition`` has no customers and nothing unread: it holds no version
    back until it reports something else."""

    partition: int


LearningRow = Snapshot | Cancellation | Marker | Empty
# (standardised rows, labels, weights) -> (coefficients, intercept)
Fit = Callable[[list[list[float]], list[int], list[float]], tuple[list[float], float]]


def _rank(customer_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=8).digest(), "big")


class _Week:
    """One week's snapshots: those of the ``limit`` customers with the smallest ranks.

    A repeated snapshot (a redelivery) changes nothing, and the weight each kept
    row stands for comes from the ranks alone (the k-minimum-values estimate of
    how many customers there were), so it does not depend on repeats either.
    """

    __slots__ = ("_heap", "full", "limit", "rows")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.full = False
        self.rows: dict[str, Snapshot] = {}  # customer id -> snapshot
        self._heap: list[tuple[int, str]] = []  # (-rank, customer id) of the kept rows

    def add(self, snap: Snapshot) -> None:
        cid = snap.customer_id
        if cid in self.rows:
            return
        rank = _rank(cid)
        if self.full and rank >= -self._heap[0][0]:
            return
        self.rows[cid] = snap
        heapq.heappush(self._heap, (-rank, cid))
        if len(self.rows) > self.limit:
            self.full = True
            _, worst = heapq.heappop(self._heap)
            del self.rows[worst]

    @property
    def weight(self) -> float:
        """Customers each kept row stands for (1 until the week overflowed)."""
        if not self.full:
            return 1.0
        k = len(self.rows)
        return (k - 1) * 2.0**64 / -self._heap[0][0] / k


class Learner:
    """Collects every partition's learning rows and trains the versions in order."""

    def __init__(self, partitions: int, fit: Fit | None, config: LearnConfig | None = None
                 ) -> None:
        self.partitions = partitions
        self.fit = fit
        self.config = config or LearnConfig()
        self._weeks: dict[float, _Week] = {}
        self._cancels: dict[str, list[float]] = {}
        self._reached: dict[int, float] = {}  # partitions that reported, and how far
        self._first: dict[int, float] = {}  # the first boundary each reported
        self._empty: set[int] = set()  # partitions with nothing to report (yet)
        self._decided: float | None = None  # the last boundary whose version is settled
        self.versions: dict[float, ChurnModel | None] = {}  # boundary -> version (None: warm-up)
        # (partition, first boundary) of each partition that said it was empty and then
        # reported rows for versions already settled without it: see the module doc.
        self.started_late: list[tuple[int, float]] = []

    # -- what the partitions report ------------------------------------------------------

    def add(self, rows: Iterable[LearningRow], partition: int) -> None:
        """Take a partition's rows, in the order it produced them."""
        reached = self._reached.get(partition, -math.inf)
        for row in rows:
            if isinstance(row, Empty):
                if partition not in self._reached:
                    self._empty.add(partition)
                continue
            if isinstance(row, Snapshot):
                week = self._weeks.get(row.taken_at)
                if week is None:
                    week = self._weeks[row.taken_at] = _Week(self.config.rows_per_week)
                week.add(row)
                at = row.taken_at
            elif isinstance(row, Cancellation):
                self._cancels.setdefault(row.customer_id, []).append(row.at)
                at = boundary_at(row.at)
            else:
                at = row.boundary
            if at > reached:
                reached = at
            if partition not in self._first and partition in self._empty and (
                    self._decided is not None and boundary_at(at) + WEEK <= self._decided):
                self.started_late.append((partition, boundary_at(at)))
            self._first.setdefault(partition, boundary_at(at))
        if reached > -math.inf:
            self._reached[partition] = reached
            self._empty.discard(partition)

    # -- versions ------------------------------------------------------------------------

    def _known(self) -> bool:
        """Whether every partition has reported something (or said it is empty)."""
        return len(self._reached) + len(self._empty) >= self.partitions and bool(self._reached)

    def _next(self) -> float | None:
        """The first boundary whose version is not settled yet: versions run from the
        first boundary any partition reported."""
        if self._decided is not None:
            return self._decided + WEEK
        if not self._first:
            return None
        return min(self._first.values())

    def trainable(self) -> bool:
        """Whether every partition with customers has passed the next boundary."""
        nxt = self._next()
        return nxt is not None and self._known() and min(self._reached.values()) >= nxt

    def train_ready(self) -> list[float]:
        """Settle every version the partitions allow; returns their boundaries."""
        done = []
        while self.trainable():
            boundary = self._next()
            assert boundary is not None
            self.versions[boundary] = self._train(boundary)
            self._decided = boundary
            done.append(boundary)
            self._forget(boundary)
        return done

    def ready_until(self) -> float:
        """Decisions strictly before this event time have their version settled.

        Before the first version is settled, the versions of the first horizon after
        the first boundary anyone reported need none: no snapshot can have matured
        by then (partitions start within a horizon of each other; see
        ``PartitionProcessor``, which also holds itself to its own first boundary
        plus a horizon until then).
        """
        nxt = self._next()
        if nxt is None:
            return math.inf
        if self._decided is None and not self.trainable():
            return nxt + self.config.horizon_days * DAY_SECONDS
        return nxt + self.config.effective_delay_days * DAY_SECONDS

    def settled_until(self) -> float:
        """The boundary of the newest settled version (-inf before the first)."""
        return self._decided if self._decided is not None else -math.inf

    def waiting_for(self) -> list[int]:
        """Partitions that have not passed the next boundary yet (for an operator)."""
        nxt = self._next()
        if nxt is None:
            return []
        missing = [p for p in range(self.partitions)
                   if p not in self._empty and self._reached.get(p, -math.inf) < nxt]
        return missing

    def model_at(self, t: float) -> ChurnModel | None:
        """The version that decides at event time ``t`` (None: warm-up, or none needed)."""
        latest = boundary_at(t - self.config.effective_delay_days * DAY_SECONDS)
        while latest not in self.versions and self.versions:
            if latest < min(self.versions):
                return None
            latest -= WEEK
        return self.versions.get(latest)

    # -- training ------------------------------------------------------------------------

    def _labelled(self, boundary: float) -> list[tuple[Snapshot, int, float]]:
        horizon = self.config.horizon_days * DAY_SECONDS
        first = boundary - horizon - self.config.window_weeks * WEEK
        out = []
        for taken_at in sorted(self._weeks):
            if not first < taken_at <= boundary - horizon:
                continue
            week = self._weeks[taken_at]
            for snap in sorted(week.rows.values(), key=lambda s: s.customer_id):
                cancels = self._cancels.get(snap.customer_id, ())
                churned = any(taken_at < c <= taken_at + horizon for c in cancels)
                out.append((snap, 1 if churned else 0, week.weight))
        return out

    def _train(self, boundary: float) -> ChurnModel | None:
        rows = self._labelled(boundary)
        churned = sum(y for _, y, _ in rows)
        if self.fit is None or churned < self.config.min_churned or churned == len(rows):
            return None
        raw = [unpack(s.packed) for s, _, _ in rows]
        xs = [transform(x) for x in raw]
        weights = [w for _, _, w in rows]
        total = sum(weights)
        mean = [sum(w * x[j] for x, w in zip(xs, weights, strict=True)) / total
                for j in range(_N)]
        scale = []
        for j in range(_N):
            var = sum(w * (x[j] - mean[j]) ** 2 for x, w in zip(xs, weights, strict=True)) / total
            scale.append(math.sqrt(var) if var > 1e-12 else 1.0)
        counts: dict[str, float] = {}
        for s, _, w in rows:
            if s.segment is not None:
                counts[s.segment] = counts.get(s.segment, 0.0) + w
        segments = tuple(sorted(counts, key=lambda k: (-counts[k], k))[:_SEGMENTS_MAX])
        z = [[(v - m) / sc for v, m, sc in zip(x, mean, scale, strict=True)]
             + [1.0 if s.segment == name else 0.0 for name in segments]
             for x, (s, _, _) in zip(xs, rows, strict=True)]
        ys = [y for _, y, _ in rows]
        coef, intercept = self.fit(z, ys, weights)
        stay_w = sum(w for _, y, w in rows if not y)
        typical = tuple(sum(w * x[j] for x, (_, y, w) in zip(raw, rows, strict=True) if not y)
                        / stay_w for j in range(_N))
        low = tuple(min(x[j] for x in xs) for j in range(_N))
        high = tuple(max(x[j] for x in xs) for j in range(_N))
        model = ChurnModel(boundary, tuple(coef), intercept, tuple(mean), tuple(scale), low,
                           high, segments, typical, 0.5, 0.5, 0.5, len(rows), churned)
        # The alert line ranks the customers this version will score next: their
        # snapshots at the boundary itself (the training rows are a horizon older, and a
        # population changes: customers age, a product changes).
        current = self._weeks.get(boundary)
        if current is not None and current.rows:
            weight = current.weight
            scored = sorted((model.probability(unpack(s.packed), s.segment), weight)
                            for s in current.rows.values())
        else:
            scored = sorted((model.probability(x, s.segment), w)
                            for x, (s, _, w) in zip(raw, rows, strict=True))
        share = self.config.budget_per_1k_week / 1000.0
        line = _upper_quantile(scored, share)
        critical = _upper_quantile(scored, share / 3.0)
        return ChurnModel(boundary, tuple(coef), intercept, tuple(mean), tuple(scale), low,
                          high, segments, typical, line, 0.75 * line, max(line, critical),
                          len(rows), churned)

    def _forget(self, boundary: float) -> None:
        """Drop what no later version can learn from."""
        horizon = self.config.horizon_days * DAY_SECONDS
        oldest = boundary + WEEK - horizon - self.config.window_weeks * WEEK
        for taken_at in [t for t in self._weeks if t <= oldest]:
            del self._weeks[taken_at]
        for cid in list(self._cancels):
            kept = [c for c in self._cancels[cid] if c > oldest]
            if kept:
                self._cancels[cid] = kept
            else:
                del self._cancels[cid]


def _upper_quantile(scored: list[tuple[float, float]], share: float) -> float:
    """The score at or above which ``share`` of the weight lies (``scored`` ascending)."""
    total = sum(w for _, w in scored)
    above = 0.0
    for p, w in reversed(scored):
        above += w
        if above >= share * total:
            return p
    return scored[0][0]


def row_to_list(row: LearningRow) -> list[object]:
    """A row as plain JSON-able data for the learning topic (see ``row_from_list``)."""
    if isinstance(row, Snapshot):
        return ["s", row.customer_id, row.taken_at, row.segment, row.packed]
    if isinstance(row, Cancellation):
        return ["c", row.customer_id, row.at]
    if isinstance(row, Marker):
        return ["m", row.partition, row.boundary]
    return ["e", row.partition]


def row_from_list(data: list[object]) -> LearningRow:
    """Inverse of ``row_to_list``."""
    kind = data[0]
    if kind == "s":
        return Snapshot(str(data[1]), float(data[2]),  # type: ignore[arg-type]
                        None if data[3] is None else str(data[3]), str(data[4]))
    if kind == "c":
        return Cancellation(str(data[1]), float(data[2]))  # type: ignore[arg-type]
    if kind == "m":
        return Marker(int(data[1]), float(data[2]))  # type: ignore[call-overload,arg-type]
    if kind == "e":
        return Empty(int(data[1]))  # type: ignore[call-overload]
    raise ValueError(f"not a learning row: {data!r}")
