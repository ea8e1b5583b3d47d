"""The TimescaleDB jobs of the storage: retention, compression, aggregate refresh, event ids.

The hypertables and continuous aggregates themselves are created by the migrations
(`0003_storage.sql` and `0006_event_ids.sql`, their `timescaledb` parts); the jobs are added here
because their intervals come from the settings (retention is configurable). A job whose
settings already match is left alone (its schedule and history stay); a changed one is
replaced (`remove_…` / `delete_job`, then `add_…`), never stacked, in one transaction under an
advisory lock, so writers starting together do not race. `ioc db migrate` and every writer
start install them.

Checked against TimescaleDB 2.29 by the integration tests, which also run each job by hand
(`CALL run_job(id)`) instead of waiting for its schedule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

from consumers.storage.policy import StoragePolicy

__all__ = [
    "COMPRESS_AFTER_DAYS",
    "EVENT_IDS_PRUNE",
    "ROLLUP_REFRESH",
    "RollupRefresh",
    "TimescaleJob",
    "policy_statements",
    "rollup_start_days",
    "timescale_jobs",
]

# Chunks older than this are compressed (columnar); late data is rare past a few minutes,
# and a late row still lands correctly in a compressed chunk (tested).
COMPRESS_AFTER_DAYS: Final = {"events": 7, "kpi_points": 30, "dead_letters": 7}

# The custom job deleting `event_ids` rows past the events' retention (0006_event_ids.sql).
EVENT_IDS_PRUNE: Final = "ioc_prune_event_ids"


@dataclass(frozen=True, slots=True)
class RollupRefresh:
    """Refresh schedule of one continuous aggregate; newer buckets than end_offset are
    answered in real time (materialized_only = false)."""

    view: str
    end_offset: str
    schedule_interval: str


ROLLUP_REFRESH: Final = (
    RollupRefresh("kpi_rollup_1h", "1 hour", "15 minutes"),
    RollupRefresh("kpi_rollup_1d", "1 hour", "1 hour"),
)


def rollup_start_days(policy: StoragePolicy) -> int:
    """How far back a refresh looks: the whole of the KPI points' retention but its last day.

    A refresh only recomputes buckets whose points changed since the last one (TimescaleDB's
    invalidation log), so a wide window costs nothing when nothing old changed, and a late
    revision or a replayed backfill of any age still reaches the rollups (a window of a few
    days would leave them stale for good). It stops a day short of the retention, so the
    buckets of chunks the retention job drops keep their aggregates.
    """
    return max(policy.retention_days["kpi_points"] - 1, 3)


@dataclass(frozen=True, slots=True)
class TimescaleJob:
    """One job: how to recognise it in `timescaledb_information.jobs`, how to (re)install it."""

    proc_name: str
    relation: str | None  # its hypertable or continuous aggregate; None for our own job
    # Settings that must match for the installed job to be kept: config keys and
    # "schedule_interval", each an interval.
    settings: dict[str, str] = field(default_factory=dict)
    remove: str = ""
    add: str = ""


def timescale_jobs(policy: StoragePolicy) -> list[TimescaleJob]:
    """Every job of the storage for these settings, in installation order."""
    jobs: list[TimescaleJob] = []
    for table, days in sorted(policy.retention_days.items()):
        jobs.append(
            TimescaleJob(
                "policy_retention",
                table,
                {"drop_after": f"{int(days)} days"},
                remove=f"SELECT remove_retention_policy('{table}', if_exists => TRUE)",
                add=(
                    f"SELECT add_retention_policy('{table}',"
                    f" drop_after => INTERVAL '{int(days)} days')"
                ),
            )
        )
    for table, days in sorted(COMPRESS_AFTER_DAYS.items()):
        jobs.append(
            TimescaleJob(
                "policy_compression",
                table,
                {"compress_after": f"{int(days)} days"},
                remove=f"SELECT remove_compression_policy('{table}', if_exists => TRUE)",
                add=(
                    f"SELECT add_compression_policy('{table}',"
                    f" compress_after => INTERVAL '{int(days)} days')"
                ),
            )
        )
    start = f"{rollup_start_days(policy)} days"
    for refresh in ROLLUP_REFRESH:
        jobs.append(
            TimescaleJob(
                "policy_refresh_continuous_aggregate",
                refresh.view,
                {
                    "start_offset": start,
                    "end_offset": refresh.end_offset,
                    "schedule_interval": refresh.schedule_interval,
                },
                remove=(
                    f"SELECT remove_continuous_aggregate_policy('{refresh.view}',"
                    " if_exists => TRUE)"
                ),
                add=(
                    f"SELECT add_continuous_aggregate_policy('{refresh.view}', "
                    f"start_offset => INTERVAL '{start}', "
                    f"end_offset => INTERVAL '{refresh.end_offset}', "
                    f"schedule_interval => INTERVAL '{refresh.schedule_interval}')"
                ),
            )
        )
    # A day past the events' retention: see prune_event_ids in maintenance.py (plain path).
    keep = f"{int(policy.retention_days['events']) + 1} days"
    config = json.dumps({"drop_after": keep})
    jobs.append(
        TimescaleJob(
            EVENT_IDS_PRUNE,
            None,
            {"drop_after": keep, "schedule_interval": "1 hour"},
            remove=(
                "SELECT delete_job(job_id) FROM timescaledb_information.jobs"  # noqa: S608 - ours
                f" WHERE proc_name = '{EVENT_IDS_PRUNE}'"
            ),
            add=(
                f"SELECT add_job('{EVENT_IDS_PRUNE}', INTERVAL '1 hour',"
                f" config => '{config}'::jsonb)"
            ),
        )
    )
    return jobs


def policy_statements(policy: StoragePolicy) -> list[str]:
    """Every statement that (re)installs all the jobs, in order (remove, then add, per job)."""
    return [statement for job in timescale_jobs(policy) for statement in (job.remove, job.add)]
