"""The reason codes a refused record or event carries, with what each means.

One table for the dead-letter topic, the published JSON Schemas and the README: the
envelope (`foundation.contract.envelope`) produces the record and event codes, the stream
worker adds its own two. `tests/unit/test_contract_schemas.py` reads the codes out of the
validator's and the worker's source and checks that each one is listed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "DEAD_LETTER_REASONS",
    "EVENT_REASONS",
    "REASON_PREFIXES",
    "RECORD_REASONS",
    "WORKER_REASONS",
]

# The whole record is refused (position null): nothing in it was read as events.
RECORD_REASONS: Final[Mapping[str, str]] = {
    "bad_json": "the record is not UTF-8 JSON",
    "not_object": "the record is neither an event (object) nor a batch (array); in a batch, "
    "an element that is not an object",
    "empty_batch": "the batch is an empty array",
    "batch_too_large": "the batch has more than 1,000 events",
    "too_large": "the record is over 1 MiB, or one event is over 64 KiB",
}
# One event is refused; in a batch its neighbours flow on.
EVENT_REASONS: Final[Mapping[str, str]] = {
    "unknown_sector": "`sector` is not a sector of the catalog",
    "unknown_type": "`type` is not an event type of that sector",
    "unknown_source": "`source` is not a registered source",
    "source_sector_mismatch": "`source` publishes for another sector",
    "source_mismatch": "the event's source differs from the record key",
    "bad_timestamp": "`occurred_at` is not RFC 3339 with a date, a time and an offset",
    "future_timestamp": "`occurred_at` is more than 5 minutes in the future",
    "not_finite": "`value` is NaN, infinite or beyond double precision (±2^53)",
    "unit_mismatch": "`unit` differs from the catalog's unit of the type",
    "unknown_district": "`district` is not an area code of the catalog",
    "unsupported_schema_version": "`schema_version` is not 1",
}
# Codes that name a field after the colon: `missing_field:value`, `unknown_field:colour`, …
REASON_PREFIXES: Final[Mapping[str, str]] = {
    "missing_field": "a required field is absent or null (`value` for a measurement type)",
    "unknown_field": "a field outside the envelope",
    "bad_field": "a field of the wrong type or length",
}
# Only the stream worker dead-letters with these.
WORKER_REASONS: Final[Mapping[str, str]] = {
    "too_late": "the event is past the grace period of every window it falls in",
    "internal_error": "processing the record failed (a bug, logged with its traceback); the "
    "stream went on",
}
DEAD_LETTER_REASONS: Final[Mapping[str, str]] = {
    **RECORD_REASONS,
    **EVENT_REASONS,
    **WORKER_REASONS,
}
