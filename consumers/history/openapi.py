"""The history API's part of the OpenAPI document (merged by `producers.openapi`)."""

from __future__ import annotations

from typing import Any, Final

from consumers.history.params import (
    BUCKETS,
    DEFAULT_PAGE_SIZE,
    MAX_BUCKETS,
    MAX_LOG_RANGE,
    MAX_PAGE_SIZE,
)
from consumers.history.queries import MAX_ORIGINAL_BYTES, ROLLUP_AFTER
from consumers.history.routes import LATEST_LOOKBACK, PREFIX

__all__ = ["HISTORY_ERRORS", "history_paths", "history_schemas", "history_security_schemes"]

_REF = "#/components/schemas/"
_JSON = "application/json"

# code → (HTTP status, meaning); every code the history API answers with.
HISTORY_ERRORS: Final[dict[str, tuple[int, str]]] = {
    "bad_range": (
        400,
        "`from`/`to`/`window_start` missing, malformed, outside the supported range"
        " (1970-01-01T00:00:00Z to 9999-01-01T00:00:00Z, said in the detail), or `from` not"
        " before `to`",
    ),
    "bad_bucket": (400, f"bucket not one of {', '.join(BUCKETS)}"),
    "bad_page_size": (400, f"limit not an integer from 1 to {MAX_PAGE_SIZE}"),
    "bad_cursor": (400, "cursor not one this API gave"),
    "bad_parameter": (
        400,
        "an unknown query parameter, a bad state/severity, or a value holding a character"
        " the database cannot take (NUL, an unpaired surrogate)",
    ),
    "unauthorized": (401, "no credential, or an invalid, expired or revoked one"),
    "forbidden": (403, "the token's sector scope, or the API key's source, does not cover it"),
    "unknown_kpi": (404, "no such KPI in the catalog (ids are `<sector>.<kpi>`)"),
    "unknown_sector": (404, "no such sector in the catalog"),
    "not_found": (404, "no such history endpoint"),
    "method_not_allowed": (405, "the history API only answers GET"),
    "range_too_long": (
        422,
        f"more than {MAX_BUCKETS:,} buckets per series, or more than "
        f"{MAX_LOG_RANGE / 86400:g} days of alerts or dead letters",
    ),
    "internal_error": (500, "unexpected error (a bug; the detail never holds the cause)"),
    "unavailable": (
        503,
        "the database did not answer in time; retry (Retry-After). The detail never holds"
        " the database's own message",
    ),
}

_TOKEN_SECURITY: Final[list[dict[str, list[str]]]] = [{"historyToken": []}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _errors(*codes: str) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(HISTORY_ERRORS[code][0], []).append(code)
    return {
        str(status): {
            "description": "\n".join(f"- `{c}`: {HISTORY_ERRORS[c][1]}" for c in group),
            "content": {_JSON: {"schema": _ref("HistoryError")}},
        }
        for status, group in sorted(by_status.items())
    }


_COMMON: Final = ("unauthorized", "bad_parameter", "internal_error", "unavailable")


def _param(name: str, where: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
    }


_TIME: Final = {"type": "string", "description": "RFC 3339 with offset, or Unix seconds"}
_FROM: Final = _param("from", "query", "Start of the range (inclusive).", _TIME)
_TO: Final = _param("to", "query", "End of the range (exclusive); default now.", _TIME)
_LIMIT: Final = _param(
    "limit",
    "query",
    f"Page size, default {DEFAULT_PAGE_SIZE}.",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
)
_CURSOR: Final = _param(
    "cursor", "query", "`next_cursor` of the previous page.", {"type": "string"}
)
_KPI: Final = _param(
    "kpi", "path", "KPI id `<sector>.<kpi>`, e.g. `health.bed_occupancy_pct`.", {"type": "string"}
)
_GROUP: Final = _param(
    "group",
    "query",
    "One group of a grouped KPI (a district code or source id; `*` for none); default all.",
    {"type": "string"},
)


def _get(
    operation: str, summary: str, parameters: list[dict[str, Any]], body: str, *errors: str
) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation,
            "summary": summary,
            "tags": ["history"],
            "security": _TOKEN_SECURITY,
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK.", "content": {_JSON: {"schema": _ref(body)}}},
                **_errors(*_COMMON, *errors),
            },
        }
    }


