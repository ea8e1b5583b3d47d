"""Event envelope v1: record bytes in, accepted events and coded rejections out.

Pure and hot: it runs on every event, in the SDK, the HTTP API and the worker.
A record is one event (a JSON object) or a batch from one source (a JSON array).
Nothing in here raises on bad input; every problem becomes a `Rejection` with a
reason code from the contract.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from foundation.contract.catalog import Catalog

__all__ = [
    "ENVELOPE_FIELDS",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_FUTURE_SECONDS",
    "MAX_RECORD_BYTES",
    "ContractIndex",
    "Event",
    "RecordResult",
    "Rejection",
    "event_problem",
    "parse_record",
    "validate_event",
]

MAX_RECORD_BYTES: Final = 1024 * 1024
MAX_BATCH_EVENTS: Final = 1000
MAX_EVENT_BYTES: Final = 64 * 1024
MAX_EVENT_ID: Final = 128
MAX_FUTURE_SECONDS: Final = 300.0
SCHEMA_VERSION: Final = 1

ENVELOPE_FIELDS: Final = frozenset(
    {
        "event_id", "source", "sector", "type", "occurred_at", "value", "unit", "district",
        "data", "schema_version",
    }
)  # fmt: skip
_REQUIRED: Final = ("event_id", "source", "sector", "type", "occurred_at")
# Text PostgreSQL (and UTF-8) cannot hold: NUL, and UTF-16 surrogates that JSON's \u escapes
# can smuggle in unpaired ("\ud800"). Events holding them are refused (`bad_text:<field>`),
# so what is accepted is stored exactly.
_BAD_TEXT: Final = re.compile("[\x00\ud800-\udfff]")
# What a record must contain for an event of it to hold bad text or a non-finite number: a
# \u0000 or \uD800-\uDFFF escape, or the NaN/Infinity literals JSON parsers take. Looked for
# with one-byte searches first (memchr: well under a microsecond for a batch of 100 events).
_ESCAPE: Final = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_MAX_NAME_IN_REASON: Final = 64
_DECODER: Final = json.JSONDecoder()  # json.loads' own settings
_SPACE: Final = re.compile(r"[ \t\n\r]*")  # JSON's whitespace
_NEXT: Final = re.compile(r"[ \t\n\r]*(?:\]|,[ \t\n\r]*)")  # after an array's item


class Event(NamedTuple):
    """One valid event; `occurred_at` is event time in epoch seconds.

    A NamedTuple, not a frozen dataclass: it is built once per event on the hot path,
    and a frozen dataclass's __init__ costs several times more.
    """

    event_id: str
    source: str
    sector: str
    type: str
    occurred_at: float
    value: float | None
    unit: str | None = None
    district: str | None = None
    data: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The envelope as JSON-ready dict (RFC 3339 timestamp, absent optionals left out)."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "source": self.source,
            "sector": self.sector,
            "type": self.type,
            "occurred_at": format_time(self.occurred_at),
        }
        if self.value is not None:
            out["value"] = self.value
        if self.unit is not None:
            out["unit"] = self.unit
        if self.district is not None:
            out["district"] = self.district
        if self.data is not None:
            out["data"] = self.data
        return out


class Rejection(NamedTuple):
    """Why one event (or the whole record, position None) was refused.

    `position` is the event's index in a batch record (None for a one-event record).
    """

    reason: str
    position: int | None = None
    detail: str = ""
    source: str | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.position,
            "reason": self.reason,
            "detail": self.detail,
            "event_id": self.event_id,
        }


@dataclass(slots=True)
class RecordResult:
    """What one record yielded: events in order, and rejections with their batch index."""

    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    batch: bool = False


class ContractIndex:
    """The catalog flattened into dict look-ups for the hot path."""

    def __init__(self, catalog: Catalog) -> None:
        self.types: dict[str, dict[str, tuple[bool, str | None]]] = {
            sector.id: {t.id: (t.measurement, t.unit) for t in sector.event_types}
            for sector in catalog.sectors
        }
        self.source_sector: dict[str, str] = {
            source.id: sector.id for sector in catalog.sectors for source in sector.sources
        }
        self.districts: frozenset[str] = frozenset(d.code for d in catalog.districts)


def format_time(epoch: float) -> str:
    """Epoch seconds → RFC 3339 in UTC with milliseconds."""
    stamp = datetime.fromtimestamp(epoch, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_record(
    raw: bytes,
    index: ContractIndex,
    *,
    now: float | None = None,
    key: str | None = None,
) -> RecordResult:
    """Decode a record and validate each event; `key` (the record key) must be each source."""
    now = time.time() if now is None else now
    result = RecordResult()
    if len(raw) > MAX_RECORD_BYTES:
        result.rejections.append(
            Rejection("too_large", None, f"record of {len(raw)} bytes > {MAX_RECORD_BYTES}", key)
        )
        return result
    try:
        # UTF-8 only, as the contract says (json.loads(bytes) would also take UTF-16/32, and
        # UTF-8-encoded surrogates). Costs what json.loads(bytes) pays to decode anyway.
        text = raw.decode()
    except UnicodeDecodeError as exc:
        detail = f"the record is not UTF-8 ({exc.reason} at byte {exc.start})"
        result.rejections.append(Rejection("bad_json", None, detail, key))
        return result
    # Only a record over the event limit can hold an event over it: such a batch is read item
    # by item, so each event's size is its text as sent (what the SDK measures).
    split = (
        _array_items(text, ascii_only=len(text) == len(raw)) if len(raw) > MAX_EVENT_BYTES else None
    )
    decoded: Any
    sizes: list[int] | None = None
    if split is not None:
        decoded, sizes = split
    else:
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError) as exc:
            result.rejections.append(Rejection("bad_json", None, str(exc)[:200], key))
            return result
    # Only a record whose text has a suspicious escape or literal is searched, event by event.
    suspect = (
        (b"\\" in raw and _ESCAPE.search(text) is not None)
        or (b"N" in raw and b"NaN" in raw)
        or (b"I" in raw and b"Infinity" in raw)
    )
    if type(decoded) is dict:
        problem = event_problem(decoded) if suspect else None
        outcome = (
            _reject(decoded, index, key, None, *problem)
            if problem is not None
            else validate_event(decoded, index, now=now, key=key, size=len(raw), check_text=False)
        )
        if type(outcome) is Event:
            result.events.append(outcome)
        else:
            result.rejections.append(outcome)  # type: ignore[arg-type]
        return result
    if type(decoded) is not list:
        result.rejections.append(
            Rejection("not_object", None, "expected an object or an array", key)
        )
        return result
    result.batch = True
    if not decoded:
        result.rejections.append(Rejection("empty_batch", None, "a batch needs events", key))
        return result
    if len(decoded) > MAX_BATCH_EVENTS:
        result.rejections.append(
            Rejection("batch_too_large", None, f"{len(decoded)} events > {MAX_BATCH_EVENTS}", key)
        )
        return result
    batch_source = key
    events, rejections = result.events, result.rejections
    for position, item in enumerate(decoded):
        if type(item) is not dict:
            rejections.append(Rejection("not_object", position, "expected an object", batch_source))
            continue
        problem = event_problem(item) if suspect else None
        if problem is not None:
            rejections.append(_reject(item, index, batch_source, position, *problem))
            continue
        size = sizes[position] if sizes is not None else 0
        outcome = validate_event(
            item, index, now=now, key=batch_source, size=size, position=position, check_text=False
        )
        if type(outcome) is Event:
            events.append(outcome)
            if batch_source is None:
                batch_source = outcome.source
        else:
            rejections.append(outcome)  # type: ignore[arg-type]
    return result


def _array_items(text: str, *, ascii_only: bool) -> tuple[list[Any], list[int]] | None:
    """The items of `text` when it is one JSON array, each with the UTF-8 size of its text as
    written; None when it is anything else (then json.loads says what, or reads the object).

    Reads as json.loads does (the same decoder, item by item), so the items are the same.
    One difference: each item starts one level down Python's stack from where json.loads
    would be, so text nested ~1,000 deep (Python's recursion limit, which moves with the
    caller's stack anyway) can be read here two levels deeper than json.loads reads it.
    """
    at = _past_space(text, 0)
    if not text.startswith("[", at):
        return None
    items: list[Any] = []
    sizes: list[int] = []
    at = _past_space(text, at + 1)
    if text.startswith("]", at):
        at += 1
    else:
        while True:
            try:
                item, end = _DECODER.raw_decode(text, at)
            except (ValueError, RecursionError):
                return None
            items.append(item)
            sizes.append(end - at if ascii_only else len(text[at:end].encode()))
            after = _NEXT.match(text, end)
            if after is None:
                return None
            at = after.end()
            if text[at - 1] == "]":
                break
    if _past_space(text, at) != len(text):
        return None
    return items, sizes


def _past_space(text: str, at: int) -> int:
    found = _SPACE.match(text, at)
    return found.end() if found is not None else at


def event_problem(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) when an envelope field holds text PostgreSQL cannot store (NUL, a
    lone surrogate) or a non-finite number anywhere inside (`data` included); else None.

    Fields outside the envelope are not searched: they are refused as unknown anyway.
    """
    for name, value in obj.items():
        if name not in ENVELOPE_FIELDS:
            continue
        found = _scan(value)
        if found == "bad_text":
            return (
                f"bad_text:{name}",
                "text must be Unicode without NUL (U+0000) or unpaired surrogates (U+D800-U+DFFF)",
            )
        if found == "not_finite":
            return "not_finite", f"`{name}` holds NaN or Infinity"
    return None


def _scan(value: Any) -> str | None:
    """ "bad_text" or "not_finite" for the first such value inside `value`, else None.

    A loop with its own stack: JSON nests deeper than Python's recursion limit allows.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if _BAD_TEXT.search(item) is not None:
                return "bad_text"
        elif kind is float:
            if not math.isfinite(item):
                return "not_finite"
        elif kind is dict:
            for name, inner in item.items():
                if type(name) is str and _BAD_TEXT.search(name) is not None:
                    return "bad_text"
                stack.append(inner)
        elif kind is list:
            stack.extend(item)
    return None


def validate_event(
    obj: dict[str, Any],
    index: ContractIndex,
    *,
    now: float,
    key: str | None = None,
    size: int = 0,
    position: int | None = None,
    check_text: bool = True,
) -> Event | Rejection:
    """Check one decoded event against the envelope and the catalog.

    `check_text=False` skips the search for bad text and non-finite numbers inside the
    fields (`event_problem`): `parse_record` does it only for records that can hold them.
    """
    source = obj.get("source")
    event_id = obj.get("event_id")
    if size > MAX_EVENT_BYTES:
        return _reject(
            obj, index, key, position, "too_large", f"event of {size} bytes > {MAX_EVENT_BYTES}"
        )
    if check_text:
        problem = event_problem(obj)
        if problem is not None:
            return _reject(obj, index, key, position, *problem)
    if (
        event_id is None
        or source is None
        or obj.get("sector") is None
        or obj.get("type") is None
        or obj.get("occurred_at") is None
    ):
        missing = next(name for name in _REQUIRED if obj.get(name) is None)
        return _reject(obj, index, key, position, f"missing_field:{missing}")
    if not ENVELOPE_FIELDS.issuperset(obj):
        unknown = sorted(str(k) for k in obj if k not in ENVELOPE_FIELDS)
        return _reject(
            obj,
            index,
            key,
            position,
            f"unknown_field:{_name_in_reason(unknown[0])}",
            "allowed: " + ", ".join(sorted(ENVELOPE_FIELDS)),
        )
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_EVENT_ID:
        return _reject(
            obj,
            index,
            key,
            position,
            "bad_field:event_id",
            f"a string of 1..{MAX_EVENT_ID} characters",
        )
    if type(source) is not str:
        return _reject(obj, index, key, position, "bad_field:source", "a string")
    sector = obj["sector"]
    types = index.types.get(sector) if type(sector) is str else None
    if types is None:
        return _reject(
            obj,
            index,
            key,
            position,
            "unknown_sector",
            f"{sector!r} is not a sector of the catalog",
        )
    type_id = obj["type"]
    spec = types.get(type_id) if type(type_id) is str else None
    if spec is None:
        return _reject(
            obj,
            index,
            key,
            position,
            "unknown_type",
            f"{type_id!r} is not an event type of {sector}",
        )
    registered = index.source_sector.get(source)
    if registered is None:
        return _reject(
            obj, index, key, position, "unknown_source", f"{source!r} is not a registered source"
        )
    if registered != sector:
        return _reject(
            obj,
            index,
            key,
            position,
            "source_sector_mismatch",
            f"{source} publishes for {registered}, not {sector}",
        )
    if key is not None and key != source:
        return _reject(
            obj,
            index,
            key,
            position,
            "source_mismatch",
            f"record of source {key} carries an event of {source}",
        )
    stamp = obj["occurred_at"]
    if type(stamp) is not str:
        return _reject(obj, index, key, position, "bad_timestamp", "an RFC 3339 string with offset")
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return _reject(
            obj, index, key, position, "bad_timestamp", f"{stamp[:40]!r} is not RFC 3339"
        )
    if parsed.tzinfo is None or len(stamp) < 20 or stamp[10] not in "Tt ":
        return _reject(
            obj,
            index,
            key,
            position,
            "bad_timestamp",
            "RFC 3339 needs a date, a time and an offset",
        )
    occurred_at = parsed.timestamp()
    if occurred_at < 0.0:
        return _reject(
            obj, index, key, position, "bad_timestamp", f"{stamp} is before 1970-01-01T00:00:00Z"
        )
    if occurred_at > now + MAX_FUTURE_SECONDS:
        return _reject(
            obj, index, key, position, "future_timestamp", f"{stamp} is more than 5 min ahead"
        )
    measurement, unit = spec
    value = obj.get("value")
    if value is None:
        if measurement:
            return _reject(
                obj, index, key, position, "missing_field:value", f"{type_id} is a measurement"
            )
    else:
        value_type = type(value)
        if value_type is not float and value_type is not int:
            return _reject(obj, index, key, position, "bad_field:value", "a number")
        if value_type is float and not math.isfinite(value):
            return _reject(obj, index, key, position, "not_finite", "value is NaN or infinite")
        if value_type is int and abs(value) > 2**53:
            return _reject(
                obj, index, key, position, "not_finite", "value is beyond double precision"
            )
    given_unit = obj.get("unit")
    if given_unit is not None and given_unit != unit:
        return _reject(
            obj, index, key, position, "unit_mismatch", f"{type_id} is measured in {unit!r}"
        )
    district = obj.get("district")
    if district is not None and (type(district) is not str or district not in index.districts):
        return _reject(
            obj,
            index,
            key,
            position,
            "unknown_district",
            f"{district!r} is not an area code of the catalog",
        )
    data = obj.get("data")
    if data is not None and type(data) is not dict:
        return _reject(obj, index, key, position, "bad_field:data", "an object")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or type(version) is not int:
        return _reject(
            obj,
            index,
            key,
            position,
            "unsupported_schema_version",
            f"this platform reads version {SCHEMA_VERSION}",
        )
    return Event(
        event_id,
        source,
        sector,
        type_id,
        occurred_at,
        None if value is None else float(value),
        given_unit,
        district,
        data,
    )


def _reject(
    obj: dict[str, Any],
    index: ContractIndex,
    key: str | None,
    position: int | None,
    reason: str,
    detail: str = "",
) -> Rejection:
    """A Rejection naming the body's source when it is a registered one (else the record
    key), and its event id when that is one the contract allows (else None)."""
    source = obj.get("source")
    event_id = obj.get("event_id")
    return Rejection(
        reason,
        position,
        detail,
        source if type(source) is str and source in index.source_sector else key,
        event_id
        if type(event_id) is str
        and 0 < len(event_id) <= MAX_EVENT_ID
        and _BAD_TEXT.search(event_id) is None
        else None,
    )


def _name_in_reason(name: str) -> str:
    """A client's field name as it may appear in a reason code: short, clean text."""
    if len(name) > _MAX_NAME_IN_REASON or _BAD_TEXT.search(name) is not None:
        return "?"
    return name
