"""The records on `ioc.kpi`: KPI points, freshness changes, sector last-seen, data gaps.

One typed codec per kind, used by every producer and reader of the topic (the worker
writes them; the writer, the gateway and the alert engine read them). Pure: no I/O.

A KPI point is one emission of one window of one series (key: the series). Points of a
window are ordered by `(generation, revision)`: `revision` grows with each emission, and
`generation` is the broker epoch's generation (its creation time in ms), so a point of a
later epoch (after the embedded broker was restarted) supersedes every point of an earlier
one even though its revision counter may have started again. Every number is finite;
`value` is null only when the window holds no event, and `overflow` marks a value at the
edge of the float range (a sum that saturated).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from foundation.contract.alerts import RecordError

__all__ = [
    "KPI_TOPIC_KINDS",
    "NO_GROUP",
    "DataGap",
    "FreshnessChange",
    "FreshnessState",
    "KpiPoint",
    "KpiTopicRecord",
    "SectorSeen",
    "decode_kpi_topic_record",
    "encode_record",
    "series_key",
]

NO_GROUP = "*"  # the group of a KPI without group-by, and of events lacking the group field
FreshnessState = Literal["fresh", "stale"]


def series_key(kpi_key: str, group: str) -> str:
    """The key of a KPI series: `<sector>.<kpi id>|<group>`."""
    return f"{kpi_key}|{group}"


def encode_record(record: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; refuses NaN and Infinity (at the producer, not the reader)."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class KpiPoint:
    """One emission of a window of a series; `(series, window_start)` names the window."""

    series: str
    kpi: str  # `<sector>.<kpi id>`
    sector: str
    group: str
    window_start: float
    window_end: float
    value: float | None
    count: int
    final: bool
    revision: int
    emitted_at: float
    newest: float  # arrival time of the newest event included (latency measurement)
    generation: int = 0
    overflow: bool = False

    @property
    def ordering(self) -> tuple[int, int]:
        """Within a window, a point with a higher ordering supersedes."""
        return (self.generation, self.revision)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "kpi", "series": self.series, "kpi": self.kpi, "sector": self.sector,
            "group": self.group, "window_start": self.window_start, "window_end": self.window_end,
            "value": self.value, "count": self.count, "final": self.final,
            "revision": self.revision, "generation": self.generation,
            "overflow": self.overflow, "emitted_at": self.emitted_at, "newest": self.newest,
        }  # fmt: skip

    def encode(self) -> bytes:
        return encode_record(self.to_json())

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> KpiPoint:
        """RecordError with a reason when the record breaks the contract (checked in the
        order of the fields)."""
        series, kpi = _text(record, "series"), _text(record, "kpi")
        sector, group = _text(record, "sector"), _text(record, "group")
        window_start, window_end = _number(record, "window_start"), _number(record, "window_end")
        if "value" not in record:  # null is a value (no event in the window); absent is not
            raise RecordError("missing_field:value")
        point = cls(
            series=series,
            kpi=kpi,
            sector=sector,
            group=group,
            window_start=window_start,
            window_end=window_end,
            value=None if record["value"] is None else _number(record, "value"),
            count=_integer(record, "count", minimum=0),
            final=_boolean(record, "final"),
            revision=_integer(record, "revision", minimum=0),
            emitted_at=_number(record, "emitted_at"),
            newest=_number(record, "newest", 0.0),
            generation=_integer(record, "generation", 0, minimum=0),
            overflow=_boolean(record, "overflow", False),
        )
        if point.window_end <= point.window_start:
            raise RecordError("bad_field:window_start")  # not before its end
        return point


@dataclass(frozen=True, slots=True)
class FreshnessChange:
    """A source turned fresh or stale (or was first heard from); key `freshness|<source>`."""

    source: str
    sector: str
    state: FreshnessState
    last_seen: float | None
    changed_at: float
    stale_after: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "freshness", "source": self.source, "sector": self.sector,
            "state": self.state, "last_seen": self.last_seen, "changed_at": self.changed_at,
            "stale_after": self.stale_after,
        }  # fmt: skip

    def encode(self) -> bytes:
        return encode_record(self.to_json())

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> FreshnessChange:
        state = record.get("state")
        if state not in ("fresh", "stale"):
            raise RecordError("bad_field:state")
        last_seen = record.get("last_seen")
        return cls(
            source=_text(record, "source"),
            sector=_text(record, "sector"),
            state=state,
            last_seen=None if last_seen is None else _number(record, "last_seen"),
            changed_at=_number(record, "changed_at"),
            stale_after=_number(record, "stale_after"),
        )


@dataclass(frozen=True, slots=True)
class SectorSeen:
    """The latest arrival of any event of a sector; key `sector|<sector>`."""

    sector: str
    last_seen: float
    emitted_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "sector_seen", "sector": self.sector, "last_seen": self.last_seen,
            "emitted_at": self.emitted_at,
        }  # fmt: skip

    def encode(self) -> bytes:
        return encode_record(self.to_json())

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SectorSeen:
        return cls(
            sector=_text(record, "sector"),
            last_seen=_number(record, "last_seen"),
            emitted_at=_number(record, "emitted_at"),
        )


@dataclass(frozen=True, slots=True)
class DataGap:
    """Records a checkpoint needed that the broker no longer had (retention, a lost broker):
    the sector's figures lack the events of that stretch; key `gap|<sector>`.

    `start`/`end` bound the affected time (the checkpoint's time and the first record after
    the gap); `records` counts the Kafka records lost (each may carry many events).
    """

    sector: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    records: int
    start: float
    end: float
    detected_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "data_gap", "sector": self.sector, "topic": self.topic,
            "partition": self.partition, "first_offset": self.first_offset,
            "last_offset": self.last_offset, "records": self.records, "start": self.start,
            "end": self.end, "detected_at": self.detected_at,
        }  # fmt: skip

    def encode(self) -> bytes:
        return encode_record(self.to_json())

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> DataGap:
        return cls(
            sector=_text(record, "sector"),
            topic=_text(record, "topic"),
            partition=_integer(record, "partition", minimum=0),
            first_offset=_integer(record, "first_offset", minimum=0),
            last_offset=_integer(record, "last_offset", minimum=0),
            records=_integer(record, "records", minimum=1),
            start=_number(record, "start"),
            end=_number(record, "end"),
            detected_at=_number(record, "detected_at"),
        )


KpiTopicRecord = KpiPoint | FreshnessChange | SectorSeen | DataGap
# The codec of each `kind` of ioc.kpi.
KPI_TOPIC_KINDS: dict[str, Any] = {
    "kpi": KpiPoint,
    "freshness": FreshnessChange,
    "sector_seen": SectorSeen,
    "data_gap": DataGap,
}


def decode_kpi_topic_record(value: bytes | None) -> KpiTopicRecord:
    """Any record of `ioc.kpi`, typed; RecordError (with a reason) for anything else."""
    try:
        record = json.loads(value or b"")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RecordError("bad_json") from exc
    if not isinstance(record, dict):
        raise RecordError("not_object")
    kind = KPI_TOPIC_KINDS.get(record.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise RecordError("unknown_kind")
    decoded: KpiTopicRecord = kind.from_json(record)
    return decoded


_MAX_TEXT = 512


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise RecordError(f"bad_field:{name}")
    return value


def _number(record: Mapping[str, Any], name: str, default: float | None = None) -> float:
    value = record.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"bad_field:{name}")
    try:
        number = float(value)
    except OverflowError as exc:  # an int beyond the float range
        raise RecordError(f"bad_field:{name}") from exc
    if not math.isfinite(number):
        raise RecordError(f"bad_field:{name}")
    return number


def _integer(
    record: Mapping[str, Any], name: str, default: int | None = None, *, minimum: int = -(2**63)
) -> int:
    value = record.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**63:
        raise RecordError(f"bad_field:{name}")
    return value


def _boolean(record: Mapping[str, Any], name: str, default: bool | None = None) -> bool:
    value = record.get(name, default)
    if not isinstance(value, bool):
        raise RecordError(f"bad_field:{name}")
    return value
