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
    MAX_RECORD_BYTES,
    ContractIndex,
    parse_record,
)

INDEX = ContractIndex(load_catalog())
NOW = datetime(2026, 9, 21, 14, tzinfo=UTC).timestamp()  # every test's clock

REASONS = {
    "bad_json", "not_object", "empty_batch", "batch_too_large", "too_large", "unknown_sector",
    "unknown_type", "unknown_source", "source_sector_mismatch", "source_mismatch", "bad_timestamp",
    "future_timestamp", "not_finite", "unit_mismatch", "unknown_district",
    "unsupported_schema_version",
}  # fmt: skip
REASON_PREFIXES = ("missing_field:", "unknown_field:", "bad_field:")


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
