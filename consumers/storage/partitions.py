"""Plain-path partition plan (pure): which partitions exist, which to create ahead, which to drop.

Partitions are named `<table>_pYYYYMMDD` after their first (UTC) day and cover
[start, start + span). A partition is dropped once all of it is past retention, so data is
kept at least as long as asked (like TimescaleDB dropping whole chunks).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from consumers.storage.policy import DAY, StoragePolicy, TimeSeriesTable

__all__ = [
    "MaintenancePlan",
    "Partition",
    "parse_partition",
    "partition_for",
    "partitions_between",
    "plan_partitions",
]

_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One range partition of a table: [start, end) in epoch seconds."""

    table: str
    start: float
    end: float

    @property
    def name(self) -> str:
        return f"{self.table}_p{datetime.fromtimestamp(self.start, tz=UTC):%Y%m%d}"

    def bounds_sql(self) -> tuple[str, str]:
        """FROM and TO of `FOR VALUES`, as UTC timestamp literals."""
        return _iso(self.start), _iso(self.end)


@dataclass(frozen=True, slots=True)
class MaintenancePlan:
    create: list[Partition]
    drop: list[Partition]


def partition_for(table: TimeSeriesTable, at: float) -> Partition:
    """The partition of `table` that holds time `at`."""
    span = table.span_days * DAY
    start = table.origin + math.floor((at - table.origin) / span) * span
    return Partition(table.name, start, start + span)


def partitions_between(table: TimeSeriesTable, first: float, last: float) -> list[Partition]:
    """Every partition of `table` holding some time in [first, last]."""
    out = []
    current = partition_for(table, first)
    while current.start <= last:
        out.append(current)
        current = Partition(table.name, current.end, current.end + (current.end - current.start))
    return out


def parse_partition(table: TimeSeriesTable, name: str) -> Partition | None:
    """The partition a table name stands for, or None when it is not one of ours."""
    match = _NAME.match(name)
    if match is None or match.group("table") != table.name:
        return None
    try:
        day = datetime.strptime(match.group("day"), "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    start = day.timestamp()
    return Partition(table.name, start, start + table.span_days * DAY)


def plan_partitions(
    table: TimeSeriesTable, existing: Iterable[str], *, now: float, policy: StoragePolicy
) -> MaintenancePlan:
    """Partitions to create (from the one holding now to `partitions_ahead_days` ahead) and
    partitions to drop (entirely older than the retention horizon)."""
    have = {p for p in (parse_partition(table, n) for n in existing) if p is not None}
    wanted = partitions_between(table, now, now + policy.partitions_ahead_days * DAY)
    horizon = policy.horizon(table.name, now)
    return MaintenancePlan(
        create=[p for p in wanted if p not in have],
        drop=sorted(p for p in have if p.end <= horizon),
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S+00")
