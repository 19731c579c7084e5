"""Hostile input for the event decoder: every input is an Event or an InvalidEvent.

10,000 generated cases per strategy: arbitrary bytes, mutations of valid
events (bit flips, truncation, splices), and hostile JSON (huge numbers,
deep nesting, NaN/Infinity, far timestamps, unknown and missing fields).
"""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxstream.engine.events import EVENT_TYPES, Event
from cxstream.errors import InvalidEvent
from cxstream.schemas.events import MAX_EVENT_BYTES, parse_event

CASES = settings(max_examples=10_000, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

VALID = orjson.dumps({"event_id": "e1", "customer_id": "c1", "type": "survey.response",
                      "occurred_at": "2026-03-01T09:30:00Z", "segment": "pro",
                      "survey": "nps", "score": 7, "comment": "fine"})


def decodes_or_rejects(raw: bytes) -> None:
    try:
        event = parse_event(raw)
    except InvalidEvent as exc:
        assert exc.code and exc.reason
        return
    assert isinstance(event, Event)
    assert event.type in EVENT_TYPES
    assert len(raw) <= MAX_EVENT_BYTES


@CASES
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    decodes_or_rejects(raw)


@CASES
@given(st.data())
def test_mutated_valid_events_never_crash_the_decoder(data: st.DataObject) -> None:
    raw = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif raw:
            del raw[at]
    decodes_or_rejects(bytes(raw))


def _hostile_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=300),
        st.sampled_from(["1900-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00",
                         "2026-03-01T09:30:00", "2026-13-45T99:99:99Z", "", "NaN"]),
    )
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=20)


@CASES
@given(st.dictionaries(
    st.sampled_from(["event_id", "customer_id", "type", "occurred_at", "segment", "survey",
                     "score", "ticket_id", "message_id", "handle_seconds", "mrr", "extra"]),
    _hostile_values(), max_size=10),
    st.sampled_from(EVENT_TYPES))
def test_hostile_json_objects_never_crash_the_decoder(obj: dict[str, object], type_: str) -> None:
    obj.setdefault("type", type_)
    try:
        raw = json.dumps(obj, allow_nan=True).encode()
    except (ValueError, OverflowError):
        return
    decodes_or_rejects(raw)


def test_deeply_nested_and_huge_payloads_are_rejected_with_a_reason() -> None:
    deep = b'{"event_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for raw in (deep, b'{"x": "' + b"a" * (MAX_EVENT_BYTES + 1) + b'"}',
                b'{"event_id":"e","customer_id":"c","type":"login","occurred_at":'
                b'"2026-03-01T09:30:00Z","score":1e999999}'):
        try:
            parse_event(raw)
        except InvalidEvent as exc:
            assert exc.reason
        else:  # pragma: no cover - the assertion below explains
            raise AssertionError(f"accepted {raw[:60]!r}")
