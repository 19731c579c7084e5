"""The output contract: what cxstream publishes on the alert, metric and dead-letter topics.

This module decides the shape consumers can rely on. An alert is one transition
(``raised``, ``escalated``, ``resolved``) of one episode; ``alert_id`` names the
episode and ``seq`` numbers its transitions, so consumers dedupe on
``(alert_id, seq)``. Times are RFC 3339 with an offset: ``decided_at`` and metric
windows are event time, a dead letter's ``received_at`` is wall-clock time. The
models forbid unknown fields so that tests catch any drift between what the
service emits and what is documented here; nullable fields default to ``None``
but are always present on the wire (the exported schemas mark them required).
Consumers should still ignore fields they do not know, as later versions may add some.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from cxstream.errors import InvalidEvent

__all__ = [
    "AlertOut",
    "AlertReason",
    "AlertSeverity",
    "AlertState",
    "BaseOutModel",
    "DeadLetterOut",
    "HealthInputOut",
    "HealthOut",
    "MetricUpdateOut",
    "ModelVersionOut",
    "OpenAlertOut",
    "dead_letter_for",
]

AlertState = Literal["raised", "escalated", "resolved"]
AlertSeverity = Literal["info", "warning", "critical"]

NonEmpty = Annotated[str, StringConstraints(strict=True, min_length=1)]
CustomerId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]
# strict: an int is a number; a bool or a numeric string is a producer bug.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=0)]
HealthScore = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=100)]
Base64 = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


class BaseOutModel(BaseModel):
    """Common configuration of every output model."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


class AlertReason(BaseOutModel):
    """One reason behind an alert: the signal, what was observed, the line it crossed."""

    code: NonEmpty = Field(description="Stable machine code of the signal, e.g. inactive_days.")
    value: Number | None = Field(default=None, description="The observed value.")
    threshold: Number | None = Field(default=None, description="The threshold it was compared to.")
    message: NonEmpty = Field(description="One sentence a CS person can read.")


class AlertOut(BaseOutModel):
    """One transition of an at-risk episode; dedupe on ``(alert_id, seq)``."""

    alert_id: NonEmpty = Field(
        description="Deterministic episode id: the same episode yields the same id after a "
        "restart or a replay."
    )
    customer_id: CustomerId
    kind: NonEmpty = Field(
        description="What kind of risk: churn_risk (the learned one, the default output), "
        "inactivity, engagement_decay, email_disengagement, support_friction, feedback, "
        "at_risk, score_drop, participation or renewal_risk."
    )
    state: AlertState
    severity: AlertSeverity
    health_score: HealthScore | None = Field(
        default=None, description="0 (about to churn) to 100 (healthy), at decision time."
    )
    reasons: list[AlertReason]
    decided_at: AwareDatetime = Field(description="Event time the transition was decided at.")
    segment: NonEmpty | None = None
    seq: Count = Field(description="Transition number within the episode, from 0.")


class MetricUpdateOut(BaseOutModel):
    """A rolling CX metric's value over one event-time window, for one segment or all."""

    metric: NonEmpty = Field(description="Metric name, e.g. nps, csat, ttr_p90_seconds.")
    segment: NonEmpty | None = Field(default=None, description="null = all customers.")
    window_start: AwareDatetime
    window_end: AwareDatetime
    value: Number | None = Field(default=None, description="null when the window has no data.")
    sample_size: Count = Field(description="How many observations the value is computed from.")


class ModelVersionOut(BaseOutModel):
    """A settled churn model version (compacted ``{prefix}.models``, keyed by ``version``)."""

    version: AwareDatetime = Field(
        description="Training cut-off (event time, a week boundary): every label it learned "
        "from was known before it.")
    effective_from: AwareDatetime = Field(
        description="Decisions at or after this event time use it, until the next version.")
    warming_up: bool = Field(
        description="Too few cancellations to learn from yet: the inactivity rule decides "
        "and every learned field is null.")
    snapshots: Count | None = Field(default=None, description="Labelled snapshots learned from.")
    churned: Count | None = Field(
        default=None, description="Of them, followed by a cancellation within the horizon.")
    alert_line: Number | None = Field(
        default=None, description="Probability at which an episode is raised.")
    resolve_line: Number | None = Field(
        default=None, description="Probability under which it resolves.")
    critical_line: Number | None = Field(
        default=None, description="Probability at which it is critical.")
    intercept: Number | None = None
    weights: dict[str, Number] | None = Field(
        default=None, description="Logistic weight per standardised feature.")
    segment_weights: dict[str, Number] | None = Field(
        default=None, description="Logistic weight per segment seen in training.")
    typical_of_stayers: dict[str, Number] | None = Field(
        default=None, description="Each feature's mean among snapshots not followed by "
        "churn: the 'usually' of an alert's reasons.")


class OpenAlertOut(BaseOutModel):
    """An open alert episode in a health snapshot."""

    kind: NonEmpty
    alert_id: NonEmpty
    severity: AlertSeverity
    since: AwareDatetime = Field(description="Event time the episode started.")


class HealthInputOut(BaseOutModel):
    """One input of the health score: its risk (0 none, 1 worst) and what it saw."""

    input: NonEmpty = Field(
        description="inactivity, decay, email, support, feedback or alive (BG/NBD)."
    )
    risk: Annotated[float, Field(ge=0, le=1)]
    detail: NonEmpty


class HealthOut(BaseOutModel):
    """A customer's latest health (compacted health topic, GET /customers/{id})."""

    customer_id: CustomerId
    segment: NonEmpty | None = None
    health_score: HealthScore | None = None
    evaluated_at: AwareDatetime | None = Field(
        default=None, description="Event time of the evaluation."
    )
    open_alerts: list[OpenAlertOut]
    inputs: list[HealthInputOut] = Field(description="Score inputs, highest risk first.")


class DeadLetterOut(BaseOutModel):
    """An input message that is not a valid event, kept with its origin and the reason."""

    reason: NonEmpty = Field(description="Readable reason; names every failing field.")
    code: NonEmpty = Field(
        description=(
            "too_large, invalid_json, not_an_object, unknown_type, schema, empty (no value) "
            "or late (older than the watermark)."
        )
    )
    source_topic: str | None = None
    source_partition: Count | None = None
    source_offset: Count | None = None
    key: str | None = Field(
        default=None, description="The message key as UTF-8 text (undecodable bytes replaced)."
    )
    payload_b64: Base64 = Field(description="The original message bytes, base64.")
    received_at: AwareDatetime = Field(description="Wall-clock time the message was rejected.")


_KEY_ENCODING: Final = "utf-8"


def dead_letter_for(
    payload: bytes,
    error: InvalidEvent,
    *,
    received_at: datetime,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | str | None = None,
) -> DeadLetterOut:
    """The dead letter for ``payload`` rejected with ``error``.

    :param received_at: wall-clock time, timezone-aware.
    """
    if isinstance(key, bytes):
        key = key.decode(_KEY_ENCODING, errors="replace")
    return DeadLetterOut(
        reason=error.reason,
        code=error.code,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key=key,
        payload_b64=base64.b64encode(payload).decode("ascii"),
        received_at=received_at,
    )
