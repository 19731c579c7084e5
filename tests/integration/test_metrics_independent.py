"""Every CX metric from the streaming path equals an independent computation.

A simulated event set (100 customers, 45 days) is published to four-partition
topics and consumed by two workers of one app. The latest value of every
metric window on the metrics topic must equal what this file computes with
plain code over the same events, following ``docs/metrics.md`` (nothing from
``cxstream.engine.metrics``, ``cxstream.engine.measures`` or ``cxstream.engine.engine`` is used):

- an event counts once its partition's watermark (max event time seen in the
  partition − allowed lateness) has passed it, duplicates by ``event_id`` once;
- windows: tumbling 1 h and 1 d, rolling 7 d and 28 d (one ending at every day
  boundary); ``email_open_rate`` only 1 h and 1 d; ``stickiness`` 1 d;
  ``churn_rate``/``retention_rate`` 28 d;
- TTR quantiles come from a KLL sketch (float32 items, k = 200): exact for
  n ≤ 200 with the sketch's default (exclusive) rank, the item at index
  ⌊r·n⌋ of the sorted samples; within ±2 % of n in rank beyond that.

``at_risk_raised`` depends on the health model, not on a counting rule, and is
not checked here.
"""

from __future__ import annotations

import math
import struct
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cxstream.agents.ingest import decode
from cxstream.agents.partitioning import partitioner_for
from cxstream.agents.publisher import publish_file
from cxstream.devtools.broker import BrokerStatus
from cxstream.engine.events import Event
from cxstream.schemas.events import event_to_json
from cxstream.settings import Settings
from cxstream.sim.simulator import simulate

from .helpers import (
    WorkerProcess,
    describe_group,
    free_port,
    fresh_settings,
    group_lag,
    read_to_end,
    run,
    wait_caught_up,
)

# Part of `make test`. The workers start together; when one joins the group a
# moment after the other, it takes over partitions the first one processed but
# had not committed yet, restoring their tables: the case that used to stall
# (Faust dropped those partitions' records, see reread_uncommitted in
# agents/app.py) and then to miss late windows (held inputs, see
# PartitionProcessor._repeat). A stall fails with lag and owner per partition,
# Faust's view of each worker and both workers' logs and stacks.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(720)]

START = 1_772_323_200.0  # 2026-03-01T00:00:00Z
# 100 customers x 45 days: ~11.8k events, ~140k metric records (every event lands in
# ~37 windows x 2 scopes); 300 customers would mean ~400k records, minutes of output.
CUSTOMERS = 100
DAYS = 45
SEED = 7
PARTITIONS = 4
HOUR = 3_600
DAY = 86_400
ROLLING_DAYS = (7, 28)
TICKETS_KEPT = 8  # docs/metrics.md: only the last 8 tickets per customer are remembered
KLL_EXACT_N = 200  # k = 200: the sketch keeps every item up to here
KLL_RANK_TOLERANCE = 0.02
METRICS_READ_S = 300.0
HANDLE_S = 300.0

CHECKED = frozenset({
    "active_customers", "stickiness", "email_open_rate", "nps", "csat_pct", "ces_mean",
    "fcr_rate", "ttr_p50_seconds", "ttr_p90_seconds", "aht_seconds", "cancellations",
    "churn_rate", "retention_rate", "trial_to_paid_rate",
})

Key = tuple[str, str | None, float, float]  # metric, segment, window start, window end


# -- the independent reference ---------------------------------------------------------


def _windows(t: float, rolling: bool = True) -> list[tuple[float, int]]:
    """(start, seconds) of every window holding event time ``t``."""
    out = [(float(math.floor(t / HOUR) * HOUR), HOUR)]
    day = float(math.floor(t / DAY) * DAY)
    out.append((day, DAY))
    if rolling:
        for n in ROLLING_DAYS:
            for back in range(n):  # windows [D - n days, D) for every D that holds day
                out.append((day - back * DAY, n * DAY))
    return out


def settled_events(events: list[Event], lateness: float) -> list[Event]:
    """Events past their partition's final watermark, each event_id once, in time order."""
    partition_of = partitioner_for(PARTITIONS)
    seen: set[str] = set()
    unique: list[Event] = []
    for e in events:
        if e.event_id not in seen:
            seen.add(e.event_id)
            unique.append(e)
    top: dict[int, float] = {}
    for e in unique:
        p = partition_of(e.customer_id)
        top[p] = max(top.get(p, -math.inf), e.occurred_at)
    kept = [e for e in unique
            if e.occurred_at <= top[partition_of(e.customer_id)] - lateness]
    return sorted(kept, key=lambda e: e.occurred_at)  # stable: file order on ties


