"""Storage upkeep: partitions ahead, retention, rollups (plain path); TimescaleDB jobs.

    report = await run_maintenance(conn, path=path, policy=policy, now=time.time())

On the plain path each run creates the partitions from today to `partitions_ahead_days`
ahead, drops the partitions entirely past retention, deletes `event_ids` rows past the events'
retention, and recomputes the hourly and daily rollups of the hours the writer marked in
`kpi_rollup_pending`. On the TimescaleDB path TimescaleDB's own jobs do all of that (retention,
compression, continuous aggregate refresh, and a job for `event_ids`): `apply_timescale_policies`
installs them, and a maintenance run does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import psycopg
from psycopg.rows import TupleRow

from consumers.migrations import StoragePath
from consumers.storage.partitions import plan_partitions
from consumers.storage.policy import DAY, TIME_SERIES_TABLES, StoragePolicy
from consumers.storage.sink import PARTITION_LOCK_KEY, create_partition
from consumers.storage.timescale import TimescaleJob, timescale_jobs

__all__ = [
    "JOBS_LOCK_KEY",
    "JobsReport",
    "MaintenanceReport",
    "apply_timescale_policies",
    "prune_event_ids",
    "read_storage_path",
    "refresh_rollups",
    "run_maintenance",
]

log = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[TupleRow]

# Advisory lock of whoever installs the TimescaleDB jobs ("ioc" + "jobs").
JOBS_LOCK_KEY: Final = 0x696F63_6A6F6273

# The province's day (UTC+7, no daylight saving) for the daily rollups; same as the
# continuous aggregate's time_bucket(..., timezone => 'Asia/Ho_Chi_Minh').
ROLLUP_TIMEZONE: Final = "Asia/Ho_Chi_Minh"

# Averages and sums in numeric: float8 sum()/avg() raise "value out of range: overflow" on
# finite points near 1.8e308, and one such hour would fail every maintenance run. Through text,
# which keeps every digit a double needs (a plain ::numeric keeps 15). An average of finite
# values is finite; a sum beyond float8 is stored as NULL (no value), not as an error.
_ROLLUP_SELECT: Final = """
    SELECT p.series, p.kpi, p.sector, p.grp, {bucket} AS bucket,
           count(*), GREATEST(LEAST(avg(p.value::text::numeric), 1.7976931348623157e308),
                              -1.7976931348623157e308)::float8,
           min(p.value), max(p.value),
           CASE WHEN abs(sum(p.value::text::numeric)) <= 1.7976931348623157e308
                THEN sum(p.value::text::numeric)::float8 END,
           (array_agg(p.value ORDER BY p.window_start DESC))[1], sum(p.sample_count)::bigint
    FROM kpi_points p
    JOIN {keys} d ON p.series = d.series
                 AND p.window_start >= d.bucket AND p.window_start < d.bucket + {width}
    GROUP BY p.series, p.kpi, p.sector, p.grp, {bucket}
"""
_ROLLUP_COLUMNS: Final = (
    "series, kpi, sector, grp, bucket, points, value_avg, value_min, value_max, value_sum,"
    " value_last, samples"
)
_ROLLUP_SET: Final = ", ".join(
    f"{c} = EXCLUDED.{c}"
    for c in (
        "kpi", "sector", "grp", "points", "value_avg", "value_min", "value_max", "value_sum",
        "value_last", "samples",
    )
)  # fmt: skip

_HOURLY_SELECT: Final = _ROLLUP_SELECT.format(
    bucket="date_trunc('hour', p.window_start, 'UTC')", keys="hours", width="INTERVAL '1 hour'"
)
_DAILY_SELECT: Final = _ROLLUP_SELECT.format(
    bucket=f"date_trunc('day', p.window_start, '{ROLLUP_TIMEZONE}')",
    keys="days",
    width="INTERVAL '1 day'",
)

# One statement, so one snapshot: an hour marked by a writer transaction that commits after
# this snapshot stays marked (its DELETE does not see it) and is rolled up next time.
_REFRESH_ROLLUPS: Final = f"""
WITH done AS (DELETE FROM kpi_rollup_pending RETURNING series, bucket),
hours AS (SELECT DISTINCT series, bucket FROM done),
days AS (
    SELECT DISTINCT series, date_trunc('day', bucket, '{ROLLUP_TIMEZONE}') AS bucket FROM done
),
hourly AS (
    INSERT INTO kpi_rollup_1h ({_ROLLUP_COLUMNS}) {_HOURLY_SELECT}
    ON CONFLICT (series, bucket) DO UPDATE SET {_ROLLUP_SET}
    RETURNING 1
),
daily AS (
    INSERT INTO kpi_rollup_1d ({_ROLLUP_COLUMNS}) {_DAILY_SELECT}
    ON CONFLICT (series, bucket) DO UPDATE SET {_ROLLUP_SET}
    RETURNING 1
)
SELECT (SELECT count(*) FROM hours), (SELECT count(*) FROM hourly), (SELECT count(*) FROM daily)
"""  # noqa: S608 - fixed identifiers, no input


@dataclass
class MaintenanceReport:
    """What one maintenance run did."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rollup_hours: int = 0
    rollup_rows: dict[str, int] = field(default_factory=dict)
    event_ids_pruned: int = 0