def history_paths() -> dict[str, Any]:
    """The paths of the history API."""
    paths = {
        f"{PREFIX}/kpis/{{kpi}}/series": _get(
            "kpiSeries",
            "A KPI's series over a time range, in buckets (long ranges from the rollups)",
            [
                _KPI,
                {**_FROM, "description": "Start (inclusive); default 24 h before `to`."},
                _TO,
                _param(
                    "bucket",
                    "query",
                    "raw (the KPI points) or a bucket; default the finest that fits "
                    f"{MAX_BUCKETS:,} per series. Buckets align on the province's midnight; "
                    f"1h and 1d buckets over more than {ROLLUP_AFTER / 86400:g} days come "
                    "from the rollups.",
                    {"type": "string", "enum": list(BUCKETS)},
                ),
                _GROUP,
            ],
            "KpiSeries",
            "forbidden",
            "unknown_kpi",
            "bad_range",
            "bad_bucket",
            "range_too_long",
        ),
        f"{PREFIX}/kpis/{{kpi}}/events": _get(
            "kpiPointEvents",
            "Drill-down: the stored events one window of a KPI aggregates, with their "
            "Kafka topic/partition/offset/index",
            [
                _KPI,
                _param("window_start", "query", "The KPI point's window start (required).", _TIME),
                _GROUP,
                _LIMIT,
                _CURSOR,
            ],
            "KpiPointEvents",
            "forbidden",
            "unknown_kpi",
            "bad_range",
            "bad_page_size",
            "bad_cursor",
        ),
        f"{PREFIX}/sectors/{{sector}}/latest": _get(
            "sectorLatest",
            "The latest point of every KPI (each group) of a sector, with names, unit and "
            f"target; windows that started in the last {LATEST_LOOKBACK / 86400:g} days",
            [_param("sector", "path", "Sector id, e.g. `health`.", {"type": "string"})],
            "SectorLatest",
            "forbidden",
            "unknown_sector",
        ),
        f"{PREFIX}/alerts": _get(
            "alertHistory",
            "Alert transitions (the audit), newest first",
            [
                {**_FROM, "description": "Default 7 days before `to` (none with `fingerprint`)."},
                _TO,
                _param("sector", "query", "Only this sector.", {"type": "string"}),
                _param("fingerprint", "query", "Only this alert.", {"type": "string"}),
                _param("state", "query", "State after the transition.", {"type": "string"}),
                _param("severity", "query", "Only this severity.", {"type": "string"}),
                _LIMIT,
                _CURSOR,
            ],
            "AlertHistory",
            "forbidden",
            "unknown_sector",
            "bad_range",
            "range_too_long",
            "bad_page_size",
            "bad_cursor",
        ),
        f"{PREFIX}/dead-letters": {
            **_get(
                "deadLetters",
                "Dead letters (events refused by the pipeline), newest first; a department "
                "may read its own source's with its API key",
                [
                    _param(
                        "source",
                        "query",
                        "Only this source (required with an API key).",
                        {"type": "string"},
                    ),
                    _param("reason", "query", "Only this reason code.", {"type": "string"}),
                    {**_FROM, "description": "Default 7 days before `to`."},
                    _TO,
                    _LIMIT,
                    _CURSOR,
                ],
                "DeadLetters",
                "forbidden",
                "bad_range",
                "range_too_long",
                "bad_page_size",
                "bad_cursor",
            )
        },
    }
    dead = paths[f"{PREFIX}/dead-letters"]["get"]
    dead["security"] = [*_TOKEN_SECURITY, {"bearerAuth": []}, {"apiKeyHeader": []}]
    return paths


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


_T: Final = {"type": "string", "format": "date-time"}
_T_NULL: Final = {"type": ["string", "null"], "format": "date-time"}
_NUM_NULL: Final = {"type": ["number", "null"]}
_STR_NULL: Final = {"type": ["string", "null"]}
_INT_NULL: Final = {"type": ["integer", "null"]}