class Reference:
    """Plain per-window bookkeeping, then one value per (metric, segment, window)."""

    def __init__(self) -> None:
        self.active: dict[tuple[str | None, float, int], set[str]] = defaultdict(set)
        self.email: dict[tuple[str | None, float, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        self.surveys: dict[str, dict[tuple[str | None, float, int], list[float]]] = {
            s: defaultdict(list) for s in ("nps", "csat", "ces")}
        self.handle: dict[tuple[str | None, float, int], list[float]] = defaultdict(list)
        self.ttr: dict[tuple[str | None, float, int], list[float]] = defaultdict(list)
        # window -> {ticket id: first contact?} of tickets first resolved in it
        self.resolved: dict[tuple[str | None, float, int], dict[str, bool]] = defaultdict(dict)
        self.cancelled: dict[tuple[str | None, float, int], int] = defaultdict(int)
        self.trials: dict[tuple[str | None, float, int], list[int]] = defaultdict(lambda: [0, 0])
        self.notes: dict[str, int] = defaultdict(int)

    def add(self, events: list[Event]) -> None:
        by_customer: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            by_customer[e.customer_id].append(e)
        for cid, evs in by_customer.items():
            segs = {e.segment for e in evs if e.segment is not None}
            assert len(segs) <= 1, f"{cid} changes segment: {segs}"
            self._customer(cid, evs, next(iter(segs), None))

    def _customer(self, cid: str, evs: list[Event], segment: str | None) -> None:
        scopes = [None] if segment is None else [None, segment]
        tickets: dict[str, dict[str, Any]] = {}  # remembered tickets of this customer
        trial_at: float | None = None

        def put(t: float, rolling: bool = True) -> Iterator[tuple[str | None, float, int]]:
            for start, seconds in _windows(t, rolling):
                for s in scopes:
                    yield (s, start, seconds)

        for e in evs:
            t, kind = e.occurred_at, e.type
            if kind in ("login", "email.opened", "email.clicked"):
                for w in put(t):
                    self.active[w].add(cid)
            if kind in ("email.sent", "email.bounced", "email.opened"):
                col = {"email.sent": 0, "email.bounced": 1, "email.opened": 2}[kind]
                for w in put(t, rolling=False):
                    self.email[w][col] += 1
            elif kind == "survey.response" and e.score is not None:
                for w in put(t):
                    self.surveys[e.survey or ""][w].append(e.score)
            elif kind.startswith("ticket."):
                if e.handle_seconds is not None:
                    for w in put(t):
                        self.handle[w].append(e.handle_seconds)
                self._ticket(tickets, e, put)
            elif kind == "subscription.cancelled":
                for w in put(t):
                    self.cancelled[w] += 1
            elif kind == "subscription.trial_started":
                trial_at = t
                for w in put(t):
                    self.trials[w][1] += 1
            elif kind == "subscription.converted":
                if trial_at is None:
                    self.notes["conversion without a trial"] += 1
                    continue
                for w in put(trial_at):  # the trial's cohort windows
                    self.trials[w][0] += 1
                trial_at = None

    def _ticket(self, tickets: dict[str, dict[str, Any]], e: Event, put: Any) -> None:
        tid, t = e.ticket_id or "", e.occurred_at
        if e.type == "ticket.opened":
            if tid not in tickets:
                tickets[tid] = {"opened": t, "replies": 0, "reopened": False,
                                "resolved": None, "fcr": False}
                if len(tickets) > TICKETS_KEPT:
                    oldest = min(tickets, key=lambda k: (tickets[k]["opened"], k))
                    del tickets[oldest]
                    self.notes["tickets forgotten (cap of 8)"] += 1
            return
        rec = tickets.get(tid)
        if rec is None:
            self.notes[f"{e.type} of a forgotten/unknown ticket"] += 1
            return
        if e.type == "ticket.replied":
            rec["replies"] += 1
        elif e.type == "ticket.reopened":
            rec["reopened"] = True
            if rec["resolved"] is not None and rec["fcr"]:
                for w in put(rec["resolved"]):
                    self.resolved[w][tid] = False  # taken back out of the numerator
                rec["fcr"] = False
        elif e.type == "ticket.resolved" and rec["resolved"] is None:
            rec["resolved"] = t
            rec["fcr"] = not rec["reopened"] and rec["replies"] <= 1
            for w in put(t):
                self.ttr[w].append(t - rec["opened"])
                self.resolved[w][tid] = rec["fcr"]

    # -- values ------------------------------------------------------------------------

    def values(self) -> dict[Key, tuple[float | None, int]]:
        """(value, sample_size) of every metric window except the TTR quantiles."""
        out: dict[Key, tuple[float | None, int]] = {}

        def key(metric: str, w: tuple[str | None, float, int]) -> Key:
            seg, start, seconds = w
            return (metric, seg, start, start + seconds)

        for w, who in self.active.items():
            out[key("active_customers", w)] = (float(len(who)), len(who))
        for w, (sent, bounced, opened) in self.email.items():
            delivered = sent - bounced
            out[key("email_open_rate", w)] = ((opened / delivered, delivered) if delivered > 0
                                              else (None, 0))
        for w, scores in self.surveys["nps"].items():
            net = sum(1 for s in scores if s >= 9) - sum(1 for s in scores if s <= 6)
            out[key("nps", w)] = (100.0 * net / len(scores), len(scores))
        for w, scores in self.surveys["csat"].items():
            out[key("csat_pct", w)] = (100.0 * sum(1 for s in scores if s >= 4) / len(scores),
                                       len(scores))
        for w, scores in self.surveys["ces"].items():
            out[key("ces_mean", w)] = (sum(scores) / len(scores), len(scores))
        for w, handles in self.handle.items():
            out[key("aht_seconds", w)] = (sum(handles) / len(handles), len(handles))
        for w, done in self.resolved.items():
            out[key("fcr_rate", w)] = (sum(done.values()) / len(done), len(done))
        for w, n in self.cancelled.items():
            out[key("cancellations", w)] = (float(n), n)
        for w, (converted, started) in self.trials.items():
            out[key("trial_to_paid_rate", w)] = (converted / started, started)

        scopes = {w[0] for w in self.active} | {w[0] for w in self.cancelled}
        month = 28 * DAY

        def count(table: Any, seg: str | None, start: float, seconds: int) -> int:
            got = table.get((seg, start, seconds))
            return 0 if got is None else (len(got) if isinstance(got, set) else got)

        for seg in scopes:
            # stickiness of day D = DAU(D) / MAU(28 days ending with D), for every day that
            # has a DAU or ends a 28-day window with activity
            days = {start for (s, start, seconds) in self.active if s == seg and seconds == DAY}
            days |= {start + month - DAY for (s, start, seconds) in self.active
                     if s == seg and seconds == month}
            for d in days:
                dau = count(self.active, seg, d, DAY)
                mau = count(self.active, seg, d + DAY - month, month)
                out[("stickiness", seg, d, d + DAY)] = (dau / mau if mau else None, mau)
            # churn of the 28 days from S = cancellations in them / active in the 28 before
            starts = {start for (s, start, seconds) in self.cancelled
                      if s == seg and seconds == month}
            starts |= {start + month for (s, start, seconds) in self.active
                       if s == seg and seconds == month}
            for st in starts:
                lost = count(self.cancelled, seg, st, month)
                base = count(self.active, seg, st - month, month)
                churn = lost / base if base else None
                out[("churn_rate", seg, st, st + month)] = (churn, base)
                out[("retention_rate", seg, st, st + month)] = (
                    None if churn is None else 1.0 - churn, base)
        return out

    def ttr_samples(self) -> dict[Key, list[float]]:
        """TTR samples (as the sketch stores them: float32) per window."""
        return {("ttr", seg, start, start + seconds): sorted(_f32(x) for x in xs)
                for (seg, start, seconds), xs in self.ttr.items()}


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def kll_exact_quantile(sorted_samples: list[float], rank: float) -> float:
    """``kll_floats_sketch.get_quantile(rank)`` (exclusive rank) while it keeps every item."""
    n = len(sorted_samples)
    return sorted_samples[min(n - 1, math.floor(rank * n))]


# -- the streaming path ----------------------------------------------------------------


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _total(worker: WorkerProcess, name: str) -> float:
    """Sum of every sample of one counter over all its label values."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for fam in text_string_to_metric_families(worker.scrape())
               for s in fam.samples if s.name == name)


# Per-batch producer chatter that would push everything useful out of a log tail.
_NOISE = ("producer buffer full", "producer flush took")


# Faust's own per-partition and per-stream samples: what reached the worker and its streams.
_FAUST_VIEW = ("faust_messages_received_per_topics_partition", "faust_total_events_per_stream",
               "faust_total_active_events", "faust_topic_partition_offset_commited",
               "cxstream_processing_seconds_count")


def _faust_view(worker: WorkerProcess) -> str:
    try:
        text = worker.scrape()
    except OSError as exc:
        return f"(no /metrics: {exc})"
    return "\n".join(line for line in text.splitlines() if line.startswith(_FAUST_VIEW))


def _stall_report(settings: Settings, a: WorkerProcess, b: WorkerProcess, handled: float,
                  sent: int, progress: list[str]) -> str:
    """Why the workers stopped: progress over time, the group as the broker sees it
    (owners, committed offsets, lag per partition) and both workers' log tails."""
    return (f"{handled:.0f} handled (with redeliveries) of {sent} events\n"
            f"progress: {'; '.join(progress)}\n"
            f"{describe_group(settings)}\n"
            f"--- worker a ({a.log_path}):\n{a.log_tail(80, skip=_NOISE)}\n"
            f"--- worker b ({b.log_path}):\n{b.log_tail(80, skip=_NOISE)}\n"
            f"--- worker a, Faust's view:\n{_faust_view(a)}\n"
            f"--- worker b, Faust's view:\n{_faust_view(b)}\n"
            f"--- worker a, threads and tasks:\n{a.stacks()}\n"
            f"--- worker b, threads and tasks:\n{b.stacks()}")


@pytest.fixture()
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    with path.open("wb") as fh:
        for ev in simulate(CUSTOMERS, DAYS, seed=SEED, start=START):
            fh.write(event_to_json(ev) + b"\n")
    return path


@pytest.fixture()
def streamed(broker: BrokerStatus, tmp_path: Path, events_file: Path
             ) -> tuple[Settings, int, dict[Key, dict[str, Any]]]:
    """Publish, run two workers to the end, return the latest metric record per key."""
    first = fresh_settings(broker.bootstrap, tmp_path, topic_partitions=PARTITIONS)
    second = first.model_copy(update={"web_port": free_port(),
                                      "data_dir": tmp_path / "worker-b"})
    sent, invalid = run(publish_file(first, events_file))
    assert invalid == 0 and sent > 0
    a = WorkerProcess(first, tmp_path / "a.log")
    b = WorkerProcess(second, tmp_path / "b.log")
    try:
        a.wait_ready()
        b.wait_ready()
        # Done when the group has committed every input offset: the counters alone
        # cannot say it, since events redelivered after the start-up rebalance count
        # again (as duplicates) and the sum can pass `sent` with a partition unread.
        names = ("cxstream_events_processed_total", "cxstream_duplicate_events_total",
                 "cxstream_dead_letters_total")
        per_worker = {"a": 0.0, "b": 0.0}
        progress: list[str] = []  # counters and lag every 10 s, to see when it stopped
        began = time.monotonic()
        deadline = began + HANDLE_S
        lag = -1
        while time.monotonic() < deadline:
            for label, w in (("a", a), ("b", b)):
                try:
                    per_worker[label] = sum(_total(w, n) for n in names)
                except OSError:
                    pass  # keep the last value
            try:
                lag = run(group_lag(first))[0]
            except Exception:  # coordinator busy (rebalancing): ask again
                lag = -1
            if lag == 0 and sum(per_worker.values()) >= sent:
                break
            if not progress or time.monotonic() - began >= 10 * len(progress):
                progress.append(f"{time.monotonic() - began:.0f}s a={per_worker['a']:.0f} "
                                f"b={per_worker['b']:.0f} input lag={lag}")
            for w in (a, b):
                assert w.proc.poll() is None, f"worker died:\n{w.log_tail(80, skip=_NOISE)}"
            time.sleep(1.0)
        handled = sum(per_worker.values())
        assert lag == 0 and handled >= sent, _stall_report(first, a, b, handled, sent, progress)
        dead = sum(_total(w, "cxstream_dead_letters_total") for w in (a, b))
        assert dead == 0, f"{dead} events dead-lettered (late?)"
        # The metrics agent lags the scoring (about a dozen metric records per event):
        # wait until the group has committed every metric delta, then read to the end.
        assert wait_caught_up(first, METRICS_READ_S), (
            "metrics agent never caught up\n" + _stall_report(first, a, b, handled, sent, []))
        # Final now (every delta committed): read up to the end offsets, not "until quiet"
        # (a fetch slower than the quiet period on a loaded machine ended that read early,
        # and the windows it had not reached yet looked missing).
        records = run(read_to_end(broker.bootstrap, first.topic("metrics"), METRICS_READ_S))
    finally:
        a.stop()
        b.stop()
    latest: dict[Key, dict[str, Any]] = {}
    for r in records:
        latest[(r["metric"], r["segment"], _epoch(r["window_start"]),
                _epoch(r["window_end"]))] = r
    return first, sent, latest


def test_streamed_metrics_equal_an_independent_computation(
    streamed: tuple[Settings, int, dict[Key, dict[str, Any]]], events_file: Path
) -> None:
    settings, sent, latest = streamed
    events = [decode(line) for line in events_file.read_bytes().splitlines() if line.strip()]
    assert len(events) == sent
    kinds = {e.type for e in events}
    for needed in ("survey.response", "ticket.resolved", "ticket.reopened", "ticket.replied",
                   "subscription.trial_started", "subscription.converted",
                   "subscription.cancelled", "email.opened", "email.bounced"):
        assert needed in kinds, needed
    assert len(events) <= 40_000

    ref = Reference()
    ref.add(settled_events(events, settings.allowed_lateness_seconds))
    expected = ref.values()
    ttr = ref.ttr_samples()
    for (_, seg, start, end), xs in ttr.items():
        expected[("ttr_p50_seconds", seg, start, end)] = (None, len(xs))
        expected[("ttr_p90_seconds", seg, start, end)] = (None, len(xs))

    got = {k: r for k, r in latest.items() if k[0] in CHECKED}
    missing = sorted(set(expected) - set(got), key=str)
    extra = sorted(set(got) - set(expected), key=str)
    assert not missing and not extra, (
        f"{len(missing)} windows missing, e.g. {missing[:5]}; "
        f"{len(extra)} extra, e.g. {[(k, got[k]) for k in extra[:5]]}")

    wrong: list[str] = []
    for k, (value, size) in expected.items():
        rec = got[k]
        metric, seg, start, end = k
        if metric.startswith("ttr_"):
            xs = ttr[("ttr", seg, start, end)]
            rank = 0.5 if metric == "ttr_p50_seconds" else 0.9
            v = rec["value"]
            n = len(xs)
            if rec["sample_size"] != n or v is None:
                wrong.append(f"{k}: streamed {rec}, expected n={n}")
            elif n <= KLL_EXACT_N:
                if v != kll_exact_quantile(xs, rank):
                    wrong.append(f"{k}: streamed {v}, exact {kll_exact_quantile(xs, rank)} "
                                 f"(n={n})")
            else:
                below = sum(1 for x in xs if x < v)
                upto = sum(1 for x in xs if x <= v)
                target = math.floor(rank * n)
                slack = KLL_RANK_TOLERANCE * n
                if upto == below or not (below - slack <= target <= upto - 1 + slack):
                    wrong.append(f"{k}: streamed {v} has rank {below}..{upto - 1} of {n}, "
                                 f"target {target} ± {slack:.1f}")
            continue
        if value is None:
            ok = rec["value"] is None
        else:
            ok = rec["value"] is not None and rec["value"] == pytest.approx(value, rel=1e-9)
        if not ok or rec["sample_size"] != size:
            wrong.append(f"{k}: streamed value={rec['value']} n={rec['sample_size']}, "
                         f"expected value={value} n={size}")
    by_metric: dict[str, int] = defaultdict(int)
    for k in expected:
        by_metric[k[0]] += 1
    differ: dict[str, int] = defaultdict(int)
    for line in wrong:
        differ[line.split("'")[1]] += 1
    assert not wrong, (f"{len(wrong)} of {len(expected)} windows differ, by metric: "
                       f"{dict(differ)} (checked per metric: {dict(by_metric)}; "
                       f"notes: {dict(ref.notes)}):\n" + "\n".join(wrong[:40]))
    # Every metric was exercised, in every window length it has.
    lengths = defaultdict(set)
    for metric, _seg, start, end in expected:
        lengths[metric].add(end - start)
    assert lengths["active_customers"] == {HOUR, DAY, 7 * DAY, 28 * DAY}
    assert lengths["churn_rate"] == {28 * DAY} and lengths["stickiness"] == {DAY}
    assert set(by_metric) == CHECKED
