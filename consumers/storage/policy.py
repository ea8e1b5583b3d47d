"""What the storage keeps and how it is cut: tables, time columns, partition spans, retention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["DAY", "TIME_SERIES_TABLES", "StoragePolicy", "TimeSeriesTable"]

DAY: Final = 86_400.0

TableName = Literal["events", "kpi_points", "dead_letters"]


@dataclass(frozen=True, slots=True)
class TimeSeriesTable:
    """A table cut by time: daily (or weekly) partitions, or TimescaleDB chunks."""

    name: TableName
    time_column: str
    span_days: int  # partition / chunk width
    # Partitions of more than one day start on a Monday (1970-01-05 was one), UTC.
    origin: float = 4 * DAY


TIME_SERIES_TABLES: Final = (
    TimeSeriesTable("events", "occurred_at", 1),
    TimeSeriesTable("kpi_points", "window_start", 7),
    TimeSeriesTable("dead_letters", "received_at", 1),
)


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    """Retention per table (days) and how far ahead the plain path creates partitions."""

    retention_days: dict[str, int]
    partitions_ahead_days: int = 7

    @classmethod
    def default(cls) -> StoragePolicy:
        return cls(retention_days={"events": 90, "kpi_points": 730, "dead_letters": 90})

    def horizon(self, table: str, now: float) -> float:
        """Rows of `table` older than this (epoch seconds) are past retention."""
        return now - self.retention_days[table] * DAY
