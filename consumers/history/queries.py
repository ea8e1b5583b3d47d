"""What each history endpoint reads: plans and parameterised SQL (pure: no database here).

Identifiers in the SQL are fixed (a table is picked from a closed set); every value a
caller gives travels as a bound parameter.

Series are served from the table that fits the request:

    bucket          range                   table
    raw, 1m–15m     any (≤ 2,000 buckets)   kpi_points
    1h              ≤ 2 days                kpi_points
    1h              > 2 days                kpi_rollup_1h
    1d              ≤ 2 days                kpi_points
    1d              > 2 days                kpi_rollup_1d

A bucket computed from kpi_points has the same columns and the same meaning as a rollup
row (points, avg/min/max/sum/last of the point values, samples), so which table answered
changes nothing but speed and freshness (the plain path's rollups trail the writer by its
maintenance interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from consumers.history.params import (
    BUCKETS,
    MAX_BUCKETS,
    PROVINCE_ORIGIN,
    TimeRange,
    to_datetime,
)
from foundation.contract.catalog import Catalog, Kpi, Sector
from foundation.errors import HistoryQueryError
from streams.kpi_plan import NO_GROUP, KpiPlan, KpiSpec, series_key

__all__ = [
    "ROLLUP_AFTER",
    "HistoryCatalog",
    "KpiEntry",
    "Query",
    "SeriesPlan",
    "SeriesSource",
    "alert_history_query",
    "dead_letter_query",
    "drilldown_events_query",
    "drilldown_points_query",
    "latest_points_query",
    "plan_series",
    "series_query",
]

SeriesSource = Literal["kpi_points", "kpi_rollup_1h", "kpi_rollup_1d"]
ROLLUP_AFTER: Final = 2 * 86400.0  # longer ranges of 1h/1d buckets come from the rollups
_ROLLUP_OF: Final[dict[float, SeriesSource]] = {3600.0: "kpi_rollup_1h", 86400.0: "kpi_rollup_1d"}


@dataclass(frozen=True, slots=True)
class Query:
    """One parameterised statement."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KpiEntry:
    """A KPI of the catalog with what the history needs to know about it."""

    sector: Sector
    kpi: Kpi
    spec: KpiSpec

    @property
    def key(self) -> str:
        return self.spec.key


