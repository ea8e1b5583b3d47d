"""Reading what the workspace, the phone page and the report need from the storage tables.

KPI buckets come through the history's own planner (`plan_series`/`series_query`: raw
points for short ranges, the hourly/daily rollups for long ones), so the workspace and the
history API answer from the same tables the same way. The other statements are small and
parameterised; every value travels as a bound parameter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from consumers.analysis.figures import Bucket, buckets_from_rows
from consumers.history import Query, RowSource
from consumers.history.params import PROVINCE_ORIGIN, TimeRange, to_datetime
from consumers.history.queries import KpiEntry, plan_series, series_query
from foundation.contract.alerts import AlertTransition, RecordError

__all__ = [
    "MAX_EVENTS",
    "SourceGap",
    "alert_timeline",
    "alert_transitions_between",
    "align_up",
    "events_between",
    "kpi_buckets",
    "source_gaps",
]

MAX_EVENTS: Final = 200  # events listed by a drill-down


def align_up(moment: float, width: float) -> float:
    """The next bucket edge at or after `moment` (days are the province's)."""
    return PROVINCE_ORIGIN + math.ceil((moment - PROVINCE_ORIGIN) / width) * width


async def kpi_buckets(
    rows: RowSource, entry: KpiEntry, *, start: float, end: float, bucket: str, group: str | None
) -> list[Bucket]:
    """Every series' buckets of a KPI over [start, end) (`group`: one area only)."""
    plan = plan_series(entry, TimeRange(start, end), bucket)
    return buckets_from_rows(await rows.fetch(series_query(entry, plan, group)))


async def events_between(
    rows: RowSource, entry: KpiEntry, *, start: float, end: float, area: str | None
) -> list[dict[str, Any]]:
    """The events of the KPI's type in [start, end) (one area or all), oldest first."""
    params: dict[str, Any] = {
        "sector": entry.sector.id,
        "type": entry.kpi.event_type,
        "start": to_datetime(start),
        "end": to_datetime(end),
        "limit": MAX_EVENTS,
    }
    where = "sector = %(sector)s AND type = %(type)s AND occurred_at >= %(start)s"
    where += " AND occurred_at < %(end)s"
    if area is not None:
        params["area"] = area
        where += " AND district = %(area)s"
    found = await rows.fetch(
        Query(
            "SELECT source, event_id, occurred_at, value, unit, district, topic, partition,"  # noqa: S608 - values bound
            f' "offset" FROM events WHERE {where} ORDER BY occurred_at, source, event_id'
            " LIMIT %(limit)s",
            params,
        )
    )
    return [
        {
            "source": r[0],
            "event_id": r[1],
            "occurred_at": r[2].timestamp(),
            "value": r[3],
            "unit": r[4],
            "district": r[5],
            "kafka": f"{r[6]}/{r[7]}@{r[8]}",
        }
        for r in found
    ]


def _transition(record: Any) -> AlertTransition | None:
    try:
        raw = json.loads(record) if isinstance(record, str | bytes) else record
        return AlertTransition.from_json(raw)
    except (RecordError, ValueError, TypeError):
        return None


async def alert_timeline(rows: RowSource, fingerprint: str) -> list[AlertTransition]:
    """Every stored transition of one alert, in order (its audit trail)."""
    found = await rows.fetch(
        Query(
            "SELECT record FROM alert_transitions WHERE fingerprint = %(fp)s ORDER BY seq",
            {"fp": fingerprint},
        )
    )
    return [t for r in found if (t := _transition(r[0])) is not None]


async def alert_transitions_between(
    rows: RowSource, sectors: Sequence[str], *, start: float, end: float
) -> list[AlertTransition]:
    """The transitions of the sectors' alerts in [start, end), in time order."""
    found = await rows.fetch(
        Query(
            "SELECT record FROM alert_transitions WHERE sector = ANY(%(sectors)s)"
            " AND at >= %(start)s AND at < %(end)s ORDER BY at, fingerprint, seq",
            {"sectors": list(sectors), "start": to_datetime(start), "end": to_datetime(end)},
        )
    )
    return [t for r in found if (t := _transition(r[0])) is not None]


@dataclass(frozen=True, slots=True)
class SourceGap:
    """How a source kept its cadence over a period: events and its longest silence."""

    source: str
    events: int
    longest_gap: float  # seconds, counting from the period's start and to its end
    silences: int  # gaps longer than its stale threshold


async def source_gaps(
    rows: RowSource, thresholds: dict[str, float], *, start: float, end: float
) -> list[SourceGap]:
    """Per source (the keys of `thresholds`: source -> seconds of silence that make it stale),
    its events in [start, end) and its silences, from the stored events.

    One pass over the period's events ordered per source (the events table's daily
    partitions keep it to the days asked for).
    """
    if not thresholds:
        return []
    sources = sorted(thresholds)
    found = await rows.fetch(
        Query(
            "WITH t AS (SELECT unnest(%(sources)s::text[]) AS source,"
            " unnest(%(limits)s::float8[]) AS limit_s),"
            " e AS (SELECT source, occurred_at, extract(epoch FROM occurred_at - lag(occurred_at)"
            " OVER (PARTITION BY source ORDER BY occurred_at)) AS gap FROM events"
            " WHERE source = ANY(%(sources)s) AND occurred_at >= %(start)s"
            " AND occurred_at < %(end)s)"
            " SELECT t.source, count(e.source), max(e.gap), min(e.occurred_at),"
            " max(e.occurred_at), count(*) FILTER (WHERE e.gap > t.limit_s)"
            " FROM t LEFT JOIN e ON e.source = t.source GROUP BY t.source ORDER BY t.source",
            {
                "sources": sources,
                "limits": [thresholds[s] for s in sources],
                "start": to_datetime(start),
                "end": to_datetime(end),
            },
        )
    )
    out = []
    for source, count, inner, first, last, inner_silences in found:
        limit = thresholds[source]
        if not count:
            out.append(SourceGap(source, 0, end - start, 1))
            continue
        edges = [first.timestamp() - start, end - last.timestamp()]
        longest = max([float(inner or 0.0), *edges])
        silences = int(inner_silences) + sum(1 for gap in edges if gap > limit)
        out.append(SourceGap(source, int(count), longest, silences))
    return out
