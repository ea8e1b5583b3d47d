"""The OpenAPI 3.1 document of the HTTP ingest API, written by hand (served at /openapi.json).

Department integrators code against it: when the API or the envelope changes, change this
document in the same commit (tests/unit/test_openapi.py checks reasons and references).
"""

from __future__ import annotations

from typing import Any

from foundation import __version__
from foundation.contract.envelope import MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_RECORD_BYTES
from producers.ingest_rules import EVENT_REASON_PREFIXES, EVENT_REASONS, REQUEST_REASONS

__all__ = ["ingest_openapi_document"]

_REF = "#/components/schemas/"
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(type_name: str, description: str) -> dict[str, Any]:
    return {"type": [type_name, "null"], "description": description}


def _reason_table(reasons: dict[str, str]) -> str:
    return "\n".join(f"- `{code}`: {meaning}" for code, meaning in reasons.items())


def _error_response(description: str, reasons: list[str]) -> dict[str, Any]:
    table = {code: REQUEST_REASONS[code][1] for code in reasons}
    return {
        "description": f"{description}\n\n{_reason_table(table)}",
        "content": {_JSON: {"schema": _ref("Error")}},
    }


def _schemas() -> dict[str, Any]:
    event_reasons = {
        **EVENT_REASONS,
        **{f"{p}:<field>": m for p, m in EVENT_REASON_PREFIXES.items()},
    }
    prefixes = "|".join(EVENT_REASON_PREFIXES)
    return {
        "Event": {
            "type": "object",
            "description": (
                "Event envelope v1. One event of one department system; the whole event "
                f"is at most {MAX_EVENT_BYTES // 1024} KiB."
            ),
            "required": ["event_id", "source", "sector", "type", "occurred_at"],
            "additionalProperties": False,
            "properties": {
                "event_id": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 128,
                    "description": "Idempotency key, unique per source; resend the same id.",
                },
                "source": {
                    "type": "string",
                    "description": "Registered source id; must be the API key's source.",
                },
                "sector": {
                    "type": "string",
                    "description": "Sector id of the catalog; must be the API key's sector.",
                },
                "type": {
                    "type": "string",
                    "description": "An event type of that sector in the catalog.",
                },
                "occurred_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": (
                        "Event time, RFC 3339 with offset (e.g. 2025-06-01T08:30:00+07:00); "
                        "not more than 5 minutes in the future, not before 1970."
                    ),
                },
                "value": {
                    "type": "number",
                    "description": "Finite number; required for measurement types.",
                },
                "unit": {
                    "type": "string",
                    "description": "Optional; must equal the catalog's unit of the type.",
                },
                "district": {
                    "type": "string",
                    "description": "Optional area code of the catalog (e.g. dong-xoai).",
                },
                "data": {
                    "type": "object",
                    "description": (
                        "Optional free-form details. Like every text of the event, no NUL "
                        "(U+0000) and no unpaired surrogate (`bad_text:<field>`); numbers "
                        "finite (`not_finite`)."
                    ),
                },
                "schema_version": {"type": "integer", "enum": [1], "default": 1},
            },
            "example": {
                "event_id": "bvdk-2025-06-01-000123",
                "source": "his-bvdk-tinh",
                "sector": "health",
                "type": "bed_occupancy",
                "occurred_at": "2025-06-01T08:30:00+07:00",
                "value": 87.5,
                "unit": "%",
                "district": "dong-xoai",
            },
        },
        "EventBatch": {
            "type": "array",
            "description": (
                "Events of the key's source, published as one Kafka record; each is "
                "validated alone, so a bad event does not stop its neighbours."
            ),
            "items": _ref("Event"),
            "minItems": 1,
            "maxItems": MAX_BATCH_EVENTS,
        },
        "EventReason": {
            "description": "Why an event was not accepted:\n\n" + _reason_table(event_reasons),
            "anyOf": [
                {"type": "string", "enum": list(EVENT_REASONS)},
                {"type": "string", "pattern": f"^({prefixes}):.+$"},
            ],
        },
        "EventResult": {
            "type": "object",
            "description": "The fate of one posted event, in the order posted.",
            "required": [
                "index",
                "event_id",
                "status",
                "reason",
                "detail",
                "topic",
                "partition",
                "offset",
                "record_index",
            ],
            "properties": {
                "index": {"type": "integer", "minimum": 0, "description": "Position posted."},
                "event_id": _nullable("string", "The event's id, when it had a valid one."),
                "status": {"type": "string", "enum": ["accepted", "rejected", "failed"]},
                "reason": {
                    "oneOf": [_ref("EventReason"), {"type": "null"}],
                    "description": "Null when accepted.",
                },
                "detail": _nullable("string", "Human-readable explanation of the reason."),
                "topic": _nullable("string", "Kafka topic, when accepted."),
                "partition": _nullable("integer", "Kafka partition, when accepted."),
                "offset": _nullable("integer", "Offset of the Kafka record, when accepted."),
                "record_index": _nullable(
                    "integer", "Position of the event inside the Kafka record (a JSON array)."
                ),
            },
        },
        "IngestResult": {
            "type": "object",
            "required": ["accepted", "rejected", "failed", "results"],
            "properties": {
                "accepted": {"type": "integer", "minimum": 0},
                "rejected": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0},
                "results": {"type": "array", "items": _ref("EventResult")},
                "reason": {
                    "type": "string",
                    "enum": ["all_rejected", "send_failed"],
                    "description": "Present on 422 (all_rejected) and 503 (send_failed) only.",
                },
                "detail": {"type": "string"},
            },
        },
        "Error": {
            "type": "object",
            "description": "A refusal of the whole request; nothing was published.",
            "required": ["reason", "detail"],
            "properties": {
                "reason": {"type": "string", "enum": list(REQUEST_REASONS)},
                "detail": {"type": "string"},
                "index": _nullable(
                    "integer", "For forbidden_source: the position of the offending event."
                ),
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "ok": {"type": "boolean"},
                "status": {"type": "string", "enum": ["ok", "degraded", "paused", "failing"]},
                "down": {
                    "type": "array",
                    "description": "Dependencies that do not answer, since when (unix s).",
                    "items": {"type": "object"},
                },
                "paused": {"type": "object", "description": "Why intake is paused, since when."},
            },
        },
    }


