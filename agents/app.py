"""The composition root of the worker: ``create_app(settings, registry=...)``.

Builds a fresh ``faust.App`` with its topics, tables, agents, web pages and
Prometheus metrics from a validated ``Settings``, and returns them together.
There is no module-level app: tests build as many as they like, and nothing
reads the environment here.
"""

from __future__ import annotations

import logging
import weakref
from types import SimpleNamespace
from typing import Any, NamedTuple

import faust
import orjson
from aiokafka.structs import TopicPartition
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.streams import _current_event
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

from cxstream.agents.backlog import BacklogProbe
from cxstream.agents.learning import follow
from cxstream.agents.partitioning import partitioner_for
from cxstream.agents.scoring import DELTA_SOURCE_HEADER, Scorer
from cxstream.agents.security import faust_credentials, kafka_options
from cxstream.agents.sensors import ServiceMetrics
from cxstream.agents.tables import AccumulatorTable
from cxstream.agents.topics import MAX_MESSAGE_BYTES
from cxstream.agents.web import install_routes, owned_partitions
from cxstream.engine.engine import Engine
from cxstream.engine.learning import Learner
from cxstream.engine.metrics import MetricBook, MetricDelta, MetricKey, MetricUpdate
from cxstream.learn.fit import logistic_fit
from cxstream.settings import Settings

__all__ = ["Service", "create_app"]

log = logging.getLogger(__name__)

# The scorer takes up to this many input messages at once (or what came within the
# time) and commits each topic partition's share as one run (see ``Scorer``). A
# backlog fills a batch at once; a quiet stream waits at most the time, which is
# all batching adds to an alert's latency.
SCORE_BATCH = 1000
SCORE_BATCH_WITHIN_S = 0.05
# The metrics agent folds up to this many delta messages at once (or what came
# within the time): each window is read, written and published once per batch, so
# under a backlog a longer wait means far fewer accumulator writes and metric
# updates (metrics are rolling windows; half a second late is nothing to them).
METRICS_BATCH = 5000
METRICS_BATCH_WITHIN_S = 0.5
PRODUCER_LINGER_S = 0.005
_WINDOW_LABEL = {3600: "1h", 86400: "1d", 604800: "7d", 2419200: "28d"}


def _set_gauge(metrics: ServiceMetrics, newest: dict[tuple[str, str, str], float],
               update: MetricUpdate) -> None:
    """Show each metric's newest window on the gauge (labels: metric, segment, window)."""
    seconds = int(update.window_end - update.window_start)
    # Not windowed (learned thresholds: every outcome so far, window_start 0): "all".
    window = "all" if update.window_start == 0 else _WINDOW_LABEL.get(seconds, f"{seconds}s")
    labels = (update.metric, update.segment or "all", window)
    if update.value is None or update.window_end < newest.get(labels, float("-inf")):
        return
    newest[labels] = update.window_end
    metrics.metric_value.labels(*labels).set(update.value)


async def reread_uncommitted(app: Any, probe: BacklogProbe, topics: list[str]) -> None:
    """Start every owned stream partition without a committed offset from its beginning.

    Faust (0.15.3) can consume such a partition's records during a table recovery and
    drop them: when it pauses the restored changelogs ("Done reading from changelog
    topics") the set of partitions its pending fetch asks for becomes empty, and an
    empty set makes aiokafka's ``fetched_records`` return *every* buffered partition,
    including the paused stream partitions it prefetched; Faust then discards the
    records of partitions it had not asked for. Its ``perform_seek()`` reads them
    again only from a committed offset above 0, so a partition its previous owner
    processed but never committed (a second worker joining within the 2.8 s commit
    interval) was left at its end and never consumed. ``auto_offset_reset`` is
    ``earliest``: without a commit the beginning is where the partition starts.
    Records its previous owner applied come again and count as duplicates.
    """
    for tp in sorted(app.consumer.assignment()):
        if tp.topic in topics and not await probe.committed(tp.topic, tp.partition):
            await app.consumer.seek(TopicPartition(tp.topic, tp.partition), 0)


def hold_deliveries_until_recovery_resumes(app: Any) -> None:
    """Make records fetched from now on wait for Faust's ``flow_control.resume()``.

    Faust (0.15.3, ``Recovery.on_recovery_completed``) sends ``on_rebalance_complete``,
    resumes the stream partitions, awaits ``perform_seek()`` and only then calls
    ``flow_control.resume()``, which *clears* every stream queue. When this worker
    has just restored tables its fetcher is already running, so records of the
    newly resumed partitions (those ``reread_uncommitted`` just moved back to their
    beginning among them) can reach the queues during that await and be cleared
    unprocessed, with nothing to read them again. Suspended, the delivery waits in
    the conductor instead and lands after the clear. Faust suspends flow control
    itself on every revocation, so nothing else depends on it being active here.
    """
    app.flow_control.suspend()


