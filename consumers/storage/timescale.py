"""The TimescaleDB jobs of the storage: retention, compression and aggregate refresh policies.

The hypertables and continuous aggregates themselves are created by the migration
`0003_storage.sql` (its `timescaledb` part); the jobs are added here because their intervals
come from the settings (retention is configurable). Each policy is replaced, never stacked:
`remove_…(if_exists => TRUE)` then `add_…`, in one transaction, so a changed setting takes
effect on the next `ioc db migrate` / `ioc writer` start.

Written from TimescaleDB's documentation (create_hypertable, add_retention_policy,
add_compression_policy, add_continuous_aggregate_policy and their remove_ counterparts);
a unit test checks every call against the documented signatures. It could not be executed
here: no TimescaleDB binary exists on the machines this was built on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consumers.storage.policy import StoragePolicy

__all__ = ["COMPRESS_AFTER_DAYS", "ROLLUP_REFRESH", "RollupRefresh", "policy_statements"]

# Chunks older than this are compressed (columnar); late data is rare past a few minutes.
COMPRESS_AFTER_DAYS: Final = {"events": 7, "kpi_points": 30, "dead_letters": 7}


@dataclass(frozen=True, slots=True)
class RollupRefresh:
    """Refresh window and schedule of one continuous aggregate."""

    view: str
    start_offset: str
    end_offset: str
    schedule_interval: str


# The refresh window reaches back past the KPI grace periods (minutes) with a wide margin;
# it stays far inside the 2-year retention, so dropped chunks never empty old buckets.
ROLLUP_REFRESH: Final = (
    RollupRefresh("kpi_rollup_1h", "3 days", "1 hour", "15 minutes"),
    RollupRefresh("kpi_rollup_1d", "7 days", "1 hour", "1 hour"),
)


def policy_statements(policy: StoragePolicy) -> list[str]:
    """Every statement that (re)installs the jobs, in order."""
    out: list[str] = []
    for table, days in sorted(policy.retention_days.items()):
        out.append(f"SELECT remove_retention_policy('{table}', if_exists => TRUE)")
        out.append(
            f"SELECT add_retention_policy('{table}', drop_after => INTERVAL '{int(days)} days')"
        )
    for table, days in sorted(COMPRESS_AFTER_DAYS.items()):
        out.append(f"SELECT remove_compression_policy('{table}', if_exists => TRUE)")
        out.append(
            f"SELECT add_compression_policy('{table}', "
            f"compress_after => INTERVAL '{int(days)} days')"
        )
    for refresh in ROLLUP_REFRESH:
        out.append(
            f"SELECT remove_continuous_aggregate_policy('{refresh.view}', if_exists => TRUE)"
        )
        out.append(
            f"SELECT add_continuous_aggregate_policy('{refresh.view}', "
            f"start_offset => INTERVAL '{refresh.start_offset}', "
            f"end_offset => INTERVAL '{refresh.end_offset}', "
            f"schedule_interval => INTERVAL '{refresh.schedule_interval}')"
        )
    return out
