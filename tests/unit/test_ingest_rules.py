"""Decisions of the HTTP ingest API without HTTP: body, key scope, per-event results, status."""

from __future__ import annotations

import json

import pytest

from producers.ingest_rules import (
    REQUEST_REASONS,
    RequestError,
    Scope,
    check_scope,
    decode_body,
    event_results,
    presented_key,
    response_for,
)
from producers.sdk import DeliveryReport

SCOPE = Scope("his-bvdk-tinh", "health")


@pytest.mark.parametrize(
    ("authorization", "header", "expected"),
    [
        ("Bearer iock_x", None, "iock_x"),
        ("bearer   iock_x  ", None, "iock_x"),
        ("Basic dXNlcjpwYXNz", "iock_y", None),  # a wrong scheme is not silently ignored
        ("Bearer ", None, None),
        (None, "iock_y", "iock_y"),
        ("Bearer iock_x", "iock_y", "iock_x"),
        (None, "  ", None),
        (None, None, None),
    ],
)
def test_presented_key(authorization: str | None, header: str | None, expected: str | None) -> None:
    """Authorization: Bearer wins; X-API-Key is the fallback."""
    assert presented_key(authorization, header) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "bad_json"),
        (b"{", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[" * 100_000, "bad_json"),
        (b'"text"', "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (b"[]", "empty_batch"),
        (json.dumps([{}] * 1001).encode(), "batch_too_large"),
        (b" " * (1024 * 1024 + 1), "too_large"),
    ],
)
def test_bad_bodies_are_refused_with_their_reason(raw: bytes, reason: str) -> None:
    """Each malformed body maps to one request-level reason code and its HTTP status."""
    outcome = decode_body(raw)
    assert isinstance(outcome, RequestError) and outcome.reason == reason
    assert outcome.status == REQUEST_REASONS[reason][0]


def test_one_object_becomes_a_list_of_one_and_a_batch_stays_a_list() -> None:
    """Both body shapes decode to the list of posted items."""
    assert decode_body(b'{"a": 1}') == [{"a": 1}]
    assert decode_body(b'[{"a": 1}, 2]') == [{"a": 1}, 2]


@pytest.mark.parametrize(
    ("items", "index"),
    [
        ([{"source": "his-bvdk-tinh", "sector": "health"}], None),
        ([{"source": "his-bvdk-tinh"}, {}, 3, "x"], None),  # missing fields are validation's job
        ([{"source": "his-bvdk-tinh", "sector": "health"}, {"source": "cdc-giam-sat"}], 1),
        ([{"source": "his-bvdk-tinh", "sector": "traffic"}], 0),
        ([{"source": 5, "sector": "health"}], None),  # a non-string source is bad_field:source
    ],
)
def test_scope(items: list[object], index: int | None) -> None:
    """Naming another source or sector refuses the whole request, with the index."""
    refusal = check_scope(items, SCOPE)
    if index is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.reason == "forbidden_source"
        assert refusal.index == index and refusal.status == 403


def _delivered(event_id: str, index: int) -> DeliveryReport:
    return DeliveryReport(
        event_id, "his-bvdk-tinh", "delivered", topic="ioc.events.health", partition=2,
        offset=7, index=index,
    )  # fmt: skip


def test_results_keep_posted_order_and_indexes() -> None:
    """Accepted, rejected and non-object items each report at their posted index."""
    items = [{"event_id": "a"}, "junk", {"event_id": "b"}, {"event_id": "c"}]
    reports = [
        _delivered("a", 0),
        DeliveryReport("b", "his-bvdk-tinh", "rejected", "unknown_type", "x", index=1),
        _delivered("c", 1),
    ]
    results = event_results(items, [0, 2, 3], reports)
    assert [(r["index"], r["status"], r["reason"]) for r in results] == [
        (0, "accepted", None),
        (1, "rejected", "not_object"),
        (2, "rejected", "unknown_type"),
        (3, "accepted", None),
    ]
    assert results[3]["record_index"] == 1 and results[3]["offset"] == 7
    assert all(set(r) == set(results[0]) for r in results)
    status, body = response_for(results)
    assert status == 202 and (body["accepted"], body["rejected"], body["failed"]) == (2, 2, 0)
    assert "reason" not in body


def test_all_rejected_is_422_and_send_failure_is_503() -> None:
    """No accepted event → 422 all_rejected; any failed delivery → 503 send_failed."""
    rejected = DeliveryReport("a", "s", "rejected", "bad_timestamp", "", index=0)
    status, body = response_for(event_results([{}], [0], [rejected]))
    assert status == 422 and body["reason"] == "all_rejected"
    failed = DeliveryReport("a", "s", "failed", "send_failed", "timeout")
    status, body = response_for(event_results([{}], [0], [failed]))
    assert status == 503 and body["reason"] == "send_failed" and body["failed"] == 1
