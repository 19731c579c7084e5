"""The event and output contracts: what parses, what is rejected and why, and schema drift."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cxstream.engine.events import EVENT_TYPES, Event
from cxstream.errors import InvalidEvent
from cxstream.schemas.events import (
    EVENT_ADAPTER,
    MAX_EVENT_BYTES,
    MAX_HANDLE_SECONDS,
    SURVEY_SCALES,
    event_to_json,
    parse_event,
    validate_event_obj,
)
from cxstream.schemas.export import DEFAULT_DIR, SCHEMA_FILES, check_schemas, export_schemas
from cxstream.schemas.outputs import (
    AlertOut,
    DeadLetterOut,
    MetricUpdateOut,
    dead_letter_for,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
T0 = "2026-03-01T09:30:00Z"
T0_POSIX = datetime(2026, 3, 1, 9, 30, tzinfo=UTC).timestamp()
_DROP = object()  # payload(..., field=_DROP) removes a field


def payload(type_: str, **fields: Any) -> dict[str, Any]:
    """A valid event object of ``type_`` with its required fields; ``fields`` override."""
    obj: dict[str, Any] = {"event_id": "ev-1", "customer_id": "cust-1", "type": type_}
    obj["occurred_at"] = T0
    if type_.startswith("email."):
        obj["message_id"] = "msg-1"
    elif type_.startswith("ticket."):
        obj["ticket_id"] = "tkt-1"
    elif type_ == "survey.response":
        obj.update(survey="nps", score=9)
    obj.update(fields)
    return {k: v for k, v in obj.items() if v is not _DROP}


def family(prefix: str) -> list[Any]:
    """The engine event types starting with ``prefix`` (``Any``: they are ``EventType``s)."""
    return [t for t in EVENT_TYPES if t.startswith(prefix)]


def scales() -> list[tuple[Any, tuple[int, int]]]:
    """Each survey scale and its inclusive score range."""
    return list(SURVEY_SCALES.items())


def raw(type_: str, **fields: Any) -> bytes:
    """``payload`` as JSON bytes."""
    return orjson.dumps(payload(type_, **fields))


# --- valid events ----------------------------------------------------------------------

COMMON: dict[str, Any] = {"event_id": "ev-1", "customer_id": "cust-1", "occurred_at": T0_POSIX}

VALID_CASES = [
    pytest.param(
        payload("login", user_id="u-7", channel="mobile", segment="smb"),
        Event(**COMMON, type="login", segment="smb", user_id="u-7", channel="mobile"),
        id="login-full",
    ),
    pytest.param(payload("login"), Event(**COMMON, type="login"), id="login-minimal"),
    *[
        pytest.param(
            payload(t, campaign="spring"),
            Event(**COMMON, type=t, message_id="msg-1", campaign="spring"),
            id=t,
        )
        for t in family("email.")
    ],
    *[
        pytest.param(
            payload(t, channel="chat", priority="p1", handle_seconds=312.5),
            Event(
                **COMMON,
                type=t,
                ticket_id="tkt-1",
                channel="chat",
                priority="p1",
                handle_seconds=312.5,
            ),
            id=t,
        )
        for t in family("ticket.")
    ],
    *[
        pytest.param(
            payload("survey.response", survey=s, score=score, comment="slow support"),
            Event(**COMMON, type="survey.response", survey=s, score=score, comment="slow support"),
            id=f"survey-{s}-{score}",
        )
        for s, (low, high) in scales()
        for score in (low, high)
    ],
    *[
        pytest.param(
            payload(t, plan="pro", mrr=99.5),
            Event(**COMMON, type=t, plan="pro", mrr=99.5),
            id=t,
        )
        for t in family("subscription.")
    ],
    pytest.param(
        payload("login", occurred_at="2026-03-01T10:30:00+01:00"),
        Event(**COMMON, type="login"),
        id="offset-converted-to-utc",
    ),
    pytest.param(
        payload("login", occurred_at="2026-03-01t09:30:00.250z"),
        Event(**{**COMMON, "occurred_at": T0_POSIX + 0.25}, type="login"),
        id="lowercase-t-z-and-fraction",
    ),
    pytest.param(
        payload("ticket.resolved", handle_seconds=0),
        Event(**COMMON, type="ticket.resolved", ticket_id="tkt-1", handle_seconds=0.0),
        id="int-number-accepted",
    ),
]


@pytest.mark.parametrize("obj, expected", VALID_CASES)
def test_valid_event_parses_to_engine_event(obj: dict[str, Any], expected: Event) -> None:
    assert parse_event(orjson.dumps(obj)) == expected
    assert parse_event(orjson.dumps(obj).decode()) == expected
    assert validate_event_obj(obj) == expected


def test_every_engine_event_type_has_a_valid_case() -> None:
    covered = {cast(Event, p.values[1]).type for p in VALID_CASES}
    assert covered == set(EVENT_TYPES)


def test_schema_union_covers_exactly_the_engine_event_types() -> None:
    mapping = EVENT_ADAPTER.json_schema()["discriminator"]["mapping"]
    assert set(mapping) == set(EVENT_TYPES)


def test_unknown_extra_fields_are_ignored() -> None:
    obj = payload("login", channel="web", app_version="7.1", nested={"a": [1, 2]}, score=None)
    assert parse_event(orjson.dumps(obj)) == Event(**COMMON, type="login", channel="web")


def test_payload_of_exactly_max_bytes_is_accepted() -> None:
    base = raw("login", pad="")
    padded = raw("login", pad="x" * (MAX_EVENT_BYTES - len(base)))
    assert len(padded) == MAX_EVENT_BYTES
    assert parse_event(padded).type == "login"


# --- rejected input --------------------------------------------------------------------

TOO_LARGE = raw("login", pad="x" * MAX_EVENT_BYTES)

BAD_CASES = [
    # (raw input, code, substrings the reason must contain)
    pytest.param(
        raw("login", type="page.view"), "unknown_type", ["'page.view'", "login"], id="unknown-type"
    ),
    pytest.param(
        raw("login", type=_DROP),
        "unknown_type",
        ["missing event type", "survey.response"],
        id="missing-type",
    ),
    pytest.param(raw("login", type=7), "unknown_type", ["7"], id="type-not-a-string"),
    pytest.param(
        raw("login", customer_id=_DROP),
        "schema",
        ["customer_id: Field required"],
        id="missing-customer-id",
    ),
    pytest.param(
        raw("login", event_id=""),
        "schema",
        ["event_id: String should have at least 1 character"],
        id="empty-event-id",
    ),
    pytest.param(
        raw("email.opened", message_id=""), "schema", ["message_id:"], id="empty-message-id"
    ),
    pytest.param(
        raw("email.opened", message_id=_DROP),
        "schema",
        ["message_id: Field required"],
        id="missing-message-id",
    ),
    pytest.param(
        raw("ticket.opened", ticket_id=_DROP),
        "schema",
        ["ticket_id: Field required"],
        id="missing-ticket-id",
    ),
    pytest.param(raw("login", segment=""), "schema", ["segment:"], id="empty-segment"),
    pytest.param(raw("login", segment="*"), "schema", ["segment:"], id="star-segment"),
    pytest.param(raw("login", customer_id="a\x00b"), "schema", ["customer_id:"],
                 id="control-char-in-id"),
    pytest.param(raw("login", segment="a|b"), "schema", ["segment:"], id="pipe-segment"),
    pytest.param(raw("login", segment="All"), "schema", ["segment:", "reserved"],
                 id="reserved-segment"),
    pytest.param(
        raw("login", occurred_at="2026-03-01T09:30:00"),
        "schema",
        ["occurred_at: Input should have timezone info"],
        id="naive-occurred-at",
    ),
    pytest.param(
        raw("login", occurred_at="yesterday"),
        "schema",
        ["occurred_at:", "RFC 3339"],
        id="unparsable-occurred-at",
    ),
    pytest.param(
        raw("login", occurred_at="2026-02-30T09:30:00Z"),
        "schema",
        ["occurred_at:", "day is out of range"],
        id="impossible-date",
    ),
    pytest.param(
        raw("login", occurred_at="2026-03-01"),
        "schema",
        ["occurred_at:", "RFC 3339"],
        id="date-only",
    ),
    pytest.param(
        raw("login", occurred_at=1772357400),
        "schema",
        ["occurred_at:", "RFC 3339"],
        id="epoch-number",
    ),
    pytest.param(
        raw("login", occurred_at="1772357400"),
        "schema",
        ["occurred_at:", "RFC 3339"],
        id="epoch-string",
    ),
    pytest.param(
        raw("login", occurred_at="1999-12-31T23:59:59Z"),
        "schema",
        ["occurred_at:", "implausible"],
        id="before-2000",
    ),
    pytest.param(
        raw("login", occurred_at="2100-12-31T23:00:00-05:00"),
        "schema",
        ["occurred_at:", "implausible"],
        id="after-2100-in-utc",
    ),
    *[
        pytest.param(
            raw("survey.response", survey=s, score=score),
            "schema",
            [f"score: score {score} is out of range for {s} ({low}–{high})"],
            id=f"{s}-score-{score}",
        )
        for s, (low, high) in SURVEY_SCALES.items()
        for score in (low - 1, high + 1)
    ],
    pytest.param(
        raw("survey.response", score=9.5, survey="csat"),
        "schema",
        ["score 9.5 is out of range for csat (1–5)"],
        id="fractional-out-of-range",
    ),
    pytest.param(
        raw("survey.response", survey="sus"),
        "schema",
        ["survey: Input should be 'nps', 'csat' or 'ces'"],
        id="unknown-survey",
    ),
    pytest.param(
        raw("survey.response", score=True),
        "schema",
        ["score: Input should be a valid number"],
        id="bool-score",
    ),
    pytest.param(
        raw("survey.response", score="9"),
        "schema",
        ["score: Input should be a valid number"],
        id="string-score",
    ),
    pytest.param(
        raw("survey.response", score=_DROP), "schema", ["score: Field required"], id="missing-score"
    ),
    pytest.param(
        raw("survey.response", comment="x" * 2001),
        "schema",
        ["comment: String should have at most 2000 characters"],
        id="long-comment",
    ),
    pytest.param(
        raw("login", event_id="e" * 129),
        "schema",
        ["event_id: String should have at most 128 characters"],
        id="long-event-id",
    ),
    pytest.param(
        raw("login", customer_id="c" * 129), "schema", ["customer_id:"], id="long-customer-id"
    ),
    pytest.param(
        raw("login", segment="s" * 65),
        "schema",
        ["segment: String should have at most 64 characters"],
        id="long-segment",
    ),
    pytest.param(raw("login", user_id="u" * 129), "schema", ["user_id:"], id="long-user-id"),
    pytest.param(
        raw("email.sent", campaign="c" * 129), "schema", ["campaign:"], id="long-campaign"
    ),
    pytest.param(
        raw("ticket.opened", channel="c" * 33), "schema", ["channel:"], id="long-ticket-channel"
    ),
    pytest.param(
        raw("ticket.opened", priority="p" * 33), "schema", ["priority:"], id="long-priority"
    ),
    pytest.param(raw("subscription.converted", plan="p" * 65), "schema", ["plan:"], id="long-plan"),
    pytest.param(
        raw("login", channel="fax"),
        "schema",
        ["channel: Input should be 'web', 'mobile' or 'api'"],
        id="unknown-login-channel",
    ),
    pytest.param(
        raw("login", customer_id=42),
        "schema",
        ["customer_id: Input should be a valid string"],
        id="int-customer-id",
    ),
    pytest.param(
        raw("ticket.resolved", handle_seconds=-1),
        "schema",
        ["handle_seconds: Input should be greater than or equal to 0"],
        id="negative-handle-seconds",
    ),
    pytest.param(
        raw("ticket.resolved", handle_seconds=MAX_HANDLE_SECONDS + 1),
        "schema",
        ["handle_seconds: Input should be less than or equal to 604800"],
        id="week-long-handle-seconds",
    ),
    pytest.param(
        raw("ticket.resolved", handle_seconds=False),
        "schema",
        ["handle_seconds:"],
        id="bool-handle-seconds",
    ),
    pytest.param(
        raw("subscription.renewed", mrr=-5),
        "schema",
        ["mrr: Input should be greater than or equal to 0"],
        id="negative-mrr",
    ),
    pytest.param(
        raw("subscription.renewed", mrr="99"),
        "schema",
        ["mrr: Input should be a valid number"],
        id="string-mrr",
    ),
    pytest.param(
        raw("survey.response").replace(b'"score":9', b'"score":NaN'),
        "invalid_json",
        ["invalid JSON"],
        id="nan-literal",
    ),
    pytest.param(
        raw("subscription.renewed").replace(b"}", b',"mrr":Infinity}'),
        "invalid_json",
        ["invalid JSON"],
        id="infinity-literal",
    ),
    pytest.param(
        raw("subscription.renewed").replace(b"}", b',"mrr":1e400}'),
        "invalid_json",
        ["infinity"],
        id="overflowing-number",
    ),
    pytest.param(
        b'{"event_id": "\xff\xfe", "type": "login"}',
        "invalid_json",
        ["not valid UTF-8", "0xff"],
        id="invalid-utf8",
    ),
    pytest.param(b'{"event_id": ', "invalid_json", ["invalid JSON"], id="truncated-json"),
    pytest.param(b"", "invalid_json", ["invalid JSON"], id="empty-payload"),
    pytest.param(
        b"[" + raw("login") + b"]", "not_an_object", ["JSON object", "list"], id="json-array"
    ),
    pytest.param(b'"login"', "not_an_object", ["str"], id="json-string"),
    pytest.param(b"null", "not_an_object", ["NoneType"], id="json-null"),
    pytest.param(TOO_LARGE, "too_large", [f"limit is {MAX_EVENT_BYTES}"], id="too-large-bytes"),
    pytest.param(
        TOO_LARGE.decode(), "too_large", [f"limit is {MAX_EVENT_BYTES}"], id="too-large-str"
    ),
    pytest.param(
        raw("login", pad="é" * (MAX_EVENT_BYTES // 2)).decode(),
        "too_large",
        ["bytes"],
        id="too-large-str-multibyte",
    ),
]


@pytest.mark.parametrize("data, code, mentions", BAD_CASES)
def test_bad_input_is_rejected_with_code_and_readable_reason(
    data: bytes | str, code: str, mentions: list[str]
) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(data)
    assert info.value.code == code
    assert "\n" not in info.value.reason
    for text in mentions:
        assert text in info.value.reason


def test_reason_stays_short_when_the_bad_value_is_huge() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw("login", occurred_at="2026-03-01T09:30:00" + "\n x" * 10_000))
    assert info.value.reason.startswith("occurred_at: Input should be an RFC 3339 timestamp")
    assert len(info.value.reason) <= 320 and "\n" not in info.value.reason


def test_reason_names_every_failing_field_in_one_line() -> None:
    data = raw("survey.response", occurred_at="2026-03-01T09:30:00", score=11)
    with pytest.raises(InvalidEvent) as info:
        parse_event(data)
    assert info.value.reason == (
        "occurred_at: Input should have timezone info; "
        "score: score 11 is out of range for nps (0–10)"
    )
    assert isinstance(info.value.__cause__, ValidationError)


@pytest.mark.parametrize(
    "obj, field",
    [
        (payload("survey.response", score=math.nan), "score"),
        (payload("survey.response", score=math.inf), "score"),
        (payload("subscription.renewed", mrr=math.inf), "mrr"),
        (payload("ticket.opened", handle_seconds=math.nan), "handle_seconds"),
    ],
)
def test_non_finite_numbers_in_decoded_objects_are_rejected(
    obj: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event_obj(obj)
    assert info.value.code == "schema"
    assert info.value.reason.startswith(f"{field}: Input should be a finite number")


@pytest.mark.parametrize("obj", [[1, 2], "login", None, 3.5])
def test_validate_event_obj_rejects_non_objects(obj: Any) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event_obj(obj)
    assert info.value.code == "not_an_object"


def test_invalid_event_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_event(b"{}")


# --- event_to_json and the round trip -----------------------------------------------------


def test_event_to_json_uses_z_and_omits_none_fields() -> None:
    ev = Event(event_id="e", customer_id="c", type="login", occurred_at=T0_POSIX + 0.5)
    assert orjson.loads(event_to_json(ev)) == {
        "event_id": "e",
        "customer_id": "c",
        "type": "login",
        "occurred_at": "2026-03-01T09:30:00.500000Z",
    }
    whole = Event(event_id="e", customer_id="c", type="login", occurred_at=T0_POSIX)
    assert orjson.loads(event_to_json(whole))["occurred_at"] == T0


_EARLIEST_US = 946_684_800 * 10**6  # 2000-01-01T00:00:00Z
_LATEST_US = 4_133_980_800 * 10**6 - 1  # 2100-12-31T23:59:59.999999Z


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _texts(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(min_size=min_size, max_size=max_size)


def _finite(low: float, high: float | None = None) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


def _of_family(prefix: str) -> st.SearchStrategy[str]:
    return st.sampled_from([t for t in EVENT_TYPES if t.startswith(prefix)])


def _survey_event(common: dict[str, Any], survey: str) -> st.SearchStrategy[Event]:
    low, high = SURVEY_SCALES[survey]
    return st.builds(
        Event,
        type=st.just("survey.response"),
        survey=st.just(survey),
        score=st.integers(low, high) | _finite(low, high),
        comment=_opt(_texts(2000)),
        **common,
    )


def events() -> st.SearchStrategy[Event]:
    """Any valid engine ``Event`` (event time at microsecond precision)."""
    ids = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128)
    common = {
        "event_id": ids,
        "customer_id": ids,
        "occurred_at": st.integers(_EARLIEST_US, _LATEST_US).map(lambda us: us / 1_000_000),
        "segment": _opt(
            st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", fullmatch=True).filter(
                lambda seg: seg.lower() != "all"
            )
        ),
    }
    return st.one_of(
        st.builds(
            Event,
            type=st.just("login"),
            user_id=_opt(ids),
            channel=_opt(st.sampled_from(["web", "mobile", "api"])),
            **common,
        ),
        st.builds(
            Event, type=_of_family("email."), message_id=ids, campaign=_opt(_texts(128)), **common
        ),
        st.builds(
            Event,
            type=_of_family("ticket."),
            ticket_id=ids,
            channel=_opt(_texts(32)),
            priority=_opt(_texts(32)),
            handle_seconds=_opt(_finite(0, MAX_HANDLE_SECONDS)),
            **common,
        ),
        st.sampled_from(sorted(SURVEY_SCALES)).flatmap(lambda s: _survey_event(common, s)),
        st.builds(
            Event,
            type=_of_family("subscription."),
            plan=_opt(_texts(64)),
            mrr=_opt(_finite(0)),
            **common,
        ),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ev=events())
def test_event_to_json_round_trips_through_parse_event(ev: Event) -> None:
    assert parse_event(event_to_json(ev)) == ev


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _finite(-1e300, 1e300) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(EVENT_TYPES).map(payload),
    changes=st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "customer_id",
                "type",
                "occurred_at",
                "segment",
                "score",
                "survey",
                "mrr",
                "handle_seconds",
                "channel",
                "message_id",
                "ticket_id",
            ]
        ),
        _json_values,
        max_size=3,
    ),
)
def test_any_json_object_parses_or_raises_invalid_event(
    base: dict[str, Any], changes: dict[str, Any]
) -> None:
    try:
        ev = parse_event(json.dumps({**base, **changes}).encode())
    except InvalidEvent as exc:
        assert exc.code in {"invalid_json", "unknown_type", "schema"}
        assert exc.reason and "\n" not in exc.reason
    else:
        assert ev.type in EVENT_TYPES


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        parse_event(data)
    except InvalidEvent as exc:
        assert exc.code in {"invalid_json", "not_an_object", "unknown_type", "schema"}


# --- output models -----------------------------------------------------------------------

SAMPLE_ALERT: dict[str, Any] = {
    "alert_id": "churn_risk:cust-1:1772357400",
    "customer_id": "cust-1",
    "kind": "churn_risk",
    "state": "raised",
    "severity": "warning",
    "health_score": 34.5,
    "reasons": [
        {
            "code": "inactive_days",
            "value": 12,
            "threshold": 10.0,
            "message": "No login or email open for 12 days (alert at 10 for smb).",
        }
    ],
    "decided_at": T0,
    "segment": "smb",
    "seq": 0,
}

SAMPLE_METRIC: dict[str, Any] = {
    "metric": "nps",
    "segment": None,
    "window_start": "2026-02-01T00:00:00Z",
    "window_end": "2026-03-01T00:00:00+00:00",
    "value": 42.0,
    "sample_size": 118,
}


def test_output_models_validate_sample_alert_and_metric() -> None:
    alert = AlertOut.model_validate(SAMPLE_ALERT)
    assert alert.reasons[0].code == "inactive_days"
    assert AlertOut.model_validate_json(alert.model_dump_json()) == alert
    metric = MetricUpdateOut.model_validate(SAMPLE_METRIC)
    assert metric.segment is None and metric.sample_size == 118
    assert MetricUpdateOut.model_validate(orjson.loads(orjson.dumps(SAMPLE_METRIC))) == metric


@pytest.mark.parametrize(
    "change, field",
    [
        ({"state": "open"}, "state"),
        ({"severity": "high"}, "severity"),
        ({"health_score": 101}, "health_score"),
        ({"seq": -1}, "seq"),
        ({"seq": "1"}, "seq"),
        ({"decided_at": "2026-03-01T09:30:00"}, "decided_at"),
        ({"alert_id": ""}, "alert_id"),
        ({"owner": "ana"}, "owner"),
        ({"reasons": [{"code": "x", "message": "m", "extra": 1}]}, "reasons"),
    ],
)
def test_alert_model_rejects_off_contract_alerts(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertOut.model_validate({**SAMPLE_ALERT, **change})
    assert info.value.errors()[0]["loc"][0] == field


def test_dead_letter_keeps_original_bytes_origin_and_reason() -> None:
    data = b'{"type": "login", "occurred_at": "\xff"}'
    with pytest.raises(InvalidEvent) as info:
        parse_event(data)
    received = datetime(2026, 3, 1, 9, 31, tzinfo=UTC)
    letter = dead_letter_for(
        data,
        info.value,
        received_at=received,
        topic="cx.logins",
        partition=3,
        offset=17,
        key=b"cust-1\xff",
    )
    assert base64.b64decode(letter.payload_b64) == data
    assert (letter.code, letter.source_topic, letter.source_partition, letter.source_offset) == (
        "invalid_json",
        "cx.logins",
        3,
        17,
    )
    assert letter.key == "cust-1\ufffd"
    assert DeadLetterOut.model_validate_json(letter.model_dump_json()) == letter


# --- JSON Schema files ---------------------------------------------------------------------


def test_committed_json_schemas_match_the_models() -> None:
    assert check_schemas(DEFAULT_DIR) == [], "run: python -m cxstream.schemas.export"


def test_export_writes_stable_sorted_files_and_check_finds_drift(tmp_path: Path) -> None:
    paths = export_schemas(tmp_path)
    assert sorted(p.name for p in paths) == sorted(SCHEMA_FILES)
    for path in paths:
        text = path.read_text()
        assert text.endswith("}\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert check_schemas(tmp_path) == []
    (tmp_path / "alert.schema.json").write_text("{}\n")
    (tmp_path / "event.schema.json").unlink()
    assert sorted(check_schemas(tmp_path)) == ["alert.schema.json", "event.schema.json"]


def test_export_module_check_exits_zero_when_in_sync() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cxstream.schemas.export", "--check"],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_valid_payloads_satisfy_the_published_event_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DEFAULT_DIR / "event.schema.json").read_text())
    for param in VALID_CASES:
        jsonschema.validate(param.values[0], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload("survey.response", survey="csat", score=6), schema)
