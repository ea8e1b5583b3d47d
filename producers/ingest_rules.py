"""What the HTTP ingest API decides, without HTTP: body decoding, key scope, the response.

Pure: no aiohttp, no Kafka, no PostgreSQL. `producers.ingest_api` is the thin server around it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from foundation.contract.envelope import MAX_BATCH_EVENTS, MAX_RECORD_BYTES

if TYPE_CHECKING:
    from producers.sdk import DeliveryReport

__all__ = [
    "EVENT_REASONS",
    "EVENT_REASON_PREFIXES",
    "REQUEST_REASONS",
    "RequestError",
    "Scope",
    "check_content_type",
    "check_scope",
    "decode_body",
    "event_results",
    "presented_key",
    "request_error",
    "response_for",
]

# Request-level reason codes: HTTP status and meaning (the OpenAPI document lists them all).
REQUEST_REASONS: Final[Mapping[str, tuple[int, str]]] = {
    "bad_request": (400, "the HTTP request is malformed"),
    "bad_json": (400, "the body is not valid UTF-8 JSON"),
    "unsupported_media_type": (
        415,
        "send the body as `Content-Type: application/json` (charset utf-8, the default)",
    ),
    "not_object": (400, "the body is neither an event (object) nor a batch (array)"),
    "empty_batch": (400, "the batch is an empty array"),
    "batch_too_large": (400, f"the batch has more than {MAX_BATCH_EVENTS:,} events"),
    "unauthorized": (401, "missing, malformed, unknown or revoked API key"),
    "forbidden_source": (403, "an event names another source or sector than the key's"),
    "not_found": (404, "no such path"),
    "method_not_allowed": (405, "the path does not accept this method"),
    "too_large": (413, f"the body is over {MAX_RECORD_BYTES:,} bytes (1 MiB)"),
    "all_rejected": (422, "every event of the request was rejected; see results"),
    "internal_error": (500, "a bug on our side; the request may be retried"),
    "send_failed": (503, "Kafka did not acknowledge the record; retry with the same event_ids"),
    "auth_unavailable": (503, "the key store (database) did not answer; retry later"),
    "overloaded": (503, "too many requests in flight; retry after a moment"),
    "not_ready": (503, "the service is starting or stopping"),
    "paused": (503, "intake is paused while the embedded broker restarts; retry after Retry-After"),
}

# Per-event reason codes (envelope validation, plus delivery), with their meaning.
EVENT_REASONS: Final[Mapping[str, str]] = {
    "not_object": "a batch item is not a JSON object",
    "too_large": "the event is over 64 KiB",
    "unknown_sector": "`sector` is not a sector of the catalog",
    "unknown_type": "`type` is not an event type of that sector",
    "unknown_source": "`source` is not a registered source",
    "source_sector_mismatch": "`source` publishes for another sector",
    "source_mismatch": "the event's source differs from the record key",
    "bad_timestamp": "`occurred_at` is not RFC 3339 with date, time and offset",
    "future_timestamp": "`occurred_at` is more than 5 minutes in the future",
    "not_finite": "`value` is NaN, infinite or beyond double precision, or a number inside"
    " the event (in `data`) is NaN or infinite",
    "unit_mismatch": "`unit` differs from the catalog's unit of the type",
    "unknown_district": "`district` is not an area code of the catalog",
    "unsupported_schema_version": "`schema_version` is not 1",
    "send_failed": "the record was not acknowledged by Kafka (status `failed`)",
}
# Reason codes that carry a field name: `missing_field:value`, `unknown_field:foo`, …
EVENT_REASON_PREFIXES: Final[Mapping[str, str]] = {
    "missing_field": "a required field is absent (or `value` for a measurement type)",
    "unknown_field": "a field outside the envelope",
    "bad_field": "a field of the wrong type or length",
    "bad_text": "a field holds text that cannot be stored: NUL (U+0000) or an unpaired"
    " surrogate (\\ud800-\\udfff), also inside `data`",
}


@dataclass(frozen=True, slots=True)
class RequestError:
    """A refusal of the whole request."""

    reason: str
    detail: str
    index: int | None = None

    @property
    def status(self) -> int:
        return REQUEST_REASONS[self.reason][0]

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail, "index": self.index}


@dataclass(frozen=True, slots=True)
class Scope:
    """What an API key may publish: one source of one sector."""

    source: str
    sector: str


def request_error(reason: str, detail: str = "", index: int | None = None) -> RequestError:
    """A RequestError with the standard meaning as detail when none is given."""
    return RequestError(reason, detail or REQUEST_REASONS[reason][1], index)


def presented_key(authorization: str | None, api_key_header: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>`, else from `X-API-Key`, else None."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    if api_key_header and api_key_header.strip():
        return api_key_header.strip()
    return None


def check_content_type(header: str | None) -> RequestError | None:
    """Refuse a body that is not declared `application/json` in UTF-8 (no charset: UTF-8)."""
    if header is None or not header.strip():
        return request_error("unsupported_media_type", "no Content-Type; send application/json")
    media, *parameters = header.split(";")
    if media.strip().lower() != "application/json":
        return request_error(
            "unsupported_media_type",
            f"Content-Type {_shown(media.strip())} is not application/json",
        )
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset != "utf-8":
                return request_error(
                    "unsupported_media_type",
                    f"charset {_shown(charset)} is not utf-8 (the contract's only encoding)",
                )
    return None


def _shown(text: str) -> str:
    """A client's text quoted for a detail: short, escaped."""
    return ascii(text[:60])


