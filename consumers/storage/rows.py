"""Kafka records in, table rows out (pure: no Kafka, no database).

Every topic the writer reads has its decoder here. A record that breaks its contract never
stops the writer: it is counted in `RowBatch.skipped` (or, for events, in `rejected` with the
envelope's reason code) and left out; `RecordDecoder.add` returns why, for a *poison* record
(one that is not a record of its topic's contract at all) so the writer can count and log it.

Text: events never hold NUL or unpaired surrogates (the envelope refuses them), so theirs is
stored exactly, JSON escapes included. What reaches the writer from elsewhere (a dead letter's
record key, detail or body-named source) is only metadata of a refused record whose bytes are
kept exactly in `original`: there a NUL or a surrogate becomes U+FFFD and over-long text is
cut, so that no such record can make the database refuse a batch.

Rows are deduplicated within a batch the way the tables deduplicate across batches (highest
KPI revision, highest alert seq, …), because one `INSERT … ON CONFLICT DO UPDATE` may not
touch a row twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from foundation.contract.alerts import AlertTransition, RecordError
from foundation.contract.envelope import ContractIndex, parse_record
from foundation.contract.kpi import (
    FreshnessChange,
    KpiPoint,
    SectorSeen,
    decode_kpi_topic_record,
)
from foundation.contract.topics import ALERTS, DEADLETTER, EVENTS_PREFIX, KPI

__all__ = [
    "ALERT_CURRENT_COLUMNS",
    "ALERT_TRANSITION_COLUMNS",
    "DEAD_LETTER_COLUMNS",
    "EVENT_COLUMNS",
    "FRESHNESS_COLUMNS",
    "KPI_POINT_COLUMNS",
    "SECTOR_SEEN_COLUMNS",
    "RecordDecoder",
    "RowBatch",
]

# Column order of each table's rows (and of its COPY).
EVENT_COLUMNS: Final = (
    "source", "event_id", "sector", "type", "occurred_at", "value", "unit", "district", "data",
    "schema_version", "topic", "partition", '"offset"', "idx", "published_at",
)  # fmt: skip
KPI_POINT_COLUMNS: Final = (
    "series", "kpi", "sector", "grp", "window_start", "window_end", "value", "sample_count",
    "final", "revision", "emitted_at", "generation",
)  # fmt: skip
FRESHNESS_COLUMNS: Final = (
    "source", "sector", "state", "last_seen", "changed_at", "stale_after",
)  # fmt: skip
SECTOR_SEEN_COLUMNS: Final = ("sector", "last_seen", "emitted_at")
ALERT_TRANSITION_COLUMNS: Final = (
    "fingerprint", "seq", "at", "transition", "state", "severity", "sector", "rule", "actor",
    "record",
)  # fmt: skip
ALERT_CURRENT_COLUMNS: Final = (
    "fingerprint", "seq", "state", "severity", "sector", "rule", "started_at", "updated_at",
    "record",
)  # fmt: skip
DEAD_LETTER_COLUMNS: Final = (
    "reason", "detail", "source", "event_id", "topic", "partition", '"offset"', "idx",
    "received_at", "original", "dl_partition", "dl_offset", "sender",
)  # fmt: skip

# Event-topic rejections of a whole record that is no record of the contract at all.
_POISON_EVENTS: Final = frozenset({"bad_json", "not_object", "empty_batch", "batch_too_large"})
# Longest text kept in a column that is indexed or a key (a btree entry must fit in a page).
_MAX_KEY_TEXT: Final = 256
_MAX_DETAIL_TEXT: Final = 4096
# A record dated further ahead than this is not one the platform wrote (every producer
# stamps its records with its clock): such a row would create partitions far in the future.
_MAX_AHEAD: Final = 86_400.0
_BAD_TEXT: Final = re.compile("[\x00\ud800-\udfff]")

Row = tuple[Any, ...]


class _BadRecord(Exception):
    """A record that breaks its topic's contract; the argument is the reason code."""


