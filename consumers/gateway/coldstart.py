"""Cold start: the latest KPI points, freshness and alerts, read from the writer's tables.

`kpi_points` (one row per series and window, highest revision) gives each series' latest
point and the points of the sparkline's span (the last hour, nothing older); the Kafka
replay then adds the revisions in between (state.py). `source_freshness` and
`sector_last_seen` give the freshness records; `alerts_current` gives the open
alerts whole and, for resolved ones, the last seq (so a replayed older transition is
dropped). A database without these tables yet (the writer's migration has not run) is not
an error: the gateway starts from Kafka alone and says so in the log. Every statement is
bounded by `timeout`, on the server (statement_timeout) and here (a stalled connection).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg

from consumers.gateway.records import PoisonRecordError, check_kpi_record
from consumers.gateway.state import SPARK_SECONDS, GatewayState
from foundation.errors import DatabaseError, DatabaseUnreachableError
from foundation.probes import redact_url

__all__ = ["ColdStart", "load_cold_start"]

log = logging.getLogger("ioc.gateway.coldstart")

# A series silent for more than 2 days starts empty (its tile says stale).
_KPI_QUERY = """
WITH latest AS (
    SELECT DISTINCT ON (series) series, window_start
    FROM kpi_points
    WHERE window_end >= now() - interval '2 days'
    ORDER BY series, window_start DESC
)
SELECT p.series, p.kpi, p.sector, p.grp,
       extract(epoch FROM p.window_start)::float8,
       extract(epoch FROM p.window_end)::float8,
       p.value, p.sample_count, p.final, p.revision,
       extract(epoch FROM p.emitted_at)::float8, p.generation
FROM kpi_points p
WHERE p.window_end >= now() - make_interval(secs => %s)
   OR (p.series, p.window_start) IN (SELECT series, window_start FROM latest)
ORDER BY p.window_start, p.series
"""

_FRESHNESS_QUERY = """
SELECT source, sector, state, extract(epoch FROM last_seen)::float8,
       extract(epoch FROM changed_at)::float8, stale_after
FROM source_freshness ORDER BY source
"""

_SECTOR_SEEN_QUERY = """
SELECT sector, extract(epoch FROM last_seen)::float8, extract(epoch FROM emitted_at)::float8
FROM sector_last_seen ORDER BY sector
"""

_ALERTS_QUERY = """
SELECT fingerprint, seq, sector, state, record FROM alerts_current ORDER BY fingerprint
"""


@dataclass(frozen=True)
class ColdStart:
    """What the load found (for the log and /healthz)."""

    kpi_rows: int
    freshness_rows: int
    open_alerts: int
    known_alerts: int
    missing_tables: tuple[str, ...]


def _kpi_record(row: tuple[Any, ...]) -> dict[str, Any]:
    series, kpi, sector, grp, start, end, value, count, final, revision, emitted, generation = row
    return {
        "kind": "kpi",
        "series": series,
        "kpi": kpi,
        "sector": sector,
        "group": grp,
        "window_start": start,
        "window_end": end,
        "value": value,
        "count": count,
        "final": bool(final),
        "revision": int(revision),
        "generation": int(generation),
        "overflow": False,
        "emitted_at": emitted,
        "newest": 0.0,
    }


async def _fetch(
    conn: psycopg.AsyncConnection[Any],
    query: LiteralString,
    params: tuple[Any, ...] = (),
    *,
    timeout: float,
) -> list[tuple[Any, ...]]:
    """Every row of one statement, within timeout seconds."""
    try:
        async with asyncio.timeout(timeout):
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()
    except TimeoutError as exc:
        raise DatabaseError(
            f"gateway cold start: a query did not finish within {timeout:g} s"
        ) from exc


async def load_cold_start(state: GatewayState, database_url: str, *, timeout: float) -> ColdStart:
    """Fill `state` from the database; DatabaseUnreachableError/DatabaseError when it fails."""
    try:
        async with asyncio.timeout(timeout):
            conn = await psycopg.AsyncConnection.connect(
                database_url, connect_timeout=max(int(timeout), 1), autocommit=True
            )
    except (psycopg.OperationalError, TimeoutError, OSError) as exc:
        raise DatabaseUnreachableError(
            f"cannot connect to {redact_url(database_url)}: {exc}"
        ) from exc
    missing: list[str] = []
    kpi_rows = freshness_rows = open_alerts = known_alerts = 0
    try:
        async with conn:
            await _fetch(
                conn,
                "SELECT set_config('statement_timeout', %s, false)",
                (f"{int(timeout * 1000)}ms",),
                timeout=timeout,
            )
            try:
                for row in await _fetch(conn, _KPI_QUERY, (SPARK_SECONDS,), timeout=timeout):
                    try:
                        point = check_kpi_record(_kpi_record(row))
                    except PoisonRecordError as exc:  # e.g. a NaN someone wrote by hand
                        log.warning("cold start: a kpi_points row left out (%s)", exc.reason)
                        continue
                    if point is not None:
                        state.apply_kpi(point)
                        kpi_rows += 1
            except psycopg.errors.UndefinedTable:
                missing.append("kpi_points")
            try:
                for (
                    source,
                    sector,
                    fresh_state,
                    last_seen,
                    changed,
                    stale_after,
                ) in await _fetch(conn, _FRESHNESS_QUERY, timeout=timeout):
                    record = {
                        "kind": "freshness",
                        "source": source,
                        "sector": sector,
                        "state": fresh_state,
                        "last_seen": last_seen,
                        "changed_at": changed,
                        "stale_after": stale_after,
                    }
                    state.apply_freshness(f"freshness|{source}", record)
                    freshness_rows += 1
                for sector, last_seen, emitted in await _fetch(
                    conn, _SECTOR_SEEN_QUERY, timeout=timeout
                ):
                    record = {
                        "kind": "sector_seen",
                        "sector": sector,
                        "last_seen": last_seen,
                        "emitted_at": emitted,
                    }
                    state.apply_freshness(f"sector|{sector}", record)
                    freshness_rows += 1
            except psycopg.errors.UndefinedTable:
                missing.append("source_freshness")
            try:
                for fingerprint, seq, sector, alert_state, record in await _fetch(
                    conn, _ALERTS_QUERY, timeout=timeout
                ):
                    known_alerts += 1
                    if alert_state != "resolved" and isinstance(record, dict):
                        state.apply_alert(record)
                        open_alerts += 1
                    else:
                        state.know_alert(str(fingerprint), int(seq), str(sector))
            except psycopg.errors.UndefinedTable:
                missing.append("alerts_current")
    except psycopg.Error as exc:
        raise DatabaseError(f"gateway cold start failed: {exc}") from exc
    if missing:
        log.warning(
            "cold start: table(s) %s not found (writer not migrated yet?); "
            "starting from the Kafka replay alone",
            ", ".join(missing),
        )
    return ColdStart(kpi_rows, freshness_rows, open_alerts, known_alerts, tuple(missing))
