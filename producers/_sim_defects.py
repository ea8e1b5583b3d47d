"""Ways a simulated event breaks the contract, each with the reason code it must get."""

from __future__ import annotations

import json
import random
from typing import Any, Final

__all__ = ["ENVELOPE_DEFECTS", "RAW_DEFECTS", "corrupt", "defect_kinds"]

# Invalid envelopes: the SDK refuses them, the worker dead-letters them (raw mode).
ENVELOPE_DEFECTS: Final = (
    "unknown_type",
    "missing_field:occurred_at",
    "bad_field:value",
    "not_finite",
    "unit_mismatch",
    "bad_timestamp",
    "unknown_district",
)
# Records that are not an event at all; only raw bytes can carry them.
RAW_DEFECTS: Final = ("bad_json", "not_utf8", "not_object", "empty_batch")
_RAW_REASON: Final = {"not_utf8": "bad_json"}


def defect_kinds(*, raw: bool) -> tuple[str, ...]:
    """The defects a run may inject: byte-level ones only when records are sent raw."""
    return ENVELOPE_DEFECTS + RAW_DEFECTS if raw else ENVELOPE_DEFECTS


def corrupt(
    event: dict[str, Any], kind: str, rng: random.Random, *, raw: bool
) -> tuple[dict[str, Any], bytes | None, str]:
    """A broken copy of `event`, its bytes when sent raw, and the reason code expected."""
    bad = dict(event)
    encoded = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    raw_bytes: bytes | None = None
    if kind == "unknown_type":
        bad["type"] = "no_such_type"
    elif kind == "missing_field:occurred_at":
        del bad["occurred_at"]
    elif kind == "bad_field:value":
        bad["value"] = rng.choice(("NaN", "Infinity", "12,5"))  # numbers as strings
    elif kind == "not_finite":
        bad["value"] = 2**60  # beyond double precision
    elif kind == "unit_mismatch":
        bad["unit"] = "kg" if event.get("unit") != "kg" else "t"
    elif kind == "bad_timestamp":
        bad["occurred_at"] = str(event["occurred_at"])[:19]  # no offset
    elif kind == "unknown_district":
        bad["district"] = "ha-noi"
    elif kind == "bad_json":
        raw_bytes = encoded[: max(1, len(encoded) // 2)]
    elif kind == "not_utf8":
        raw_bytes = b"\xc3\x28" + encoded
    elif kind == "not_object":
        raw_bytes = json.dumps(event["event_id"]).encode()
    elif kind == "empty_batch":
        raw_bytes = b"[]"
    else:
        raise ValueError(f"unknown defect {kind!r}")
    if raw and raw_bytes is None:
        raw_bytes = json.dumps(bad, ensure_ascii=False, separators=(",", ":")).encode()
    return bad, raw_bytes, _RAW_REASON.get(kind, kind)
