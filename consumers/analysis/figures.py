"""What the analysis workspace and the morning report compute from KPI buckets (pure).

A KPI is stored per series (one per area when it is grouped by district). Buckets (hourly
or daily: the history's `series_query`, from points or rollups) carry the mean, min, max and
last of the window values that started in them. The province's figure of a bucket combines
its areas the way the KPI aggregates: counts and sums add up, averages are weighted by
samples, min/max take the extreme, a p95 takes the worst area (an upper bound: percentiles
do not combine). A period's figure combines its buckets over time: the mean of the bucket
figures (min/max: the extreme; last: the latest). The share on target is the share of
buckets with data whose figure meets the target.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from foundation.contract.catalog import Kpi, Target

__all__ = [
    "ADDITIVE",
    "RANGES",
    "AreaFigure",
    "Bucket",
    "MapStatus",
    "PeriodFigure",
    "RangeSpec",
    "area_figures",
    "bucket_value",
    "buckets_from_rows",
    "combine_groups",
    "meets",
    "period_figure",
    "province_series",
]

ADDITIVE: Final = frozenset({"count", "sum", "rate_per_min", "distinct_count"})
MapStatus = Literal["met", "near", "missed", "nodata", "level0", "level1", "level2", "level3"]
NEAR: Final = 0.10  # within 10 % of the target on the wrong side: "near" (amber on the map)


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """A range the workspace offers: its length and the bucket it is drawn in."""

    seconds: float
    bucket: str
    width: float


RANGES: Final[dict[str, RangeSpec]] = {
    "24h": RangeSpec(86400.0, "1h", 3600.0),
    "7d": RangeSpec(7 * 86400.0, "1h", 3600.0),
    "30d": RangeSpec(30 * 86400.0, "1d", 86400.0),
    "quarter": RangeSpec(91 * 86400.0, "1d", 86400.0),
    "year": RangeSpec(365 * 86400.0, "1d", 86400.0),
}


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of one series: window values that started in [start, start + width)."""

    group: str
    start: float
    points: int
    avg: float | None
    min: float | None
    max: float | None
    last: float | None
    samples: int


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def buckets_from_rows(rows: Iterable[Sequence[Any]]) -> list[Bucket]:
    """Rows of a bucketed `series_query`: series, grp, bucket, points, avg, min, max, sum,
    last, samples."""
    out = []
    for row in rows:
        start = row[2].timestamp() if isinstance(row[2], datetime) else float(row[2])
        out.append(
            Bucket(
                group=str(row[1]),
                start=start,
                points=int(row[3]),
                avg=_num(row[4]),
                min=_num(row[5]),
                max=_num(row[6]),
                last=_num(row[8]),
                samples=int(row[9] or 0),
            )
        )
    return out


def bucket_value(aggregation: str, bucket: Bucket) -> float | None:
    """One series' figure for a bucket."""
    if aggregation == "min":
        return bucket.min
    if aggregation == "max":
        return bucket.max
    if aggregation == "last":
        return bucket.last
    return bucket.avg


def combine_groups(aggregation: str, parts: Sequence[tuple[float, int]]) -> float | None:
    """The province's figure from its areas' figures (value, samples) of one bucket."""
    if not parts:
        return None
    values = [v for v, _w in parts]
    if aggregation in ADDITIVE:
        return sum(values)
    if aggregation == "min":
        return min(values)
    if aggregation in ("max", "p95"):
        return max(values)
    weight = sum(w for _v, w in parts)
    if aggregation == "avg" and weight > 0:
        return sum(v * w for v, w in parts) / weight
    return sum(values) / len(values)


def province_series(kpi: Kpi, buckets: Iterable[Bucket]) -> list[tuple[float, float]]:
    """(bucket start, the province's figure) in time order, buckets with data only."""
    by_start: dict[float, list[tuple[float, int]]] = defaultdict(list)
    for bucket in buckets:
        value = bucket_value(kpi.aggregation, bucket)
        if value is not None:
            by_start[bucket.start].append((value, bucket.samples))
    out = []
    for start in sorted(by_start):
        value = combine_groups(kpi.aggregation, by_start[start])
        if value is not None:
            out.append((start, value))
    return out