class HistoryCatalog:
    """Catalog look-ups by the ids the API is called with (KPI key `<sector>.<kpi id>`)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        plan = KpiPlan(catalog)
        self.kpis: dict[str, KpiEntry] = {}
        for sector in catalog.sectors:
            for kpi in sector.kpis:
                spec = plan.by_key[f"{sector.id}.{kpi.id}"]
                self.kpis[spec.key] = KpiEntry(sector, kpi, spec)
        self.source_sector: dict[str, str] = {
            source.id: sector.id for sector in catalog.sectors for source in sector.sources
        }

    def kpi(self, key: str) -> KpiEntry:
        entry = self.kpis.get(key)
        if entry is None:
            raise HistoryQueryError(
                "unknown_kpi", f"no KPI {key!r} in the catalog (ids are <sector>.<kpi>)", status=404
            )
        return entry

    def sector(self, sector_id: str) -> Sector:
        sector = self.catalog.sector(sector_id)
        if sector is None:
            raise HistoryQueryError(
                "unknown_sector", f"no sector {sector_id!r} in the catalog", status=404
            )
        return sector

    def sector_kpis(self, sector_id: str) -> list[KpiEntry]:
        return [e for e in self.kpis.values() if e.sector.id == sector_id]

    def sources_of(self, sectors: tuple[str, ...]) -> list[str]:
        return sorted(s for s, sector in self.source_sector.items() if sector in sectors)


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """How to answer a series request: bucket, table, aligned range."""

    bucket: str
    width: float | None  # None: raw points
    source: SeriesSource
    range: TimeRange  # aligned to the bucket (raw: as asked)


def _align(value: float, width: float, up: bool) -> float:
    steps = (value - PROVINCE_ORIGIN) / width
    return PROVINCE_ORIGIN + (math.ceil(steps) if up else math.floor(steps)) * width


def plan_series(entry: KpiEntry, asked: TimeRange, bucket: str | None) -> SeriesPlan:
    """The bucket (given, or the finest that fits), its table and the aligned range."""
    hop = entry.spec.window.hop
    if bucket is None:
        for name, width in BUCKETS.items():
            if width is not None and width < hop:
                continue  # finer than the KPI's own points: empty buckets only
            if math.ceil(asked.seconds / (width or hop)) <= MAX_BUCKETS:
                bucket = name
                break
        else:
            raise HistoryQueryError(
                "range_too_long",
                f"{asked.seconds / 86400:.0f} days do not fit {MAX_BUCKETS} daily buckets",
                status=422,
            )
    if bucket not in BUCKETS:
        raise HistoryQueryError(
            "bad_bucket", f"bucket must be one of {', '.join(BUCKETS)} (got {bucket!r})"
        )
    width = BUCKETS[bucket]
    if width is None:
        span, steps = asked, asked.seconds / hop
    else:
        span = TimeRange(_align(asked.start, width, False), _align(asked.end, width, True))
        steps = span.seconds / width
    if steps > MAX_BUCKETS:
        raise HistoryQueryError(
            "range_too_long",
            f"{math.ceil(steps)} {bucket} buckets asked, at most {MAX_BUCKETS}:"
            " shorten the range or take a larger bucket",
            status=422,
        )
    source: SeriesSource = "kpi_points"
    if width in _ROLLUP_OF and span.seconds > ROLLUP_AFTER:
        source = _ROLLUP_OF[width]
    return SeriesPlan(bucket, width, source, span)


def _series_filter(entry: KpiEntry, group: str | None, params: dict[str, Any]) -> str:
    if group is not None:
        params["series"] = series_key(entry.key, group)
        return "series = %(series)s"
    params["sector"] = entry.sector.id
    params["kpi"] = entry.key
    return "sector = %(sector)s AND kpi = %(kpi)s"


def series_query(entry: KpiEntry, plan: SeriesPlan, group: str | None) -> Query:
    """Rows ordered by series then time: raw points, or buckets in the rollups' columns."""
    params: dict[str, Any] = {
        "start": to_datetime(plan.range.start),
        "end": to_datetime(plan.range.end),
    }
    where = _series_filter(entry, group, params)
    if plan.width is None:
        sql = (
            "SELECT series, grp, window_start, window_end, value, sample_count, final,"  # noqa: S608 - values bound
            " revision, emitted_at FROM kpi_points"
            f" WHERE {where} AND window_start >= %(start)s AND window_start < %(end)s"
            " ORDER BY series, window_start"
        )
    elif plan.source == "kpi_points":
        params["width"] = plan.width
        params["origin"] = to_datetime(PROVINCE_ORIGIN)
        sql = (
            # numeric, as the writer's rollups: float8 sum()/avg() overflow on finite points
            "SELECT series, grp, bucket, count(*), GREATEST(LEAST(avg(value::text::numeric),"  # noqa: S608 - values bound
            " 1.7976931348623157e308), -1.7976931348623157e308)::float8, min(value), max(value),"
            " CASE WHEN abs(sum(value::text::numeric)) <= 1.7976931348623157e308"
            " THEN sum(value::text::numeric)::float8 END,"
            " (array_agg(value ORDER BY window_start DESC))[1],"
            " sum(sample_count)::bigint"
            " FROM (SELECT *, date_bin(make_interval(secs => %(width)s), window_start,"
            " %(origin)s) AS bucket FROM kpi_points"
            f" WHERE {where} AND window_start >= %(start)s AND window_start < %(end)s) p"
            " GROUP BY series, grp, bucket ORDER BY series, bucket"
        )
    else:
        sql = (
            "SELECT series, grp, bucket, points, value_avg, value_min, value_max, value_sum,"  # noqa: S608 - values bound
            f" value_last, samples FROM {plan.source}"
            f" WHERE {where} AND bucket >= %(start)s AND bucket < %(end)s"
            " ORDER BY series, bucket"
        )
    return Query(sql, params)


def latest_points_query(sectors: list[str], since: float) -> Query:
    """The latest point of every series of the sectors with a window starting after since."""
    return Query(
        "SELECT DISTINCT ON (series) series, kpi, grp, window_start, window_end, value,"
        " sample_count, final, revision, emitted_at FROM kpi_points"
        " WHERE sector = ANY(%(sectors)s) AND window_start >= %(since)s"
        " ORDER BY series, window_start DESC",
        {"sectors": sectors, "since": to_datetime(since)},
    )


def check_window_start(entry: KpiEntry, window_start: float) -> None:
    """A window start of this KPI is a multiple of its hop."""
    hop = entry.spec.window.hop
    if not math.isclose(window_start / hop, round(window_start / hop), abs_tol=1e-9):
        raise HistoryQueryError(
            "bad_range",
            f"window_start is not a window start of {entry.key} (they fall every {hop:g} s)",
        )


def drilldown_points_query(entry: KpiEntry, window_start: float, group: str | None) -> Query:
    """The stored KPI point(s) of that window (one per group)."""
    params: dict[str, Any] = {"start": to_datetime(window_start)}
    where = _series_filter(entry, group, params)
    return Query(
        "SELECT series, grp, window_start, window_end, value, sample_count, final, revision,"  # noqa: S608 - values bound
        f" emitted_at FROM kpi_points WHERE {where} AND window_start = %(start)s"
        " ORDER BY series",
        params,
    )


