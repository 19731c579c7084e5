"""The input contract: which JSON objects are events, and how they become engine ``Event``s.

This module decides what a publisher may send. Every event is a JSON object of at
most ``MAX_EVENT_BYTES`` with the common fields (``event_id``, ``customer_id``,
``type``, ``occurred_at``, optional ``segment``) plus its type family's fields;
``type`` picks the model (a discriminated union). Timestamps must be RFC 3339
strings with seconds and an offset, within years 2000–2100 (anything else is a
publisher bug, not an event). Numbers must be finite JSON numbers: no strings,
no booleans, no NaN/Infinity. Ids and ``segment`` must be non-empty (``segment``
is a metric label and an alert-profile key); other optional text may be empty.
Unknown extra fields are accepted and ignored, on purpose: publishers may add
fields before cxstream knows them without their events going to the dead-letter
topic. Every failure is an ``InvalidEvent`` whose ``code`` says what kind
(``too_large``, ``invalid_json``, ``not_an_object``, ``unknown_type``,
``schema``) and whose reason names every failing field in one line.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, get_args

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from cxstream.engine.events import EVENT_TYPES, Event
from cxstream.errors import InvalidEvent

__all__ = [
    "EVENT_ADAPTER",
    "MAX_EVENT_BYTES",
    "MAX_HANDLE_SECONDS",
    "SURVEY_SCALES",
    "BaseEventModel",
    "EmailEventModel",
    "EventModel",
    "LoginEventModel",
    "SubscriptionEventModel",
    "SurveyEventModel",
    "TicketEventModel",
    "event_to_json",
    "format_time",
    "parse_event",
    "validate_event_obj",
]

# One event is one customer action; 64 KiB is ~30x the largest legitimate one
# (a 2,000-char survey comment with every optional field), so anything bigger is
# a publisher bug and must not reach the decoder.
MAX_EVENT_BYTES: Final = 65536

# An agent's handling time for one contact; a week means a stuck timer, not work.
MAX_HANDLE_SECONDS: Final = 86400 * 7

# Inclusive score range of each survey scale (the brief's NPS/CSAT/CES definitions).
SURVEY_SCALES: Final[dict[str, tuple[int, int]]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}

# Event time must be plausible: before 2000 or after 2100 is a unit or clock bug.
_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_AFTER_LATEST: Final = datetime(2101, 1, 1, tzinfo=UTC)

# RFC 3339 date-time prefix (seconds required). Checked before parsing, because both
# parsers below also take things that are not timestamps (pydantic: Unix-epoch numbers
# and numeric strings; datetime.fromisoformat: dates alone, ISO week dates).
_RFC3339_PREFIX: Final = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}")
_RFC3339_HINT: Final = (
    "Input should be an RFC 3339 timestamp with an offset, like 2026-03-01T09:30:00Z"
)


def _parse_occurred_at(value: Any) -> datetime:
    """Parse an RFC 3339 string (or take a Python datetime); aware and in 2000–2100, or raise.

    One Python call per event, on purpose: ``datetime.fromisoformat`` (C) plus the checks
    cost less than pydantic's parser followed by a separate after-validator.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _RFC3339_PREFIX.match(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:  # RFC 3339 allows a lowercase 't' and 'z'; fromisoformat does not
                parsed = datetime.fromisoformat(value.upper())
            except ValueError as exc:
                raise PydanticCustomError(
                    "rfc3339", _RFC3339_HINT + " ({detail})", {"detail": str(exc)}
                ) from None
    else:
        raise PydanticCustomError("rfc3339", _RFC3339_HINT)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PydanticCustomError("timezone_aware", "Input should have timezone info")
    if not _EARLIEST <= parsed < _AFTER_LATEST:
        raise PydanticCustomError(
            "implausible_time",
            "{when} is implausible: event time must be within years 2000–2100",
            {"when": parsed.isoformat()},
        )
    return parsed