async def _flush_until_empty(self: ProducerBuffer) -> None:
    """``ProducerBuffer.flush`` that returns only once the buffer is empty.

    Table writes reach the changelog through Faust's ``ProducerBuffer``. Faust
    flushes it before committing offsets and before giving partitions up in a
    rebalance, but its ``flush`` gives up after 0.1 s without progress (on a
    busy 2-core box it does), so offsets could be committed, and a partition
    handed over, while the table writes they depend on were still queued: the
    new owner restored a changelog without them and lost those folds (seen in
    the 108,589-event rebalance scenario). At-least-once needs the writes out
    first; waiting for a down broker here only delays the commit.
    """
    while self.size:
        await self.flush_atmost(None)


ProducerBuffer.flush = _flush_until_empty  # type: ignore[method-assign]


def _as_message_of(event: Any, write: Any) -> None:
    """Run ``write`` as if ``event`` were being processed: Faust sends a table
    write to the changelog partition (and local store) of the current event, and
    a batch holds messages of several partitions."""
    token = _current_event.set(weakref.ref(event))
    try:
        write()
    finally:
        _current_event.reset(token)


def _source_of(headers: Any) -> tuple[str, int] | None:
    """``(source, offset)`` from a delta message's ``cx-src`` header, if it has one."""
    raw = (headers or {}).get(DELTA_SOURCE_HEADER)
    if not raw:
        return None
    source, _, offset = (raw.decode() if isinstance(raw, bytes) else raw).rpartition("|")
    return source, int(offset)


class Service(NamedTuple):
    """Everything ``create_app`` built, for the CLI and the tests."""

    app: faust.App
    settings: Settings
    metrics: ServiceMetrics
    scorer: Scorer
    events_topic: Any
    alerts_topic: Any
    metrics_topic: Any
    deadletters_topic: Any
    deltas_topic: Any
    health_topic: Any
    ticks_topic: Any
    learning_topic: Any
    learner: Learner
    family_topics: dict[str, Any]
    customers: Any
    metric_accs: Any
    score_events: Any
    aggregate_metrics: Any