@dataclass(slots=True)
class RowBatch:
    """The rows of a batch of records, per table, ready to COPY."""

    events: list[Row] = field(default_factory=list)
    kpi_points: dict[tuple[str, datetime], Row] = field(default_factory=dict)
    freshness: dict[str, Row] = field(default_factory=dict)
    sector_seen: dict[str, Row] = field(default_factory=dict)
    alert_transitions: dict[tuple[str, int], Row] = field(default_factory=dict)
    alerts_current: dict[str, Row] = field(default_factory=dict)
    dead_letters: dict[tuple[int, int, datetime], Row] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)  # events refused by the envelope
    skipped: Counter[str] = field(default_factory=Counter)  # other records left out, by reason
    records: int = 0

    @property
    def rows(self) -> int:
        return (
            len(self.events) + len(self.kpi_points) + len(self.freshness) + len(self.sector_seen)
            + len(self.alert_transitions) + len(self.dead_letters)
        )  # fmt: skip

    def tables(self) -> dict[str, list[Row]]:
        """Rows by table name (alerts_current rides along with alert_transitions)."""
        return {
            "events": self.events,
            "kpi_points": list(self.kpi_points.values()),
            "source_freshness": list(self.freshness.values()),
            "sector_last_seen": list(self.sector_seen.values()),
            "alert_transitions": list(self.alert_transitions.values()),
            "alerts_current": list(self.alerts_current.values()),
            "dead_letters": list(self.dead_letters.values()),
        }

    def split(self) -> list[RowBatch]:
        """One batch per row (alerts_current with its transition), to find a row the
        database refuses without losing its neighbours."""
        out: list[RowBatch] = [RowBatch(events=[row]) for row in self.events]
        out += [RowBatch(kpi_points={k: r}) for k, r in self.kpi_points.items()]
        out += [RowBatch(freshness={k: r}) for k, r in self.freshness.items()]
        out += [RowBatch(sector_seen={k: r}) for k, r in self.sector_seen.items()]
        for key, row in self.alert_transitions.items():
            single = RowBatch(alert_transitions={key: row})
            current = self.alerts_current.get(key[0])
            if current is not None and current[1] == key[1]:
                single.alerts_current[key[0]] = current
            out.append(single)
        out += [RowBatch(dead_letters={k: r}) for k, r in self.dead_letters.items()]
        return out

    def drop_expired(self, horizons: Mapping[str, datetime]) -> int:
        """Leave out rows older than their table's retention horizon; how many were left out.

        Such rows would be dropped at the next maintenance anyway, and on the plain path
        they would need a partition that retention has already removed.
        """
        dropped = 0
        if "events" in horizons:
            horizon = horizons["events"]
            kept = [row for row in self.events if row[4] >= horizon]
            dropped += len(self.events) - len(kept)
            self.events = kept
        if "kpi_points" in horizons:
            horizon = horizons["kpi_points"]
            old = [k for k, row in self.kpi_points.items() if row[4] < horizon]
            for k in old:
                del self.kpi_points[k]
            dropped += len(old)
        if "dead_letters" in horizons:
            horizon = horizons["dead_letters"]
            old_dl = [k for k, row in self.dead_letters.items() if row[8] < horizon]
            for k_dl in old_dl:
                del self.dead_letters[k_dl]
            dropped += len(old_dl)
        if dropped:
            self.skipped["past_retention"] += dropped
        return dropped


class RecordDecoder:
    """Turns records of the writer's topics into rows of a RowBatch."""

    def __init__(self, index: ContractIndex, *, clock: Callable[[], float] = time.time) -> None:
        self._index = index
        self._clock = clock

    def add(
        self,
        batch: RowBatch,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
    ) -> str | None:
        """Decode one record into batch; a bad record is counted, never raised.

        Returns the reason when the record is poison (not a record of its topic's contract),
        else None.
        """
        batch.records += 1
        if topic.startswith(EVENTS_PREFIX):
            return self._add_events(
                batch, topic, partition, offset, key, value or b"", timestamp_ms
            )
        latest = self._clock() + _MAX_AHEAD
        try:
            if topic == KPI:
                _add_kpi(batch, value, latest)
            elif topic == ALERTS:
                _add_alert(batch, _object(value, "alert"), latest)
            elif topic == DEADLETTER:
                _add_dead_letter(batch, _object(value, "deadletter"), partition, offset, latest)
            else:
                raise _BadRecord("unknown_topic")
        except _BadRecord as exc:
            reason = str(exc.args[0])
            batch.skipped[reason] += 1
            return reason
        return None

    def _add_events(
        self,
        batch: RowBatch,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        timestamp_ms: int,
    ) -> str | None:
        source_key = key.decode("utf-8", "replace") if key else None
        result = parse_record(value, self._index, now=self._clock(), key=source_key)
        for rejection in result.rejections:
            batch.rejected[rejection.reason] += 1
        if not result.events:
            whole = result.rejections[0] if len(result.rejections) == 1 else None
            if whole is not None and whole.position is None and whole.reason in _POISON_EVENTS:
                return f"events:{whole.reason}"
            return None
        published = _time(timestamp_ms / 1000.0) if timestamp_ms >= 0 else _time(self._clock())
        if result.batch:
            # Events keep their place in the batch: the places no rejection took, in order.
            refused = {r.position for r in result.rejections}
            positions = [i for i in range(len(result.events) + len(refused)) if i not in refused]
        else:
            positions = [None]  # type: ignore[list-item]
        for event, position in zip(result.events, positions, strict=False):
            try:
                occurred = _time(event.occurred_at)
            except _BadRecord:
                batch.rejected["bad_timestamp"] += 1
                continue
            batch.events.append(
                (
                    _text(event.source), _text(event.event_id), event.sector, event.type,
                    occurred, event.value, event.unit, event.district, _json(event.data),
                    event.schema_version, topic, partition, offset, position, published,
                )
            )  # fmt: skip
        return None