def history_schemas() -> dict[str, Any]:
    """The component schemas the history paths refer to."""
    kafka = _object(
        {"topic": _STR_NULL, "partition": _INT_NULL, "offset": _INT_NULL, "index": _INT_NULL},
        "Where the record was on Kafka; index: position in a batch record (null: one event).",
    )
    point = _object(
        {
            "start": _T,
            "end": _T,
            "value": _NUM_NULL,
            "count": {"type": "integer"},
            "final": {"type": "boolean"},
            "revision": {"type": "integer"},
            "emitted_at": _T,
        },
        "A KPI point (one window); provisional until final.",
    )
    bucket = _object(
        {
            "start": _T,
            "end": _T,
            "points": {"type": "integer"},
            "avg": _NUM_NULL,
            "min": _NUM_NULL,
            "max": _NUM_NULL,
            "sum": _NUM_NULL,
            "last": _NUM_NULL,
            "samples": {"type": "integer"},
        },
        "The KPI points whose window starts in the bucket: how many, avg/min/max/sum of "
        "their values, the value of the latest, and the events they counted (samples).",
    )
    return {
        "HistoryError": _object(
            {
                "error": {"type": "string", "enum": list(HISTORY_ERRORS)},
                "detail": {"type": "string"},
            },
            "A refused history request.",
        ),
        "KpiSeries": _object(
            {
                "kpi": {"type": "string"},
                "sector": {"type": "string"},
                "name_vi": {"type": "string"},
                "name_en": {"type": "string"},
                "unit": {"type": "string"},
                "aggregation": {"type": "string"},
                "bucket": {"type": "string", "enum": list(BUCKETS)},
                "table": {
                    "type": "string",
                    "enum": ["kpi_points", "kpi_rollup_1h", "kpi_rollup_1d"],
                },
                "from": _T,
                "to": _T,
                "series": {
                    "type": "array",
                    "items": _object(
                        {
                            "series": {"type": "string"},
                            "group": {"type": "string"},
                            "points": {"type": "array", "items": {"oneOf": [point, bucket]}},
                        }
                    ),
                },
            },
            "Buckets without points are left out; `from`/`to` are the range aligned to the bucket.",
        ),
        "KpiPointEvents": _object(
            {
                "kpi": {"type": "string"},
                "group": _STR_NULL,
                "event_type": {"type": "string"},
                "window": _object({"start": _T, "end": _T}),
                "points": {"type": "array", "items": {"type": "object"}},
                "events": {
                    "type": "array",
                    "items": _object(
                        {
                            "event_id": {"type": "string"},
                            "source": {"type": "string"},
                            "sector": {"type": "string"},
                            "type": {"type": "string"},
                            "occurred_at": _T,
                            "value": _NUM_NULL,
                            "unit": _STR_NULL,
                            "district": _STR_NULL,
                            "data": {"type": ["object", "null"]},
                            "kafka": kafka,
                            "published_at": _T,
                        }
                    ),
                },
                "next_cursor": _STR_NULL,
            },
            "Events in (occurred_at, source, event_id) order; `points` are the stored KPI "
            "points of that window (one per group).",
        ),
        "SectorLatest": _object(
            {
                "sector": {"type": "string"},
                "name_vi": {"type": "string"},
                "name_en": {"type": "string"},
                "as_of": _T,
                "kpis": {"type": "array", "items": {"type": "object"}},
            },
            "Each KPI of the sector in catalog order: kpi, name_vi, name_en, unit, "
            "aggregation, window_seconds, group_by, headline, target {value, direction}, and "
            "groups [{group, series, start, end, value, count, final, revision, emitted_at, "
            "age_seconds, target_status (met, missed or null)}] (empty: no recent point).",
        ),
        "AlertHistory": _object(
            {
                "from": _T_NULL,
                "to": _T_NULL,
                "transitions": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "AlertTransition records as on ioc.alerts.",
                },
                "next_cursor": _STR_NULL,
            }
        ),
        "DeadLetters": _object(
            {
                "source": _STR_NULL,
                "from": _T,
                "to": _T,
                "dead_letters": {
                    "type": "array",
                    "items": _object(
                        {
                            "received_at": _T,
                            "reason": {"type": "string"},
                            "detail": _STR_NULL,
                            "sender": {
                                "type": ["string", "null"],
                                "description": (
                                    "Who sent the refused record: its Kafka key (a source"
                                    " id), or the API key's source; a department's key reads"
                                    " the dead letters it sent"
                                ),
                            },
                            "source": {
                                "type": ["string", "null"],
                                "description": "The registered source the record named",
                            },
                            "event_id": _STR_NULL,
                            "kafka": kafka,
                            "deadletter": _object(
                                {"partition": {"type": "integer"}, "offset": {"type": "integer"}}
                            ),
                            "original_b64": _STR_NULL,
                            "original_bytes": _INT_NULL,
                            "original_truncated": {"type": "boolean"},
                        },
                        f"original_b64: the refused record's first {MAX_ORIGINAL_BYTES:,} "
                        "bytes in base64.",
                    ),
                },
                "next_cursor": _STR_NULL,
            }
        ),
    }


def history_security_schemes() -> dict[str, Any]:
    """The token scheme (API keys are the ingest API's own schemes)."""
    return {
        "historyToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "iot1.<claims>.<signature>",
            "description": (
                "A token from `ioc tokens create` (wall, officer or leader); its sector "
                "scope limits what it reads."
            ),
        }
    }