def decode_body(raw: bytes) -> list[Any] | RequestError:
    """The posted events as a list (one object → a list of one), or why the body is refused."""
    if len(raw) > MAX_RECORD_BYTES:
        return request_error("too_large", f"{len(raw):,} bytes > {MAX_RECORD_BYTES:,}")
    try:
        text = raw.decode()  # UTF-8 only: json.loads(bytes) would take UTF-16 and UTF-32 too
    except UnicodeDecodeError as exc:
        return request_error(
            "bad_json", f"the body is not UTF-8 ({exc.reason} at byte {exc.start})"
        )
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return request_error("bad_json", str(exc)[:200])
    if isinstance(decoded, dict):
        return [decoded]
    if not isinstance(decoded, list):
        return request_error("not_object")
    if not decoded:
        return request_error("empty_batch")
    if len(decoded) > MAX_BATCH_EVENTS:
        return request_error("batch_too_large", f"{len(decoded):,} events > {MAX_BATCH_EVENTS:,}")
    return decoded


def check_scope(items: Sequence[Any], scope: Scope) -> RequestError | None:
    """Refuse the request if any event names another source or sector than the key's."""
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        source, sector = item.get("source"), item.get("sector")
        if isinstance(source, str) and source != scope.source:
            named = f"source {source!r}"
        elif isinstance(sector, str) and sector != scope.sector:
            named = f"sector {sector!r}"
        else:
            continue
        return request_error(
            "forbidden_source",
            f"event {index} names {named}; this key publishes for source "
            f"{scope.source!r} of sector {scope.sector!r} only",
            index,
        )
    return None


def event_results(
    items: Sequence[Any],
    positions: Sequence[int],
    reports: Sequence[DeliveryReport],
) -> list[dict[str, Any]]:
    """One result per posted item, in order: `reports[i]` is the report of `items[positions[i]]`.

    Items not in `positions` were not objects.
    """
    by_position = dict(zip(positions, reports, strict=True))
    results: list[dict[str, Any]] = []
    for index in range(len(items)):
        report = by_position.get(index)
        if report is None:
            results.append(_result(index, None, "rejected", "not_object", "expected an object"))
        elif report.status == "delivered":
            result = _result(index, report.event_id, "accepted")
            result.update(
                topic=report.topic,
                partition=report.partition,
                offset=report.offset,
                record_index=report.index,
            )
            results.append(result)
        else:
            status = "failed" if report.status == "failed" else "rejected"
            results.append(
                _result(index, report.event_id, status, report.reason, report.detail or None)
            )
    return results


def response_for(results: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body: 202 if any event was accepted, 422 if none, 503 if sending failed."""
    counts = {"accepted": 0, "rejected": 0, "failed": 0}
    for result in results:
        counts[result["status"]] += 1
    body: dict[str, Any] = {**counts, "results": results}
    if counts["failed"]:
        body["reason"] = "send_failed"
        body["detail"] = REQUEST_REASONS["send_failed"][1]
        return 503, body
    if not counts["accepted"]:
        body["reason"] = "all_rejected"
        body["detail"] = REQUEST_REASONS["all_rejected"][1]
        return 422, body
    return 202, body


def _result(
    index: int,
    event_id: str | None,
    status: str,
    reason: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "event_id": event_id,
        "status": status,
        "reason": reason,
        "detail": detail,
        "topic": None,
        "partition": None,
        "offset": None,
        "record_index": None,
    }