async def read_storage_path(conn: Connection) -> StoragePath | None:
    """The path recorded by the migrations, or None before they ran."""
    cursor = await conn.execute("SELECT to_regclass('storage_path') IS NOT NULL")
    exists = await cursor.fetchone()
    if not exists or not exists[0]:
        return None
    cursor = await conn.execute("SELECT path FROM storage_path")
    row = await cursor.fetchone()
    if row is None:
        return None
    return "timescaledb" if row[0] == "timescaledb" else "plain-postgresql"


async def run_maintenance(
    conn: Connection, *, path: StoragePath, policy: StoragePolicy, now: float
) -> MaintenanceReport:
    """One round of upkeep; `now` is injected so tests can move through days."""
    report = MaintenanceReport()
    if path == "timescaledb":
        return report  # TimescaleDB's jobs do it
    for table in TIME_SERIES_TABLES:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK_KEY,))
            cursor = await conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = %s::regclass",
                (table.name,),
            )
            existing = [str(name) for (name,) in await cursor.fetchall()]
            plan = plan_partitions(table, existing, now=now, policy=policy)
            for partition in plan.create:
                if await create_partition(conn, partition):
                    report.created.append(partition.name)
            for partition in plan.drop:
                await conn.execute(f"DROP TABLE IF EXISTS {partition.name}")
                report.dropped.append(partition.name)
    if report.created or report.dropped:
        log.info("partitions created %s, dropped %s", report.created, report.dropped)
    report.event_ids_pruned = await prune_event_ids(conn, policy=policy, now=now)
    await refresh_rollups(conn, report)
    return report


async def prune_event_ids(conn: Connection, *, policy: StoragePolicy, now: float) -> int:
    """Delete the `event_ids` rows past the events' retention (plain path); how many.

    A day later than the retention horizon: partitions go only when all of them is past it,
    and an event still stored keeps its key until its partition is gone. The writer never
    stores an event past retention, so a key deleted here is never needed again.
    """
    horizon = datetime.fromtimestamp(policy.horizon("events", now) - DAY, tz=UTC)
    async with conn.transaction():
        cursor = await conn.execute("DELETE FROM event_ids WHERE occurred_at < %s", (horizon,))
        return max(cursor.rowcount, 0)


async def refresh_rollups(conn: Connection, report: MaintenanceReport | None = None) -> int:
    """Recompute the rollups of every marked hour (and its day); the number of hours."""
    async with conn.transaction():
        cursor = await conn.execute(_REFRESH_ROLLUPS)
        row = await cursor.fetchone()
    hours, hourly, daily = (int(v) for v in row) if row else (0, 0, 0)
    if report is not None:
        report.rollup_hours = hours
        report.rollup_rows = {"kpi_rollup_1h": hourly, "kpi_rollup_1d": daily}
    return hours


@dataclass
class JobsReport:
    """What `apply_timescale_policies` did: jobs (re)installed, and jobs already as wanted."""

    installed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


async def apply_timescale_policies(conn: Connection, policy: StoragePolicy) -> JobsReport:
    """Install the TimescaleDB jobs of these settings; jobs already as wanted are kept."""
    report = JobsReport()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (JOBS_LOCK_KEY,))
        for job in timescale_jobs(policy):
            name = f"{job.proc_name}({job.relation or ''})"
            if await _job_in_place(conn, job):
                report.kept.append(name)
                continue
            await conn.execute(job.remove.encode())
            await conn.execute(job.add.encode())
            report.installed.append(name)
    if report.installed:
        log.info("TimescaleDB jobs installed: %s", ", ".join(report.installed))
    return report


async def _job_in_place(conn: Connection, job: TimescaleJob) -> bool:
    """Exactly one such job exists, with these settings."""
    checks = [
        "schedule_interval = %s::interval"
        if key == "schedule_interval"
        else f"(config ->> '{key}')::interval = %s::interval"
        for key in job.settings
    ]
    cursor = await conn.execute(
        f"SELECT count(*) FILTER (WHERE {' AND '.join(checks) or 'true'}), count(*)"  # noqa: S608 - keys are ours
        " FROM timescaledb_information.jobs"
        " WHERE proc_name = %s AND hypertable_name IS NOT DISTINCT FROM %s",
        (*job.settings.values(), job.proc_name, job.relation),
    )
    row = await cursor.fetchone()
    return row is not None and row[0] == 1 and row[1] == 1