def drilldown_events_query(
    entry: KpiEntry,
    window_start: float,
    group: str | None,
    *,
    limit: int,
    after: list[Any] | None,
) -> Query:
    """The stored events a window of the KPI aggregates, in (occurred_at, source, event_id)
    order, one page (limit + 1 rows: the extra one says there is more)."""
    spec = entry.spec
    params: dict[str, Any] = {
        "sector": entry.sector.id,
        "type": entry.kpi.event_type,
        "start": to_datetime(window_start),
        "end": to_datetime(window_start + spec.window.size),
        "limit": limit + 1,
    }
    where = [
        "sector = %(sector)s",
        "type = %(type)s",
        "occurred_at >= %(start)s",
        "occurred_at < %(end)s",
    ]
    if group is not None and spec.group_by is not None:
        column = "district" if spec.group_by == "district" else "source"
        if group == NO_GROUP and column == "district":
            where.append("district IS NULL")
        else:
            params["group"] = group
            where.append(f"{column} = %(group)s")
    if spec.data_key is not None:
        params["data_key"] = spec.data_key
        where.append("data ? %(data_key)s")  # events without the field are not aggregated
    if after is not None:
        params["after_at"], params["after_source"], params["after_id"] = after
        where.append(
            "(occurred_at, source, event_id) > (%(after_at)s, %(after_source)s, %(after_id)s)"
        )
    return Query(
        "SELECT source, event_id, sector, type, occurred_at, value, unit, district, data,"  # noqa: S608 - values bound
        ' topic, partition, "offset", idx, published_at FROM events'
        f" WHERE {' AND '.join(where)}"
        " ORDER BY occurred_at, source, event_id LIMIT %(limit)s",
        params,
    )


def alert_history_query(
    span: TimeRange | None,
    *,
    sectors: tuple[str, ...] | None,
    fingerprint: str | None,
    state: str | None,
    severity: str | None,
    limit: int,
    after: list[Any] | None,
) -> Query:
    """Alert transitions, newest first, one page (limit + 1 rows)."""
    params: dict[str, Any] = {"limit": limit + 1}
    where = ["true"]
    if span is not None:
        params["start"], params["end"] = to_datetime(span.start), to_datetime(span.end)
        where.append("at >= %(start)s AND at < %(end)s")
    if sectors is not None:
        params["sectors"] = list(sectors)
        where.append("sector = ANY(%(sectors)s)")
    for column, value in (("fingerprint", fingerprint), ("state", state), ("severity", severity)):
        if value is not None:
            params[column] = value
            where.append(f"{column} = %({column})s")
    if after is not None:
        params["after_at"], params["after_fp"], params["after_seq"] = after
        where.append("(at, fingerprint, seq) < (%(after_at)s, %(after_fp)s, %(after_seq)s)")
    return Query(
        "SELECT at, fingerprint, seq, record FROM alert_transitions"  # noqa: S608 - values bound
        f" WHERE {' AND '.join(where)}"
        " ORDER BY at DESC, fingerprint DESC, seq DESC LIMIT %(limit)s",
        params,
    )


MAX_ORIGINAL_BYTES: Final = 65536  # of a dead letter's original record, per item


def dead_letter_query(
    span: TimeRange,
    *,
    senders: list[str] | None = None,
    scope: list[str] | None = None,
    reason: str | None = None,
    limit: int,
    after: list[Any] | None,
) -> Query:
    """Dead letters, newest first, one page (limit + 1 rows).

    `senders`: only those of records these sources sent (a row without a sender, written
    before the writer stored one, counts as sent by its source). `scope`: only those sent by
    or naming one of these sources (a token scoped to sectors). None: no such filter.
    """
    params: dict[str, Any] = {
        "start": to_datetime(span.start),
        "end": to_datetime(span.end),
        "limit": limit + 1,
        "max_bytes": MAX_ORIGINAL_BYTES,
    }
    where = ["received_at >= %(start)s", "received_at < %(end)s"]
    if senders is not None:
        params["senders"] = senders
        where.append("COALESCE(sender, source) = ANY(%(senders)s)")
    if scope is not None:
        params["scope"] = scope
        where.append("(COALESCE(sender, source) = ANY(%(scope)s) OR source = ANY(%(scope)s))")
    if reason is not None:
        params["reason"] = reason
        where.append("reason = %(reason)s")
    if after is not None:
        params["after_at"], params["after_part"], params["after_offset"] = after
        where.append(
            "(received_at, dl_partition, dl_offset)"
            " < (%(after_at)s, %(after_part)s, %(after_offset)s)"
        )
    return Query(
        "SELECT received_at, dl_partition, dl_offset, reason, detail, source, event_id, topic,"  # noqa: S608 - values bound
        ' partition, "offset", idx, substring(original from 1 for %(max_bytes)s),'
        " octet_length(original), COALESCE(sender, source) FROM dead_letters"
        f" WHERE {' AND '.join(where)}"
        " ORDER BY received_at DESC, dl_partition DESC, dl_offset DESC LIMIT %(limit)s",
        params,
    )