def _object(value: bytes | None, kind: str) -> dict[str, Any]:
    try:
        decoded = json.loads(value or b"")
    except (ValueError, RecursionError) as exc:
        raise _BadRecord(f"{kind}:bad_json") from exc
    if type(decoded) is not dict:
        raise _BadRecord(f"{kind}:not_object")
    return decoded


def _add_kpi(batch: RowBatch, value: bytes | None, latest: float) -> None:
    """A record of ioc.kpi, through its codec; the newest of each key in the batch wins."""
    try:
        record = decode_kpi_topic_record(value)
    except RecordError as exc:
        raise _BadRecord(f"kpi:{exc}") from exc
    if isinstance(record, KpiPoint):
        if record.window_start > latest:
            raise _BadRecord("kpi:bad_field:window_start")
        row: Row = (
            _identifier(record, "series", "kpi"), _identifier(record, "kpi", "kpi"),
            _identifier(record, "sector", "kpi"), _identifier(record, "group", "kpi"),
            _time(record.window_start), _time(record.window_end), record.value, record.count,
            record.final, record.revision, _time(record.emitted_at), record.generation,
        )  # fmt: skip
        key = (row[0], row[4])
        held = batch.kpi_points.get(key)
        if held is None or (held[11], held[9]) < record.ordering:
            batch.kpi_points[key] = row
    elif isinstance(record, FreshnessChange):
        fresh_row: Row = (
            _identifier(record, "source", "freshness"),
            _identifier(record, "sector", "freshness"),
            record.state, None if record.last_seen is None else _time(record.last_seen),
            _time(record.changed_at), record.stale_after,
        )  # fmt: skip
        held = batch.freshness.get(fresh_row[0])
        if held is None or held[4] <= fresh_row[4]:
            batch.freshness[fresh_row[0]] = fresh_row
    elif isinstance(record, SectorSeen):
        seen_row: Row = (
            _identifier(record, "sector", "sector_seen"),
            _time(record.last_seen),
            _time(record.emitted_at),
        )
        held = batch.sector_seen.get(seen_row[0])
        if held is None or held[1] < seen_row[1]:
            batch.sector_seen[seen_row[0]] = seen_row
    # A data gap is shown by the gateway; the writer has no table for it.


def _identifier(record: Any, name: str, kind: str) -> str:
    value: str = getattr(record, name)
    if len(value) > _MAX_KEY_TEXT:
        raise _BadRecord(f"{kind}:bad_field:{name}")  # no identifier the platform makes
    return _text(value, _MAX_KEY_TEXT)


def _add_alert(batch: RowBatch, record: dict[str, Any], latest: float) -> None:
    try:
        transition = AlertTransition.from_json(record)
    except RecordError as exc:
        raise _BadRecord("alert:" + str(exc).split(":", 1)[0]) from exc
    if transition.at > latest:
        raise _BadRecord("alert:bad_field:at")
    document = _json(transition.to_json())
    at = _time(transition.at)
    fingerprint = _text(transition.fingerprint)
    sector, rule = _text(transition.sector), _text(transition.rule)
    batch.alert_transitions[(fingerprint, transition.seq)] = (
        fingerprint, transition.seq, at, transition.transition, transition.state,
        transition.severity, sector, rule,
        None if transition.actor is None else _text(transition.actor), document,
    )  # fmt: skip
    held = batch.alerts_current.get(fingerprint)
    if held is None or held[1] < transition.seq:
        batch.alerts_current[fingerprint] = (
            fingerprint, transition.seq, transition.state, transition.severity, sector, rule,
            _time(transition.started_at), at, document,
        )  # fmt: skip