def meets(target: Target, value: float) -> bool:
    """Whether a figure meets the target (at_most: ≤, at_least: ≥)."""
    return value <= target.value if target.direction == "at_most" else value >= target.value


@dataclass(frozen=True, slots=True)
class PeriodFigure:
    """A KPI over a period, against the period before and its target."""

    value: float | None
    previous: float | None
    change: float | None  # value - previous
    change_pct: float | None  # relative to |previous|; None when previous is 0 or missing
    met: bool | None  # None: no target or no data
    on_target_share: float | None  # 0..1 of buckets with data; None without a target
    buckets: int  # buckets with data in the period

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value, "previous": self.previous, "change": self.change,
            "change_pct": self.change_pct, "met": self.met,
            "on_target_share": self.on_target_share, "buckets": self.buckets,
        }  # fmt: skip


def _over_time(aggregation: str, values: Sequence[float]) -> float | None:
    if not values:
        return None
    if aggregation == "min":
        return min(values)
    if aggregation == "max":
        return max(values)
    if aggregation == "last":
        return values[-1]
    return sum(values) / len(values)


def period_figure(
    kpi: Kpi,
    series: Sequence[tuple[float, float]],
    *,
    start: float,
    end: float,
    previous_start: float,
) -> PeriodFigure:
    """The figure of [start, end) and of [previous_start, start) from a province series."""
    current = [v for t, v in series if start <= t < end]
    before = [v for t, v in series if previous_start <= t < start]
    value = _over_time(kpi.aggregation, current)
    previous = _over_time(kpi.aggregation, before)
    change = change_pct = None
    if value is not None and previous is not None:
        change = value - previous
        change_pct = change / abs(previous) * 100.0 if previous else None
    met = share = None
    if kpi.target is not None and current:
        met = meets(kpi.target, value) if value is not None else None
        share = sum(1 for v in current if meets(kpi.target, v)) / len(current)
    return PeriodFigure(value, previous, change, change_pct, met, share, len(current))


@dataclass(frozen=True, slots=True)
class AreaFigure:
    """One area's figure for a period and its colour on the map."""

    code: str
    value: float | None
    met: bool | None
    status: MapStatus

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "value": self.value, "met": self.met, "status": self.status}


def area_status(target: Target | None, value: float | None, scale: tuple[float, float]) -> str:
    """Map colour: met / near / missed against a target; without one, four levels of the
    value between the lowest and the highest area (level0 … level3)."""
    if value is None:
        return "nodata"
    if target is not None:
        if meets(target, value):
            return "met"
        gap = abs(value - target.value) / max(abs(target.value), 1e-9)
        return "near" if gap <= NEAR else "missed"
    low, high = scale
    if high - low < 1e-12:
        return "level1"
    return f"level{min(3, int((value - low) / (high - low) * 4))}"


def area_figures(
    kpi: Kpi, buckets: Iterable[Bucket], areas: Sequence[str], *, start: float, end: float
) -> list[AreaFigure]:
    """Each area's figure over [start, end), in the order of `areas` (the catalog's)."""
    per_area: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for bucket in buckets:
        value = bucket_value(kpi.aggregation, bucket)
        if value is not None and start <= bucket.start < end:
            per_area[bucket.group].append((bucket.start, value))
    values: dict[str, float | None] = {
        code: _over_time(kpi.aggregation, [v for _t, v in sorted(per_area.get(code, []))])
        for code in areas
    }
    present = [v for v in values.values() if v is not None]
    scale = (min(present), max(present)) if present else (0.0, 0.0)
    out = []
    for code in areas:
        value = values[code]
        met = meets(kpi.target, value) if kpi.target is not None and value is not None else None
        status: Any = area_status(kpi.target, value, scale)
        out.append(AreaFigure(code, value, met, status))
    return out
