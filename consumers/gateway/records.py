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

import dataclasses
import json
import re
from collections.abc import Collection
from typing import Any, Final

from foundation.contract.alerts import AlertTransition, RecordError
from foundation.contract.kpi import KPI_TOPIC_KINDS

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


def _sector(sector: str, sectors: Collection[str] | None) -> None:
    if sectors is not None and sector not in sectors:
        # Each sector is a channel with its own buffer: unknown ones would grow without end.
        raise PoisonRecordError("unknown_sector")


def check_kpi_record(
    record: dict[str, Any], sectors: Collection[str] | None = None
) -> dict[str, Any] | None:
    """The record when it keeps the contract (its codec in `foundation.contract.kpi` says)
    and encodes as a frame, None for a kind the gateway does not know; PoisonRecordError
    otherwise. Fields the gateway does not know travel on, as on Kafka."""
    kind = record.get("kind")
    codec = KPI_TOPIC_KINDS.get(kind) if type(kind) is str else None
    if codec is None:
        if type(kind) is str and len(kind) <= 64:
            return None  # a kind of a newer contract: not poison, not shown
        raise PoisonRecordError("bad_field:kind")
    try:
        typed = codec.from_json(record)
    except RecordError as exc:
        raise PoisonRecordError(str(exc)) from exc
    for name, value in _texts(typed):
        if len(value) > _MAX_ID or _BAD_TEXT.search(value) is not None:
            raise PoisonRecordError(f"bad_field:{name}")
    _sector(typed.sector, sectors)
    try:
        json.dumps(record, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:  # NaN or a surrogate in an extra
        raise PoisonRecordError("not_encodable") from exc
    return record


def _texts(typed: Any) -> list[tuple[str, str]]:
    return [
        (item.name, value)
        for item in dataclasses.fields(typed)
        if isinstance(value := getattr(typed, item.name), str)
    ]


def kpi_topic_item(raw: bytes | None, sectors: Collection[str] | None) -> dict[str, Any] | None:
    """A record of `ioc.kpi` as the state takes it (see `check_kpi_record`)."""
    return check_kpi_record(_decode(raw), sectors)


def alert_item(raw: bytes | None, sectors: Collection[str] | None) -> dict[str, Any]:
    """A record of `ioc.alerts` as the state takes it: the contract's transition, re-encoded."""
    try:
        transition = AlertTransition.from_json(_decode(raw))
    except RecordError as exc:
        raise PoisonRecordError(str(exc).split(":", 1)[0]) from exc
    _sector(transition.sector, sectors)
    return transition.to_json()