def _add_dead_letter(
    batch: RowBatch, record: dict[str, Any], dl_partition: int, dl_offset: int, latest: float
) -> None:
    original_b64 = record.get("original_b64")
    original: bytes | None = None
    if original_b64 is not None:
        if type(original_b64) is not str:
            raise _BadRecord("deadletter:bad_field:original_b64")
        try:
            original = base64.b64decode(original_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _BadRecord("deadletter:bad_field:original_b64") from exc
    received = _time(_number(record, "received_at", "deadletter", latest))
    source = _optional_string(record, "source", "deadletter")
    # The sender: the refused record's key (the worker adds it); a dead letter written before
    # it did names only the source, which was then the key or the body's source.
    sender = _optional_string(record, "sender", "deadletter") if "sender" in record else source
    row = (
        _string(record, "reason", "deadletter"),
        _optional_string(record, "detail", "deadletter", _MAX_DETAIL_TEXT),
        source,
        _optional_string(record, "event_id", "deadletter"),
        _optional_string(record, "topic", "deadletter"),
        _optional_integer(record, "partition", "deadletter"),
        _optional_integer(record, "offset", "deadletter"),
        _optional_integer(record, "index", "deadletter"),
        received,
        original,
        dl_partition,
        dl_offset,
        sender,
    )
    batch.dead_letters[(dl_partition, dl_offset, received)] = row


# Field readers: a wrong type is the record's fault, reported as <kind>:bad_field:<name>.


def _string(record: dict[str, Any], name: str, kind: str, limit: int = _MAX_KEY_TEXT) -> str:
    value = record.get(name)
    if type(value) is not str:
        raise _BadRecord(f"{kind}:bad_field:{name}")
    if kind != "deadletter" and len(value) > limit:
        raise _BadRecord(f"{kind}:bad_field:{name}")  # no identifier the platform makes
    return _text(value, limit)


def _optional_string(
    record: dict[str, Any], name: str, kind: str, limit: int = _MAX_KEY_TEXT
) -> str | None:
    return None if record.get(name) is None else _string(record, name, kind, limit)


def _number(record: dict[str, Any], name: str, kind: str, latest: float = math.inf) -> float:
    value: Any = record.get(name)
    if type(value) not in (int, float) or not math.isfinite(value) or value > latest:
        raise _BadRecord(f"{kind}:bad_field:{name}")
    return float(value)


def _integer(record: dict[str, Any], name: str, kind: str) -> int:
    value = record.get(name)
    if type(value) is not int or not -(2**63) <= value < 2**63:
        raise _BadRecord(f"{kind}:bad_field:{name}")
    return value


def _optional_integer(record: dict[str, Any], name: str, kind: str) -> int | None:
    return None if record.get(name) is None else _integer(record, name, kind)


def _time(epoch: float) -> datetime:
    try:
        return datetime.fromtimestamp(epoch, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _BadRecord("bad_timestamp") from exc


def _text(value: str, limit: int | None = None) -> str:
    """Text PostgreSQL can store: a NUL or an unpaired surrogate becomes U+FFFD; cut at limit.

    Only text from outside the envelope gets here with either (see the module docstring).
    """
    if _BAD_TEXT.search(value) is not None:
        value = _BAD_TEXT.sub("\ufffd", value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def _json(document: Any) -> str | None:
    """The document as jsonb text, exactly (the six characters `\\u0000` included).

    jsonb refuses NaN/Infinity and a real NUL; the envelope lets neither through, so this
    only matters for records from elsewhere: a real NUL becomes U+FFFD, NaN/Infinity null.
    """
    if document is None:
        return None
    try:
        text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # NaN, Infinity, or an unpaired surrogate (not encodable as UTF-8)
        return _json(_storable(document))
    if "\\u0000" in text:  # a real NUL, or a backslash before "u0000" in the text: look
        cleaned = _storable(document)
        if cleaned != document:
            return _json(cleaned)
    return text


def _storable(document: Any) -> Any:
    """document with NaN/Infinity as null and NUL/surrogates as U+FFFD, keys included."""
    if isinstance(document, float):
        return document if math.isfinite(document) else None
    if isinstance(document, str):
        return _text(document)
    if isinstance(document, dict):
        return {_text(str(k)): _storable(v) for k, v in document.items()}
    if isinstance(document, list | tuple):
        return [_storable(v) for v in document]
    return document
