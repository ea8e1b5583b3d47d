"""Envelope validation: every rule has its reason code, batches are per event, nothing raises."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.contract.catalog import load_catalog
from foundation.contract.envelope import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_RECORD_BYTES,
    ContractIndex,
    Rejection,
    parse_record,
)
from foundation.contract.envelope import _array_items as array_items
from producers.sdk import _validate as sdk_validate

INDEX = ContractIndex(load_catalog())
NOW = datetime(2026, 9, 21, 14, tzinfo=UTC).timestamp()  # every test's clock

REASONS = {
    "bad_json", "not_object", "empty_batch", "batch_too_large", "too_large", "unknown_sector",
    "unknown_type", "unknown_source", "source_sector_mismatch", "source_mismatch", "bad_timestamp",
    "future_timestamp", "not_finite", "unit_mismatch", "unknown_district",
    "unsupported_schema_version",
}  # fmt: skip
REASON_PREFIXES = ("missing_field:", "unknown_field:", "bad_field:", "bad_text:")


def good(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "e-1",
        "source": "his-bvdk-tinh",
        "sector": "health",
        "type": "bed_occupancy",
        "occurred_at": "2026-09-21T20:00:00+07:00",
        "value": 87.5,
        "unit": "%",
        "district": "dong-xoai",
        "data": {"khoa": "Nội"},
    }
    for name, value in changes.items():
        if value is _DROP:
            event.pop(name, None)
        else:
            event[name] = value
    return event


_DROP = object()


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def test_a_valid_event_is_accepted_with_its_fields() -> None:
    result = parse_record(encode(good()), INDEX, now=NOW)
    assert result.rejections == []
    assert not result.batch
    (event,) = result.events
    assert (event.event_id, event.source, event.sector, event.type) == (
        "e-1", "his-bvdk-tinh", "health", "bed_occupancy",
    )  # fmt: skip
    assert (event.value, event.unit, event.district, event.data) == (
        87.5,
        "%",
        "dong-xoai",
        {"khoa": "Nội"},
    )
    assert event.occurred_at == datetime(2026, 9, 21, 13, tzinfo=UTC).timestamp()


def test_timestamp_is_parsed_with_its_offset() -> None:
    (event,) = parse_record(
        encode(good(occurred_at="2026-01-01T07:00:00+07:00")), INDEX, now=NOW
    ).events
    (utc,) = parse_record(encode(good(occurred_at="2026-01-01T00:00:00Z")), INDEX, now=NOW).events
    assert event.occurred_at == utc.occurred_at == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


# Each rule's bad event and its reason code (tests/unit/test_contract_schemas.py checks that
# the published JSON Schema refuses them too).
BAD_EVENTS: list[tuple[dict[str, Any], str]] = [
    (good(event_id=_DROP), "missing_field:event_id"),
    (good(source=None), "missing_field:source"),
    (good(occurred_at=_DROP), "missing_field:occurred_at"),
    (good(value=_DROP), "missing_field:value"),
    (good(colour="red"), "unknown_field:colour"),
    (good(event_id=""), "bad_field:event_id"),
    (good(event_id="x" * 129), "bad_field:event_id"),
    (good(event_id=7), "bad_field:event_id"),
    (good(source=["his"]), "bad_field:source"),
    (good(sector="space"), "unknown_sector"),
    (good(sector=["health"]), "unknown_sector"),
    (good(type="teleport"), "unknown_type"),
    (good(source="nobody"), "unknown_source"),
    (good(occurred_at="yesterday"), "bad_timestamp"),
    (good(occurred_at="2026-09-21T20:00:00"), "bad_timestamp"),
    (good(occurred_at="2026-09-21"), "bad_timestamp"),
    (good(occurred_at=1790000000), "bad_timestamp"),
    (good(occurred_at="2026-09-22T20:00:00+07:00"), "future_timestamp"),
    (good(value="87"), "bad_field:value"),
    (good(value=True), "bad_field:value"),
    (good(value=2**60), "not_finite"),
    (good(unit="ca"), "unit_mismatch"),
    (good(district="ha-noi"), "unknown_district"),
    (good(district={"code": "dong-xoai"}), "unknown_district"),
    (good(data=[1, 2]), "bad_field:data"),
    (good(schema_version=2), "unsupported_schema_version"),
    (good(schema_version="1"), "unsupported_schema_version"),
]


@pytest.mark.parametrize(("event", "reason"), BAD_EVENTS)
def test_each_rule_has_its_reason_code(event: dict[str, Any], reason: str) -> None:
    result = parse_record(encode(event), INDEX, now=NOW)
    assert result.events == []
    assert [r.reason for r in result.rejections] == [reason]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_numbers_are_refused(literal: bytes) -> None:
    raw = encode(good(value=1.5)).replace(b"1.5", literal)
    assert [r.reason for r in parse_record(raw, INDEX, now=NOW).rejections] == ["not_finite"]


BAD_RECORDS: list[tuple[bytes, str]] = [
    (b"{not json", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (b"", "bad_json"),
    (b"42", "not_object"),
    (b'"event"', "not_object"),
    (b"[]", "empty_batch"),
    (b"[" + b",".join([b"{}"] * (MAX_BATCH_EVENTS + 1)) + b"]", "batch_too_large"),
    (b" " * (MAX_RECORD_BYTES + 1), "too_large"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_RECORDS)
def test_record_level_problems_reject_the_whole_record(raw: bytes, reason: str) -> None:
    result = parse_record(raw, INDEX, now=NOW)
    assert result.events == []
    assert [(r.reason, r.position) for r in result.rejections] == [(reason, None)]


def test_a_batch_keeps_good_events_and_indexes_bad_ones() -> None:
    batch = [
        good(event_id="a"),
        good(event_id="b", value="x"),
        7,
        good(event_id="d", type="zzz"),
        good(event_id="e"),
    ]
    result = parse_record(encode(batch), INDEX, now=NOW, key="his-bvdk-tinh")
    assert result.batch
    assert [e.event_id for e in result.events] == ["a", "e"]
    assert [(r.position, r.reason, r.event_id) for r in result.rejections] == [
        (1, "bad_field:value", "b"),
        (2, "not_object", None),
        (3, "unknown_type", "d"),
    ]


def test_an_event_of_another_source_in_a_keyed_record_is_refused() -> None:
    stranger = good(event_id="s", source="his-ttyt-huyen")
    result = parse_record(encode([good(), stranger]), INDEX, now=NOW, key="his-bvdk-tinh")
    assert [(r.position, r.reason) for r in result.rejections] == [(1, "source_mismatch")]


def test_an_event_over_64_kib_in_a_batch_is_refused_alone() -> None:
    big = good(event_id="big", data={"blob": "x" * 70_000})
    result = parse_record(encode([good(), big]), INDEX, now=NOW)
    assert [e.event_id for e in result.events] == ["e-1"]
    assert [(r.position, r.reason) for r in result.rejections] == [(1, "too_large")]


def test_a_single_event_over_64_kib_is_refused() -> None:
    big = good(data={"blob": "x" * 70_000})
    assert [r.reason for r in parse_record(encode(big), INDEX, now=NOW).rejections] == ["too_large"]


def test_an_event_is_measured_as_sent_so_what_the_sdk_accepts_the_worker_accepts() -> None:
    # 64 KiB written compact, as the SDK and the ingest API send it; re-encoded with Python's
    # default ", " and ": " it would be ~8 KiB more, and was refused once.
    near = good(event_id="near", data={f"k{i:04}": i for i in range(5000)})
    compact = json.dumps(near, ensure_ascii=False, separators=(",", ":")).encode()
    near["data"]["pad"] = "x" * (MAX_EVENT_BYTES - len(compact) - len(',"pad":""'))
    event = json.dumps(near, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(event) == MAX_EVENT_BYTES
    record = b"[" + event + b"," + encode(good()) + b"]"
    assert parse_record(record, INDEX, now=NOW).rejections == []
    outcome = sdk_validate(near, INDEX, now=NOW)
    assert not isinstance(outcome, Rejection), outcome


def test_in_a_batch_64_kib_is_taken_and_one_byte_more_refused() -> None:
    def sized(event_id: str, size: int) -> bytes:
        event = good(event_id=event_id, data={"pad": ""})
        bare = len(json.dumps(event, separators=(",", ":")).encode())
        event["data"]["pad"] = "x" * (size - bare)
        return json.dumps(event, separators=(",", ":")).encode()

    record = (
        b"[" + sized("limit", MAX_EVENT_BYTES) + b",\n " + sized("over", MAX_EVENT_BYTES + 1) + b"]"
    )
    result = parse_record(record, INDEX, now=NOW)
    assert [e.event_id for e in result.events] == ["limit"]
    assert [(r.position, r.reason) for r in result.rejections] == [(1, "too_large")]


def test_a_broken_record_over_64_kib_is_refused_with_json_loads_words() -> None:
    text = "[" + json.dumps(good(data={"pad": "x" * 70_000})) + ", {oops}]"
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    rejections = parse_record(text.encode(), INDEX, now=NOW).rejections
    assert [(r.reason, r.detail) for r in rejections] == [("bad_json", str(expected.value)[:200])]


def test_an_event_over_64_kib_in_utf_8_but_not_in_characters_is_refused() -> None:
    big = good(event_id="big", data={"ghi_chu": "ệ" * 30_000})  # 90,000 bytes
    record = encode([good(), big])
    result = parse_record(record, INDEX, now=NOW)
    assert [(r.position, r.reason) for r in result.rejections] == [(1, "too_large")]


@pytest.mark.parametrize(
    "text",
    ["[1,]", "[,1]", "[1 2]", "[1]]", "[1] x", "[", "[1", "{}", '"[1]"', "\ufeff[1]", "[1,,2]",
     "[NaN, 1]", "[" * 5000 + "]" * 5000, "[01]", "[]"],
)  # fmt: skip
def test_a_batch_read_item_by_item_agrees_with_json_loads_on_odd_text(text: str) -> None:
    split = array_items(text, ascii_only=text.isascii())
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        assert split is None
        return
    if isinstance(expected, list):
        assert split is not None and split[0] == expected
    else:
        assert split is None


def _reason_known(reason: str) -> bool:
    return reason in REASONS or reason.startswith(REASON_PREFIXES)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_and_always_carry_a_code(raw: bytes) -> None:
    result = parse_record(raw, INDEX, now=NOW)
    assert all(_reason_known(r.reason) for r in result.rejections)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(
        ["health", "his-bvdk-tinh", "bed_occupancy", "dong-xoai", "%", "2026-09-21T20:00:00+07:00"]
    ),
)


_GAP = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])


@settings(max_examples=300)
@given(st.lists(st.tuples(json_values, _GAP, _GAP, st.booleans()), max_size=6), _GAP, _GAP)
def test_a_batch_read_item_by_item_equals_json_loads_and_measures_each_text(
    parts: list[tuple[Any, str, str, bool]], head: str, tail: str
) -> None:
    texts = [json.dumps(v, ensure_ascii=ascii_only) for v, _, _, ascii_only in parts]
    text = (
        head
        + "["
        + ",".join(a + t + b for t, (_, a, b, _) in zip(texts, parts, strict=True))
        + "]"
        + tail
    )
    split = array_items(text, ascii_only=text.isascii())
    assert split is not None
    assert json.dumps(split[0]) == json.dumps(json.loads(text))  # NaN is not equal to itself
    assert split[1] == [len(t.encode()) for t in texts]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted([*good(), "schema_version", "extra"])), field_values))
def test_hostile_objects_are_accepted_or_rejected_never_crash(obj: dict[str, Any]) -> None:
    raw = json.dumps(obj, allow_nan=True).encode()
    result = parse_record(raw, INDEX, now=NOW)
    assert len(result.events) + len(result.rejections) == 1
    assert all(_reason_known(r.reason) for r in result.rejections)
    for event in result.events:
        assert event.value is None or math.isfinite(event.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(json_values, st.just(good())), min_size=1, max_size=20))
def test_every_batch_item_is_accounted_for_once(batch: list[Any]) -> None:
    result = parse_record(json.dumps(batch, allow_nan=True).encode(), INDEX, now=NOW)
    rejected = {r.position for r in result.rejections}
    assert len(rejected) == len(result.rejections)
    assert len(result.events) + len(result.rejections) == len(batch)


# -- text PostgreSQL cannot hold, non-finite numbers, encodings (issue 13) ------------------


def _reasons(raw: bytes, key: str | None = None) -> list[str]:
    return [r.reason for r in parse_record(raw, INDEX, now=NOW, key=key).rejections]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"data": {"note": "\\ud800"}}', "bad_text:data"),
        (b'{"data": {"\\udfff": 1}}', "bad_text:data"),
        (b'{"data": {"list": [1, ["x\\u0000y"]]}}', "bad_text:data"),
        (b'{"event_id": "a\\ud83d"}', "bad_text:event_id"),
        (b'{"source": "\\udc00his-bvdk-tinh"}', "bad_text:source"),
        (b'{"district": "dong-xoai\\u0000"}', "bad_text:district"),
        (b'{"unit": "\\uDBFF"}', "bad_text:unit"),
        (b'{"data": {"x": NaN}}', "not_finite"),
        (b'{"data": {"x": [-Infinity]}}', "not_finite"),
        (b'{"value": Infinity}', "not_finite"),
    ],
)
def test_text_postgresql_cannot_hold_and_non_finite_numbers_are_refused_by_field(
    raw: bytes, reason: str
) -> None:
    """A lone surrogate or a NUL anywhere in an envelope field, and NaN/Infinity anywhere."""
    # Spliced into a good event: a repeated name replaces the good value (the last one wins).
    body = json.dumps(good()).encode()[:-1] + b"," + raw[1:]
    assert _reasons(body) == [reason]
    batch = b"[" + json.dumps(good(event_id="ok")).encode() + b"," + body + b"]"
    result = parse_record(batch, INDEX, now=NOW)
    assert [e.event_id for e in result.events] == ["ok"]
    assert [(r.position, r.reason) for r in result.rejections] == [(1, reason)]


def test_a_lone_surrogate_event_id_is_a_field_reason_with_no_event_id_carried() -> None:
    """The rejection must itself be safe to encode: no surrogate travels on in it."""
    raw = json.dumps(good(event_id="\ud800")).encode()  # ensure_ascii: "\\ud800" in the JSON
    (rejection,) = parse_record(raw, INDEX, now=NOW, key="his-bvdk-tinh").rejections
    assert rejection.reason == "bad_text:event_id"
    assert rejection.event_id is None
    assert rejection.source == "his-bvdk-tinh"
    json.dumps(rejection.to_json(), ensure_ascii=False).encode()  # raises on a surrogate


def test_escaped_text_that_is_valid_is_accepted_exactly() -> None:
    """Paired surrogate escapes (an emoji) and the six characters backslash-u-0-0-0-0 are text."""
    note = "\\u0000 và 😀 \\ud800"  # backslashes, not a NUL nor a lone surrogate
    raw = json.dumps(good(data={"note": note, "emoji": "😀"})).encode()  # ASCII-escaped
    assert b"\\ud83d\\ude00" in raw and b"\\\\u0000" in raw
    (event,) = parse_record(raw, INDEX, now=NOW).events
    assert event.data == {"note": note, "emoji": "😀"}


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(good()).encode("utf-16"),
        json.dumps(good()).encode("utf-32"),
        b'{"event_id": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes: not UTF-8
        b'{"event_id": "\xc3"}',
    ],
)
def test_records_that_are_not_utf8_are_bad_json(raw: bytes) -> None:
    """json.loads(bytes) would take UTF-16/32; the contract says UTF-8."""
    (rejection,) = parse_record(raw, INDEX, now=NOW).rejections
    assert rejection.reason == "bad_json"
    assert "UTF-8" in rejection.detail


def test_utf16_without_a_bom_is_bad_json_too() -> None:
    """Its ASCII is valid UTF-8 with NUL bytes between: not JSON."""
    raw = json.dumps(good()).encode("utf-16-le")
    assert _reasons(raw) == ["bad_json"]


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z", "0001-01-01T00:00:00+07:00"]
)
def test_times_before_1970_are_bad_timestamps(stamp: str) -> None:
    """Python cannot even format some of them back (year 0 in UTC): refuse at the edge."""
    assert _reasons(json.dumps(good(occurred_at=stamp)).encode()) == ["bad_timestamp"]


def test_an_unknown_field_name_in_a_reason_is_short_clean_text() -> None:
    """Reason codes become metric labels and columns: a client cannot make them huge."""
    assert _reasons(json.dumps(good(**{"x" * 5000: 1})).encode()) == ["unknown_field:?"]
    assert _reasons(json.dumps(good(note=1)).encode()) == ["unknown_field:note"]


def test_a_rejection_names_the_body_source_only_when_it_is_registered() -> None:
    """Otherwise the record key: dead letters belong to who sent them."""
    unknown = json.dumps(good(source="y" * 10_000)).encode()
    (rejection,) = parse_record(unknown, INDEX, now=NOW, key="his-bvdk-tinh").rejections
    assert (rejection.reason, rejection.source) == ("unknown_source", "his-bvdk-tinh")
    other = json.dumps(good(source="dem-xe-ql13", sector="traffic")).encode()
    (rejection,) = parse_record(other, INDEX, now=NOW, key="his-bvdk-tinh").rejections
    assert (rejection.reason, rejection.source) == ("unknown_type", "dem-xe-ql13")


def test_validate_event_searches_decoded_objects_too() -> None:
    """The SDK (and the HTTP API through it) validates dicts: same reasons as over Kafka."""
    from foundation.contract.envelope import validate_event

    outcome = validate_event(good(data={"a": ["\ud800"]}), INDEX, now=NOW)
    assert getattr(outcome, "reason", None) == "bad_text:data"
    outcome = validate_event(good(data={"a": float("nan")}), INDEX, now=NOW)
    assert getattr(outcome, "reason", None) == "not_finite"


any_text = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates, NUL too
hostile_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=12,
)
hostile_fields = st.one_of(
    hostile_values,
    st.sampled_from(
        ["health", "his-bvdk-tinh", "bed_occupancy", "dong-xoai", "%", "2026-09-21T20:00:00+07:00"]
    ),
)


hostile_events = st.one_of(
    # any fields changed: mostly refused, never an exception
    st.dictionaries(
        st.sampled_from(sorted([*good(), "schema_version", "extra"])), hostile_fields
    ).map(lambda changes: good(**changes)),
    # a valid event whose data, id or district holds anything: what slips through if a check
    # is missing (NaN, a lone surrogate or a NUL deep in `data`)
    st.dictionaries(any_text, hostile_values, min_size=1, max_size=3).map(
        lambda data: good(data=data)
    ),
    st.tuples(any_text, hostile_values).map(
        lambda pair: good(event_id=pair[0], data={"v": pair[1]})
    ),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.lists(hostile_events, min_size=1, max_size=4),
    st.sampled_from([None, "his-bvdk-tinh", "x\x00y"]),
)
def test_fuzzed_events_give_storable_events_or_reason_codes(
    events: list[dict[str, Any]], key: str | None
) -> None:
    """Any event, any text: events that re-encode as UTF-8 JSON without NaN, or known codes."""
    raw = json.dumps(events if len(events) > 1 else events[0], allow_nan=True).encode()
    result = parse_record(raw, INDEX, now=NOW, key=key)
    assert len(result.events) + len(result.rejections) == len(events)
    for event in result.events:
        json.dumps(event.to_json(), ensure_ascii=False, allow_nan=False).encode()
    for rejection in result.rejections:
        assert _reason_known(rejection.reason), rejection
        json.dumps(rejection.to_json(), ensure_ascii=False).encode()
