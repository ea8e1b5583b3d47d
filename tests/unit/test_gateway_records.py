"""Records of ioc.kpi and ioc.alerts are checked before the gateway keeps them (pure)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.gateway.protocol import encode
from consumers.gateway.records import PoisonRecordError, alert_item, kpi_topic_item
from tests.plugins.gateway import alert_transition, kpi_point

SECTORS = frozenset({"health", "traffic"})


def test_a_good_kpi_point_comes_back_as_it_was_on_kafka() -> None:
    point = kpi_point() | {"extra": ["fields", {"travel": "on"}]}
    assert kpi_topic_item(json.dumps(point).encode(), SECTORS) == point


@pytest.mark.parametrize("extra", [float("nan"), ["\ud800"], {"x": float("-inf")}])
def test_an_extra_field_that_cannot_be_sent_makes_the_record_poison(extra: Any) -> None:
    raw = json.dumps(kpi_point() | {"extra": extra}).encode()
    with pytest.raises(PoisonRecordError) as caught:
        kpi_topic_item(raw, SECTORS)
    assert caught.value.reason == "not_encodable"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "bad_json"),
        (b"[" * 100_000, "bad_json"),
        (b'{"kind": "kpi", "value": ' + b"9" * 5000 + b"}", "bad_json"),
        (b"[1, 2]", "not_object"),
        (json.dumps(kpi_point() | {"value": "87.5"}).encode(), "bad_field:value"),
        (json.dumps(kpi_point() | {"value": float("nan")}).encode(), "bad_field:value"),
        (
            json.dumps(kpi_point() | {"window_start": float("inf")}).encode(),
            "bad_field:window_start",
        ),
        (json.dumps(kpi_point() | {"revision": True}).encode(), "bad_field:revision"),
        (json.dumps(kpi_point() | {"final": "yes"}).encode(), "bad_field:final"),
        (json.dumps(kpi_point() | {"series": "\ud800"}).encode(), "bad_field:series"),
        (json.dumps(kpi_point(sector="atlantis")).encode(), "unknown_sector"),
        (json.dumps({"kind": 5}).encode(), "bad_field:kind"),
        (b'{"kind": "freshness", "state": "odd"}', "bad_field:state"),
    ],
)
def test_poison_kpi_records_are_named(raw: bytes, reason: str) -> None:
    with pytest.raises(PoisonRecordError) as caught:
        kpi_topic_item(raw, SECTORS)
    assert caught.value.reason == reason


def test_a_kind_of_a_newer_contract_is_not_poison() -> None:
    assert kpi_topic_item(b'{"kind": "forecast"}', SECTORS) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"value": "NaN"}, "bad_value"),
        ({"note": "\ud800"}, "bad_text"),
        ({"note": "a\x00b"}, "bad_text"),
        ({"labels": {"sector": "atlantis"}}, "unknown_sector"),
        ({"notes": [[float("nan"), "a", "b"]]}, "bad_notes"),
        ({"stale": 1}, "bad_stale"),
        ({"fingerprint": "f" * 1000}, "bad_fingerprint"),
        ({"message_vi": ["x"]}, "bad_message_vi"),
    ],
)
def test_poison_alert_records_are_named(change: dict[str, Any], reason: str) -> None:
    raw = json.dumps(alert_transition() | change).encode()
    with pytest.raises(PoisonRecordError) as caught:
        alert_item(raw, SECTORS)
    assert caught.value.reason == reason


hostile = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=()), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.sampled_from([kpi_point(), alert_transition(), {"kind": "freshness"}]),
    st.dictionaries(
        st.sampled_from(
            ["kind", "series", "sector", "value", "window_start", "revision", "final", "count",
             "labels", "seq", "at", "note", "notes", "state", "last_seen", "changed_at"]
        ),
        hostile,
        max_size=4,
    ),
)  # fmt: skip
def test_whatever_the_gateway_keeps_encodes_as_a_frame(
    base: dict[str, Any], change: dict[str, Any]
) -> None:
    """Any change to a good record: it is poison, or its item encodes (allow_nan=False, UTF-8)."""
    raw = json.dumps(base | change, allow_nan=True).encode()
    topic_item = alert_item if "fingerprint" in base else kpi_topic_item
    try:
        item = topic_item(raw, SECTORS)
    except PoisonRecordError:
        return
    if item is not None:
        encode({"type": "update", "items": [item], "at": time.time()}).encode()