def create_app(settings: Settings, *, registry: CollectorRegistry) -> Service:
    """Build the worker's Faust app from settings; nothing is started."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=str(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Batch what a burst sends (an event writes its outbox record, states,
        # alerts and deltas) into fewer produce requests: with no linger every
        # send went out on its own and socket writes took a third of the CPU.
        producer_linger=PRODUCER_LINGER_S,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        table_cleanup_interval=3600.0,
        table_standby_replicas=settings.standby_replicas,
    )
    metrics = ServiceMetrics(registry)
    # Faust's own internals (stream/commit/send latencies, rebalances, table ops)
    # on the same registry, under their own prefix so no name can clash with ours.
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, "faust"))
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    inputs = list(settings.input_topics.values())
    events_topic = app.topic(*inputs, settings.internal_topic("ticks"), key_type=bytes,
                             value_type=bytes, **raw)
    ticks_topic = app.topic(settings.internal_topic("ticks"), **raw)
    learning_topic = app.topic(settings.internal_topic("learning"), **raw)
    models_topic = app.topic(settings.topic("models"), **raw)
    engine_config = settings.engine_config()
    learner = Learner(settings.topic_partitions, logistic_fit, engine_config.learning)
    alerts_topic = app.topic(settings.topic("alerts"), **raw)
    metrics_topic = app.topic(settings.topic("metrics"), **raw)
    deadletters_topic = app.topic(settings.topic("deadletters"), **raw)
    health_topic = app.topic(settings.topic("health"), **raw)
    deltas_topic = app.topic(settings.internal_topic("metric-deltas"), key_type=bytes,
                             value_type=bytes, **raw)
    # str keys and bytes values make Faust pick its "raw" codec for the changelog.
    customers = app.Table("customers", partitions=settings.topic_partitions, key_type=str,
                          value_type=bytes)
    # One saved stream clock per partition, written while processing that
    # partition's events, so it lands in that partition's changelog.
    clocks = app.Table("clocks", partitions=settings.topic_partitions, key_type=str,
                       value_type=bytes)
    metric_accs = app.Table("metric-accumulators", partitions=settings.topic_partitions,
                            key_type=str, value_type=bytes)

    def highwater(tp: Any) -> int | None:
        try:
            return app.consumer.highwater(tp)  # type: ignore[no-any-return]
        except Exception:  # consumer not started (test_context) or partition not fetched yet
            return None

    def polled(tp: Any) -> float | None:
        """When the consumer last fetched ``tp`` (its highwater with it), in seconds."""
        try:
            consumer = app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
            ms = consumer.last_poll_timestamp(TopicPartition(tp.topic, tp.partition))
        except Exception:  # consumer not started (test_context) or partition not fetched yet
            return None
        return None if ms is None else ms / 1000.0

    async def send_tick(partition: int) -> None:
        await ticks_topic.send(value=b"", partition=partition)

    def committed(topic: str, partition: int) -> int | None:
        """The group's committed offset as this worker last committed it."""
        try:
            return app.consumer._committed_offset.get(TP(topic, partition))  # type: ignore
        except Exception:  # consumer not started (test_context)
            return None

    probe = BacklogProbe(kafka_options(settings), settings.app_id, inputs)
    scorer = Scorer(
        Engine(engine_config),
        customers,
        SimpleNamespace(alerts=alerts_topic, deltas=deltas_topic, deadletters=deadletters_topic,
                        health=health_topic, ticks=ticks_topic, learning=learning_topic),
        metrics,
        partitioner_for(settings.topic_partitions),
        highwater,
        probe,
        clocks,
        committed,
        inputs=inputs,
        polled=polled,
        grace_seconds=settings.publish_grace_seconds,
        ticks=send_tick,
        ticks_topic=settings.internal_topic("ticks"),
        learner=learner,
    )

    @app.task
    async def follow_learning() -> None:
        """Read every partition's learning rows, from the beginning, into this worker's
        learner; train each version once every partition has passed its boundary."""
        await follow(settings, learner, scorer, metrics, models_topic)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget_indexes(sender: Any, revoked: Any, **kwargs: Any) -> None:
        scorer.forget()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _forget_on_assign(sender: Any, assigned: Any, **kwargs: Any) -> None:
        scorer.forget()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def _index_owned_partitions(sender: Any, **kwargs: Any) -> None:
        """Tables are recovered: index every owned partition, events or not."""
        for partition in sorted(owned_partitions(app, settings)):
            await scorer.processor(partition)
        # len() of a RocksDB table walks every key: once per rebalance, then counted.
        metrics.customers.set(len(customers))
        scorer.ready = True
        await reread_uncommitted(app, probe, [*inputs, settings.internal_topic("metric-deltas")])
        hold_deliveries_until_recovery_resumes(app)

    async def score_events(stream: Any) -> None:
        """Every input event: decode, apply to the customer, publish what it decided."""
        async for events in stream.take_events(SCORE_BATCH, within=SCORE_BATCH_WITHIN_S):
            await scorer.handle_batch(events)

    book = MetricBook(AccumulatorTable(metric_accs))
    newest: dict[tuple[str, str, str], float] = {}

    accs = book.store
    assert isinstance(accs, AccumulatorTable)

    async def aggregate_metrics(stream: Any) -> None:
        """Fold metric deltas from every partition into one value per window.

        A message carrying its source (``cx-src``, see ``Scorer``) is folded
        into each window at most once; for windows that already hold it (a
        redelivery, or the scorer publishing a message's outputs again), the
        current values are published again instead.
        """
        async for events in stream.take_events(METRICS_BATCH, within=METRICS_BATCH_WITHIN_S):
            # Windows touched in this batch: key -> (a delta of it, its message).
            touched: dict[MetricKey, tuple[MetricDelta, Any]] = {}
            accs.begin()  # each window read and written once per batch
            try:
                for event in events:
                    # Reads too: a RocksDB table looks a key up only in the store of
                    # the current event's partition, and the batch mixes partitions.
                    token = _current_event.set(weakref.ref(event))
                    deltas = [MetricDelta.from_list(row) for row in orjson.loads(event.value)]
                    tag = _source_of(event.headers)
                    accs.owner = event
                    try:
                        folded = (accs.claim(tag[0], tag[1], {d.key for d in deltas})
                                  if tag is not None else set())
                        if folded and tag is not None:  # a redelivery or a republished run
                            log.info("deltas %s|%d (%s/%d@%d): %d windows hold them already",
                                     tag[0], tag[1], event.message.topic,
                                     event.message.partition, event.message.offset,
                                     len(folded))
                        for d in deltas:
                            if d.key not in folded:
                                book.fold(d)
                            touched[d.key] = (d, event)
                    finally:
                        accs.release()
                        _current_event.reset(token)
                # Each touched window's value (and the derived ones) once, after every
                # fold of the batch: the last value is the one that counts.
                changed: dict[tuple[Any, ...], MetricUpdate] = {}
                for d, event in touched.values():
                    token = _current_event.set(weakref.ref(event))
                    try:
                        for update in book.current(d):
                            changed[(update.metric, update.segment, update.window_start,
                                     update.window_end)] = update
                    finally:
                        _current_event.reset(token)
                accs.flush(_as_message_of)
            except BaseException:
                accs.discard()
                raise
            for update in changed.values():
                await metrics_topic.send(key=update.key.encode(),
                                         value=orjson.dumps(update.to_dict()))
                _set_gauge(metrics, newest, update)

    score_agent = app.agent(events_topic, name="score_events")(score_events)
    metrics_agent = app.agent(deltas_topic, name="aggregate_metrics")(aggregate_metrics)

    family_topics = {name: app.topic(topic, **raw)
                     for name, topic in settings.input_topics.items()}
    install_routes(app, settings, scorer, customers, family_topics)

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type="text/plain; version=0.0.4")

    return Service(
        app=app,
        settings=settings,
        metrics=metrics,
        scorer=scorer,
        events_topic=events_topic,
        alerts_topic=alerts_topic,
        metrics_topic=metrics_topic,
        deadletters_topic=deadletters_topic,
        deltas_topic=deltas_topic,
        health_topic=health_topic,
        ticks_topic=ticks_topic,
        learning_topic=learning_topic,
        learner=learner,
        family_topics=family_topics,
        customers=customers,
        metric_accs=metric_accs,
        score_events=score_agent,
        aggregate_metrics=metrics_agent,
    )
