"""Prometheus metrics of the worker, on a registry passed in (never the global one).

Labels are bounded: event type, reason code, alert kind and state, metric
name and segment. Never a customer id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServiceMetrics"]

# Engine work per event is tens of microseconds; Kafka sends dominate and sit
# in the low milliseconds, so buckets run from 100 µs to 2.5 s.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """The worker's own counters, gauges and histograms."""

    def __init__(self, registry: CollectorRegistry, prefix: str = "cxstream") -> None:
        self.registry = registry
        self.events = Counter(
            f"{prefix}_events_processed", "Events applied to customer state, by type.",
            ["type"], registry=registry,
        )
        self.dead_letters = Counter(
            f"{prefix}_dead_letters", "Messages sent to the dead-letter topic, by reason code.",
            ["reason"], registry=registry,
        )
        self.duplicates = Counter(
            f"{prefix}_duplicate_events", "Events ignored because their event_id was seen.",
            registry=registry,
        )
        self.settled_early = Counter(
            f"{prefix}_events_settled_early",
            "Events decided before the watermark passed them, to bound a customer's queue "
            "in a flood (replay may decide these differently).",
            registry=registry,
        )
        self.alerts = Counter(
            f"{prefix}_alerts", "Alert transitions published, by kind and state.",
            ["kind", "state"], registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_processing_seconds",
            "Wall time from taking a message to having published its outputs.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.customers = Gauge(
            f"{prefix}_table_customers", "Customers with state on this worker.",
            registry=registry,
        )
        self.watermark = Gauge(
            f"{prefix}_watermark_seconds",
            "Highest event-time watermark over this worker's partitions.",
            registry=registry,
        )
        self.model_version = Gauge(
            f"{prefix}_churn_model_version_seconds",
            "Training cut-off (event time) of the newest churn model version trained here.",
            registry=registry,
        )
        self.metric_value = Gauge(
            f"{prefix}_cx_metric",
            "Latest value of a rolling CX metric, by metric, segment and window.",
            ["metric", "segment", "window"], registry=registry,
        )