def ingest_openapi_document() -> dict[str, Any]:
    """The ingest API's document as a JSON-ready dict (a new one on every call)."""
    request_table = {code: f"HTTP {s}: {m}" for code, (s, m) in REQUEST_REASONS.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ioc-stream HTTP ingest API",
            "version": __version__,
            "description": (
                "Department systems of the province post events to the Intelligent "
                "Operations Center. Each request is one event (a JSON object) or a batch "
                f"(a JSON array of at most {MAX_BATCH_EVENTS:,} events), at most "
                f"{MAX_RECORD_BYTES:,} bytes, for the one source the API key belongs to. "
                "Valid events of a request are published together as one Kafka record on "
                "`ioc.events.<sector>`; invalid ones are reported with their index and a "
                "reason code. Delivery is at-least-once: on 503 retry with the same "
                "event_ids (they are idempotency keys). The body is UTF-8 JSON sent as "
                "`Content-Type: application/json` (charset utf-8 or none); every answer "
                "carries `X-Content-Type-Options: nosniff`.\n\nRequest reason codes:\n\n"
                + _reason_table(request_table)
            ),
        },
        "security": [],
        "paths": {
            "/v1/events": {
                "post": {
                    "operationId": "postEvents",
                    "summary": "Publish one event or a batch of events of the key's source",
                    "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            _JSON: {
                                "schema": {"oneOf": [_ref("Event"), _ref("EventBatch")]},
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "At least one event was published; see results.",
                            "content": {_JSON: {"schema": _ref("IngestResult")}},
                        },
                        "400": _error_response(
                            "The body is not an event or a batch (or not UTF-8: `bad_json`).",
                            [
                                "bad_json",
                                "not_object",
                                "empty_batch",
                                "batch_too_large",
                                "bad_request",
                            ],
                        ),
                        "401": _error_response("No valid API key.", ["unauthorized"]),
                        "403": _error_response(
                            "An event is outside the key's source or sector; nothing published.",
                            ["forbidden_source"],
                        ),
                        "404": _error_response("No such path.", ["not_found"]),
                        "405": _error_response("Wrong method.", ["method_not_allowed"]),
                        "413": _error_response("The body is too large.", ["too_large"]),
                        "415": _error_response(
                            "The body is not declared application/json in UTF-8.",
                            ["unsupported_media_type"],
                        ),
                        "422": {
                            "description": (
                                "Every event was rejected (reason `all_rejected`); "
                                "nothing was published."
                            ),
                            "content": {_JSON: {"schema": _ref("IngestResult")}},
                        },
                        "500": _error_response("Unexpected error.", ["internal_error"]),
                        "503": {
                            "description": (
                                "Try again later. With an Error body: `auth_unavailable`, "
                                "`overloaded`, `not_ready`, `paused`. With an IngestResult body: "
                                "`send_failed` (valid events have status `failed`)."
                            ),
                            "headers": {
                                "Retry-After": {
                                    "description": "Seconds to wait before retrying.",
                                    "schema": {"type": "integer"},
                                }
                            },
                            "content": {
                                _JSON: {"schema": {"oneOf": [_ref("Error"), _ref("IngestResult")]}}
                            },
                        },
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": (
                        "Whether the API is up, takes events, and reaches the broker and the"
                        " database"
                    ),
                    "responses": {
                        "200": {
                            "description": "Ready.",
                            "content": {_JSON: {"schema": _ref("Health")}},
                        },
                        "503": {
                            "description": (
                                "Not ready (an Error body, `not_ready`), or a Health body with"
                                " `status` `degraded` (`down` names the broker or the database"
                                " that does not answer) or `paused` (intake paused while the"
                                " embedded broker restarts)."
                            ),
                            "content": {
                                _JSON: {"schema": {"oneOf": [_ref("Error"), _ref("Health")]}}
                            },
                        },
                    },
                }
            },
            "/livez": {
                "get": {
                    "operationId": "live",
                    "summary": "Whether the process answers (for a liveness probe; /healthz"
                    " says whether it can do its work)",
                    "responses": {"200": {"description": "Alive."}},
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3.1 document.",
                            "content": {_JSON: {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "iock_<key_id>_<secret>",
                    "description": "A key from `ioc keys create SOURCE`.",
                },
                "apiKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "The same key, for clients that cannot set Authorization.",
                },
            },
        },
    }
