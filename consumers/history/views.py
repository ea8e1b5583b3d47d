"""Rows of the history queries as the JSON the API answers with, and the latest-KPI view
shared by the API and `ioc kpi` (pure)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from consumers.history.params import format_time
from consumers.history.queries import KpiEntry

__all__ = [
    "KpiLatest",
    "LatestGroup",
    "alert_item",
    "bucket_item",
    "dead_letter_item",
    "event_item",
    "latest_view",
    "point_item",
    "target_status",
]

Row = Sequence[Any]
TargetStatus = Literal["met", "missed"]


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def point_item(row: Row) -> dict[str, Any]:
    """series, grp, window_start, window_end, value, sample_count, final, revision, emitted_at."""
    return {
        "start": format_time(row[2]),
        "end": format_time(row[3]),
        "value": row[4],
        "count": int(row[5]),
        "final": bool(row[6]),
        "revision": int(row[7]),
        "emitted_at": format_time(row[8]),
    }


def bucket_item(row: Row, width: float) -> dict[str, Any]:
    """series, grp, bucket, points, avg, min, max, sum, last, samples."""
    return {
        "start": format_time(row[2]),
        "end": format_time(_seconds(row[2]) + width),
        "points": int(row[3]),
        "avg": row[4],
        "min": row[5],
        "max": row[6],
        "sum": row[7],
        "last": row[8],
        "samples": int(row[9]),
    }


def event_item(row: Row) -> dict[str, Any]:
    """An event with its Kafka position (topic, partition, offset, index in the record)."""
    data = row[8]
    if isinstance(data, str):  # jsonb arrives decoded; a text cast would not
        data = json.loads(data)
    return {
        "event_id": row[1],
        "source": row[0],
        "sector": row[2],
        "type": row[3],
        "occurred_at": format_time(row[4]),
        "value": row[5],
        "unit": row[6],
        "district": row[7],
        "data": data,
        "kafka": {"topic": row[9], "partition": row[10], "offset": row[11], "index": row[12]},
        "published_at": format_time(row[13]),
    }


def alert_item(row: Row) -> dict[str, Any]:
    """The AlertTransition record as published on ioc.alerts."""
    record = row[3]
    return dict(json.loads(record) if isinstance(record, str) else record)


def dead_letter_item(row: Row) -> dict[str, Any]:
    """received_at, dl_partition, dl_offset, reason, detail, source, event_id, topic,
    partition, offset, idx, original (first bytes), original size, sender."""
    original: bytes | None = None if row[11] is None else bytes(row[11])
    size = None if row[12] is None else int(row[12])
    return {
        "received_at": format_time(row[0]),
        "reason": row[3],
        "detail": row[4],
        "sender": row[13],
        "source": row[5],
        "event_id": row[6],
        "kafka": {"topic": row[7], "partition": row[8], "offset": row[9], "index": row[10]},
        "deadletter": {"partition": row[1], "offset": row[2]},
        "original_b64": None if original is None else base64.b64encode(original).decode(),
        "original_bytes": size,
        "original_truncated": original is not None and size is not None and size > len(original),
    }


def target_status(entry: KpiEntry, value: float | None) -> TargetStatus | None:
    """Whether a value meets the KPI's target; None without a target or a value."""
    target = entry.kpi.target
    if target is None or value is None:
        return None
    met = value >= target.value if target.direction == "at_least" else value <= target.value
    return "met" if met else "missed"


@dataclass(frozen=True, slots=True)
class LatestGroup:
    """The latest point of one series (one group of a KPI)."""

    group: str
    series: str
    window_start: float
    window_end: float
    value: float | None
    count: int
    final: bool
    revision: int
    emitted_at: float
    age: float  # seconds since emitted_at
    status: TargetStatus | None

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "series": self.series,
            "start": format_time(self.window_start),
            "end": format_time(self.window_end),
            "value": self.value,
            "count": self.count,
            "final": self.final,
            "revision": self.revision,
            "emitted_at": format_time(self.emitted_at),
            "age_seconds": round(self.age, 3),
            "target_status": self.status,
        }


@dataclass(frozen=True, slots=True)
class KpiLatest:
    """A KPI with its catalog names, unit and target, and the latest point of each group."""

    entry: KpiEntry
    groups: tuple[LatestGroup, ...]

    @property
    def additive(self) -> bool:
        """Whether values of groups add up to the KPI's total (counts and sums)."""
        return self.entry.kpi.aggregation in ("count", "sum", "rate_per_min")

    def summary(self) -> tuple[float | None, float | None, float | None]:
        """(total or None, min, max) over the groups' latest values."""
        values = [g.value for g in self.groups if g.value is not None]
        if not values:
            return None, None, None
        total = sum(values) if self.additive else None
        return total, min(values), max(values)

    @property
    def missed(self) -> int:
        return sum(1 for g in self.groups if g.status == "missed")

    def to_json(self) -> dict[str, Any]:
        kpi = self.entry.kpi
        return {
            "kpi": self.entry.key,
            "sector": self.entry.sector.id,
            "name_vi": kpi.name_vi,
            "name_en": kpi.name_en,
            "unit": kpi.unit,
            "aggregation": kpi.aggregation,
            "window_seconds": self.entry.spec.window.size,
            "group_by": self.entry.spec.group_by,
            "headline": kpi.headline,
            "target": None
            if kpi.target is None
            else {"value": kpi.target.value, "direction": kpi.target.direction},
            "groups": [g.to_json() for g in self.groups],
        }


def latest_view(entries: Sequence[KpiEntry], rows: Sequence[Row], *, now: float) -> list[KpiLatest]:
    """One KpiLatest per catalog KPI (in catalog order; no point: no groups) from rows of
    `latest_points_query` (series, kpi, grp, window_start, window_end, value, sample_count,
    final, revision, emitted_at)."""
    by_kpi: dict[str, list[LatestGroup]] = {}
    wanted = {e.key: e for e in entries}
    for row in rows:
        entry = wanted.get(row[1])
        if entry is None:
            continue  # a KPI no longer in the catalog
        value = None if row[5] is None else float(row[5])
        emitted = _seconds(row[9])
        by_kpi.setdefault(entry.key, []).append(
            LatestGroup(
                group=row[2], series=row[0], window_start=_seconds(row[3]),
                window_end=_seconds(row[4]), value=value, count=int(row[6]),
                final=bool(row[7]), revision=int(row[8]), emitted_at=emitted,
                age=max(0.0, now - emitted), status=target_status(entry, value),
            )
        )  # fmt: skip
    return [
        KpiLatest(e, tuple(sorted(by_kpi.get(e.key, []), key=lambda g: g.group))) for e in entries
    ]
