"""Plain-path partition plan (pure): alignment, names, creating ahead, dropping past retention."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.storage import TIME_SERIES_TABLES, StoragePolicy
from consumers.storage.partitions import parse_partition, partition_for, plan_partitions

EVENTS, KPI_POINTS, DEAD_LETTERS = TIME_SERIES_TABLES
DAY = 86_400.0


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("table", "at", "name", "start", "end"),
    [
        (EVENTS, _at(2026, 11, 26, 23, 59), "events_p20261126", _at(2026, 11, 26),
         _at(2026, 11, 27)),
        (EVENTS, _at(2026, 11, 27), "events_p20261127", _at(2026, 11, 27), _at(2026, 11, 28)),
        # Weekly partitions start on Mondays (2026-11-23 is one).
        (KPI_POINTS, _at(2026, 11, 29, 23), "kpi_points_p20261123", _at(2026, 11, 23),
         _at(2026, 11, 30)),
        (KPI_POINTS, _at(2026, 11, 30), "kpi_points_p20261130", _at(2026, 11, 30),
         _at(2026, 12, 7)),
        (EVENTS, _at(1969, 12, 31, 12), "events_p19691231", _at(1969, 12, 31), _at(1970, 1, 1)),
    ],
)  # fmt: skip
def test_partition_for_aligns_to_utc_days_and_mondays(
    table: object, at: float, name: str, start: float, end: float
) -> None:
    """A time falls in the partition named after its first UTC day, [start, end)."""
    partition = partition_for(table, at)  # type: ignore[arg-type]
    assert (partition.name, partition.start, partition.end) == (name, start, end)
    assert parse_partition(table, name) == partition  # type: ignore[arg-type]


def test_foreign_tables_are_not_partitions_of_ours() -> None:
    """Names that are not <table>_pYYYYMMDD of this table are ignored, never dropped."""
    assert parse_partition(EVENTS, "events_default") is None
    assert parse_partition(EVENTS, "dead_letters_p20261126") is None
    assert parse_partition(EVENTS, "events_p20261399") is None


def test_plan_creates_ahead_and_drops_only_partitions_entirely_past_retention() -> None:
    """From today's partition to `partitions_ahead_days` ahead; drop when end <= horizon."""
    policy = StoragePolicy(
        retention_days={"events": 2, "kpi_points": 7, "dead_letters": 2}, partitions_ahead_days=3
    )
    now = _at(2026, 11, 26, 12)
    existing = ["events_p20261123", "events_p20261124", "events_p20261125", "events_p20261126",
                "events_p20261127", "events_default"]  # fmt: skip
    plan = plan_partitions(EVENTS, existing, now=now, policy=policy)
    assert [p.name for p in plan.create] == ["events_p20261128", "events_p20261129"]
    # Horizon: 24th 12:00. The 23rd ends at the 24th 00:00 (dropped); the 24th ends after.
    assert [p.name for p in plan.drop] == ["events_p20261123"]
    weekly = plan_partitions(KPI_POINTS, ["kpi_points_p20261109"], now=now, policy=policy)
    assert [p.name for p in weekly.create] == ["kpi_points_p20261123"]
    assert [p.name for p in weekly.drop] == ["kpi_points_p20261109"]  # ended the 16th < 19th
