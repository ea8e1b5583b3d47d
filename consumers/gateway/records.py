"""Records of `ioc.kpi` and `ioc.alerts` as the gateway takes them: checked, then trusted (pure).

Whatever the gateway keeps is sent to every screen, encoded with `allow_nan=False` and as
UTF-8: one record it cannot encode would break every update and snapshot of its channel. So
each record is checked here before it reaches the state: the contract's fields and types,
and the whole record (fields the gateway does not know travel on, as on Kafka) must encode
as a frame. A record that fails is *poison*: the feed counts it
(`ioc_gateway_poison_records_total{topic}`), logs it at most once a minute, and steps over
it; the screens never notice.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from typing import Any, Final

from foundation.contract.alerts import AlertTransition, RecordError

__all__ = ["PoisonRecordError", "alert_item", "check_kpi_record", "kpi_topic_item"]

_MAX_ID: Final = 256
_BAD_TEXT: Final = re.compile("[\x00\ud800-\udfff]")


class PoisonRecordError(ValueError):
    """A record the gateway must step over; `reason` says why (for the log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _decode(raw: bytes | None) -> dict[str, Any]:
    try:
        record = json.loads(raw or b"")
    except (ValueError, RecursionError) as exc:  # not UTF-8 JSON, too deep, huge integers
        raise PoisonRecordError("bad_json") from exc
    if type(record) is not dict:
        raise PoisonRecordError("not_object")
    return record


def _text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if type(value) is not str or len(value) > _MAX_ID or _BAD_TEXT.search(value) is not None:
        raise PoisonRecordError(f"bad_field:{name}")
    return value


def _number(record: dict[str, Any], name: str, *, optional: bool = False) -> float | None:
    value: Any = record.get(name)
    if value is None and optional:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise PoisonRecordError(f"bad_field:{name}")
    return float(value)


def _integer(record: dict[str, Any], name: str) -> int:
    value = record.get(name)
    if type(value) is not int or not 0 <= value < 2**63:
        raise PoisonRecordError(f"bad_field:{name}")
    return value


def _sector(record: dict[str, Any], sectors: Collection[str] | None) -> str:
    sector = _text(record, "sector")
    if sectors is not None and sector not in sectors:
        # Each sector is a channel with its own buffer: unknown ones would grow without end.
        raise PoisonRecordError("unknown_sector")
    return sector


def check_kpi_record(
    record: dict[str, Any], sectors: Collection[str] | None = None
) -> dict[str, Any] | None:
    """The record when it keeps the contract and encodes as a frame, None for a kind the
    gateway does not show; PoisonRecordError otherwise."""
    checked = _check_kpi_fields(record, sectors)
    if checked is None:
        return None
    try:
        json.dumps(record, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:  # NaN or a surrogate in an extra
        raise PoisonRecordError("not_encodable") from exc
    return record


def _check_kpi_fields(
    record: dict[str, Any], sectors: Collection[str] | None
) -> dict[str, Any] | None:
    kind = record.get("kind")
    if kind == "kpi":
        final = record.get("final")
        if type(final) is not bool:
            raise PoisonRecordError("bad_field:final")
        return {
            "kind": "kpi",
            "series": _text(record, "series"),
            "kpi": _text(record, "kpi"),
            "sector": _sector(record, sectors),
            "group": _text(record, "group"),
            "window_start": _number(record, "window_start"),
            "window_end": _number(record, "window_end"),
            "value": _number(record, "value", optional=True),
            "count": _integer(record, "count"),
            "final": final,
            "revision": _integer(record, "revision"),
            "emitted_at": _number(record, "emitted_at"),
            "newest": _number(record, "newest", optional=True),
        }
    if kind == "freshness":
        state = record.get("state")
        if state not in ("fresh", "stale"):
            raise PoisonRecordError("bad_field:state")
        return {
            "kind": "freshness",
            "source": _text(record, "source"),
            "sector": _sector(record, sectors),
            "state": state,
            "last_seen": _number(record, "last_seen", optional=True),
            "changed_at": _number(record, "changed_at"),
            "stale_after": _number(record, "stale_after"),
        }
    if kind == "sector_seen":
        return {
            "kind": "sector_seen",
            "sector": _sector(record, sectors),
            "last_seen": _number(record, "last_seen"),
            "emitted_at": _number(record, "emitted_at"),
        }
    if type(kind) is str and len(kind) <= 64:
        return None  # a kind of a newer contract: not poison, not shown
    raise PoisonRecordError("bad_field:kind")


def kpi_topic_item(raw: bytes | None, sectors: Collection[str] | None) -> dict[str, Any] | None:
    """A record of `ioc.kpi` as the state takes it (see `check_kpi_record`)."""
    return check_kpi_record(_decode(raw), sectors)


def alert_item(raw: bytes | None, sectors: Collection[str] | None) -> dict[str, Any]:
    """A record of `ioc.alerts` as the state takes it: the contract's transition, re-encoded."""
    try:
        transition = AlertTransition.from_json(_decode(raw))
    except RecordError as exc:
        raise PoisonRecordError(str(exc).split(":", 1)[0]) from exc
    if sectors is not None and transition.sector not in sectors:
        raise PoisonRecordError("unknown_sector")
    return transition.to_json()