# No control characters: ids are Kafka keys and table keys, and the service keeps
# its own records under NUL-prefixed keys.
Id = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
# A segment is a metric label and a key part: letters, digits and ._:- only, and
# never "all", which names the total over every segment on the Prometheus gauge.
Segment = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64,
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"),
]
Text32 = Annotated[str, StringConstraints(strict=True, max_length=32)]
Text64 = Annotated[str, StringConstraints(strict=True, max_length=64)]
Text128 = Annotated[str, StringConstraints(strict=True, max_length=128)]
Comment = Annotated[str, StringConstraints(strict=True, max_length=2000)]
# strict=True: an int is a number, a bool or a numeric string is not.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
HandleSeconds = Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_HANDLE_SECONDS)
]
OccurredAt = Annotated[AwareDatetime, BeforeValidator(_parse_occurred_at)]


class BaseEventModel(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id = Field(description="Unique per event; a repeated id has no second effect.")
    customer_id: Id = Field(description="The account the event belongs to; the Kafka key.")
    type: str = Field(description="The event type; selects the remaining fields.")
    occurred_at: OccurredAt = Field(
        description="Event time, RFC 3339 with an offset, e.g. 2026-03-01T09:30:00Z; "
        "years 2000-2100."
    )
    segment: Segment | None = Field(
        default=None,
        description="Plan tier, region...: alert profiles and metrics are per segment.",
    )

    @field_validator("segment")
    @classmethod
    def _segment_not_reserved(cls, value: str | None) -> str | None:
        if value is not None and value.lower() == "all":
            raise ValueError('"all" is reserved for the total over every segment')
        return value

    def to_event(self) -> Event:
        """The engine's ``Event``: every field of the model under the same name on
        ``Event``, with event time as POSIX seconds."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        fields["occurred_at"] = self.occurred_at.timestamp()
        return Event(**fields)


class LoginEventModel(BaseEventModel):
    """A customer (or one seat of a multi-seat account) logged in."""

    type: Literal["login"]
    user_id: Id | None = Field(default=None, description="The seat, for multi-seat accounts.")
    channel: Literal["web", "mobile", "api"] | None = None


class EmailEventModel(BaseEventModel):
    """Something happened to one email sent to the customer."""

    type: Literal[
        "email.sent", "email.opened", "email.clicked", "email.bounced", "email.unsubscribed"
    ]
    message_id: Id = Field(description="The email message this event is about.")
    campaign: Text128 | None = None


class TicketEventModel(BaseEventModel):
    """A support ticket was opened, replied to, resolved or reopened."""

    type: Literal["ticket.opened", "ticket.replied", "ticket.resolved", "ticket.reopened"]
    ticket_id: Id = Field(description="The ticket this contact belongs to.")
    channel: Text32 | None = None
    priority: Text32 | None = None
    handle_seconds: HandleSeconds | None = Field(
        default=None, description="Agent handling time of this contact, in seconds (AHT)."
    )


class SurveyEventModel(BaseEventModel):
    """A survey answer: NPS 0–10, CSAT 1–5 or CES 1–7."""

    # The scale rule in the JSON Schema too, for publishers validating in other languages.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"survey": {"const": name}}},
                    "then": {"properties": {"score": {"minimum": low, "maximum": high}}},
                }
                for name, (low, high) in SURVEY_SCALES.items()
            ]
        }
    )

    type: Literal["survey.response"]
    survey: Literal["nps", "csat", "ces"]
    score: Number = Field(description="Within the survey's scale: nps 0-10, csat 1-5, ces 1-7.")
    comment: Comment | None = None

    # A field validator, not a model validator: ``survey`` is declared first so it is
    # in ``info.data``, and the error's location is then ``score`` itself.
    @field_validator("score")
    @classmethod
    def _score_in_scale(cls, score: float, info: ValidationInfo) -> float:
        survey = info.data.get("survey")
        if survey is None:  # survey itself is invalid; that error is reported instead
            return score
        low, high = SURVEY_SCALES[survey]
        if not low <= score <= high:
            raise PydanticCustomError(
                "score_out_of_range",
                "score {score} is out of range for {survey} ({low}–{high})",
                {"score": f"{score:g}", "survey": survey, "low": low, "high": high},
            )
        return score


class SubscriptionEventModel(BaseEventModel):
    """A trial started, or a subscription converted, renewed or was cancelled."""

    type: Literal[
        "subscription.trial_started",
        "subscription.converted",
        "subscription.renewed",
        "subscription.cancelled",
    ]
    plan: Text64 | None = None
    mrr: NonNegative | None = Field(default=None, description="Monthly recurring revenue.")



_MODELS: Final = (
    LoginEventModel,
    EmailEventModel,
    TicketEventModel,
    SurveyEventModel,
    SubscriptionEventModel,
)

EventModel = Annotated[
    LoginEventModel
    | EmailEventModel
    | TicketEventModel
    | SurveyEventModel
    | SubscriptionEventModel,
    Field(discriminator="type"),
]

# Built once: constructing the validator is the expensive part, validating is cheap.
EVENT_ADAPTER: Final[TypeAdapter[EventModel]] = TypeAdapter(EventModel)

_KNOWN_TYPES: Final = frozenset(EVENT_TYPES)
_KNOWN_LIST: Final = ", ".join(EVENT_TYPES)
_MODEL_TYPES: Final = {t for m in _MODELS for t in get_args(m.model_fields["type"].annotation)}
if _MODEL_TYPES != _KNOWN_TYPES:  # the engine's EventType and this contract must not drift
    raise RuntimeError(f"schema/engine event types differ: {sorted(_MODEL_TYPES ^ _KNOWN_TYPES)}")

_EVENT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Event))


def _short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, so a reason stays one readable line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _schema_reason(exc: ValidationError) -> str:
    """Every failing field and its message, ``"field: message; ..."``, on one line."""
    parts = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = err["loc"]
        if loc and loc[0] in _KNOWN_TYPES:  # the union's tag: the type is already known
            loc = loc[1:]
        where = ".".join(str(p) for p in loc) or "event"
        parts.append(f"{where}: {_short(' '.join(err['msg'].split()), 300)}")
    return "; ".join(parts)


def validate_event_obj(obj: dict[str, Any]) -> Event:
    """Validate an already-decoded JSON object and return the engine's ``Event``.

    Raises ``InvalidEvent`` with code ``not_an_object``, ``unknown_type`` or ``schema``.
    """
    if not isinstance(obj, dict):
        raise InvalidEvent(
            f"an event must be a JSON object, not {type(obj).__name__}", code="not_an_object"
        )
    kind = obj.get("type")
    if not (isinstance(kind, str) and kind in _KNOWN_TYPES):
        what = "missing event type" if kind is None else f"unknown event type {_short(repr(kind))}"
        raise InvalidEvent(f"{what}; known types: {_KNOWN_LIST}", code="unknown_type")
    try:
        model: BaseEventModel = EVENT_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise InvalidEvent(_schema_reason(exc), code="schema") from exc
    return model.to_event()


def _json_reason(raw: bytes | str, exc: orjson.JSONDecodeError) -> str:
    """Why ``raw`` does not decode; bad UTF-8 said plainly (orjson calls it 'surrogates')."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:
            byte = bytes(raw)[bad.start]
            return f"invalid JSON: not valid UTF-8 (byte 0x{byte:02x} at offset {bad.start})"
    return f"invalid JSON: {exc}"


def parse_event(raw: bytes | str) -> Event:
    """Decode one JSON event (a Kafka value or a JSON Lines line) into the engine's ``Event``.

    Raises ``InvalidEvent`` with code ``too_large``, ``invalid_json``, ``not_an_object``,
    ``unknown_type`` or ``schema``.
    """
    size = len(raw)
    if isinstance(raw, str) and size > MAX_EVENT_BYTES // 4:  # 4 bytes/char at most
        size = len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"event is {size} bytes; the limit is {MAX_EVENT_BYTES}", code="too_large"
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(_json_reason(raw, exc), code="invalid_json") from exc
    return validate_event_obj(obj)


def format_time(ts: float) -> str:
    """POSIX seconds as RFC 3339 UTC with 'Z' (microsecond precision)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def event_to_json(ev: Event) -> bytes:
    """The wire form of ``ev``: JSON, ``occurred_at`` in RFC 3339 'Z', no ``None`` fields.

    The inverse of ``parse_event`` for valid events (event time is kept to the
    microsecond). It does not validate: build events from valid data.
    """
    out: dict[str, Any] = {}
    for name in _EVENT_FIELDS:
        value = getattr(ev, name)
        if value is not None:
            out[name] = value
    out["occurred_at"] = format_time(ev.occurred_at)
    return orjson.dumps(out)
