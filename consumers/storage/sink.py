"""Write a RowBatch to PostgreSQL in one transaction: COPY into temp staging tables, then upsert.

Events take a shorter way: their ids are upserted into `event_ids` first, and only the rows of
the ids it kept are copied, straight into `events`.

Idempotent by construction, so a batch written twice (a crash between the database commit
and the Kafka offset commit) leaves the same rows:

    events             (source, event_id), kept in `event_ids` — first copy wins; a copy published
                       later with another occurred_at (a correction) replaces it
    kpi_points         (series, window_start) — a higher (generation, revision) replaces, a
                       lower never does (a later broker epoch's point wins)
    alert_transitions  (fingerprint, seq) — first copy wins
    alerts_current     fingerprint — the highest seq wins
    dead_letters       (dl_partition, dl_offset, received_at) — first copy wins
    source_freshness   source — the latest changed_at wins
    sector_last_seen   sector — the latest last_seen wins

On the plain path the batch first makes sure the partitions it needs exist (in a short
transaction of its own; creators are serialised by an advisory lock), and every changed KPI
point marks its hour in `kpi_rollup_pending` in the batch's transaction, for the maintenance
loop to roll up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import psycopg
from psycopg.rows import TupleRow

from consumers.migrations import StoragePath
from consumers.storage.partitions import Partition, partition_for
from consumers.storage.policy import TIME_SERIES_TABLES, StoragePolicy
from consumers.storage.rows import (
    ALERT_CURRENT_COLUMNS,
    ALERT_TRANSITION_COLUMNS,
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    FRESHNESS_COLUMNS,
    KPI_POINT_COLUMNS,
    SECTOR_SEEN_COLUMNS,
    Row,
    RowBatch,
)

__all__ = ["PARTITION_LOCK_KEY", "StorageSink", "WriteResult", "create_partition"]

Connection = psycopg.AsyncConnection[TupleRow]
EventId = tuple[Any, Any]  # (source, event_id)

# Advisory lock taken by whoever creates or drops partitions ("ioc" + "part").
PARTITION_LOCK_KEY: Final = 0x696F63_70617274

# The staged tables' columns (events are not staged: see `_write_events`).
_COLUMNS: Final = {
    "kpi_points": KPI_POINT_COLUMNS,
    "source_freshness": FRESHNESS_COLUMNS,
    "sector_last_seen": SECTOR_SEEN_COLUMNS,
    "alert_transitions": ALERT_TRANSITION_COLUMNS,
    "alerts_current": ALERT_CURRENT_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS,
}


def _set(columns: Sequence[str], *, skip: int) -> str:
    return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[skip:])


_KPI_UPSERT: Final = f"""
INSERT INTO kpi_points AS k SELECT * FROM stage_kpi_points
ON CONFLICT (series, window_start) DO UPDATE SET {_set(KPI_POINT_COLUMNS, skip=1)}
WHERE (k.generation, k.revision) < (EXCLUDED.generation, EXCLUDED.revision)
"""  # noqa: S608 - fixed identifiers, no input

_EVENT_ID_COLUMNS: Final = (
    "source", "event_id", "occurred_at", "published_at", "partition", '"offset"', "idx",
)  # fmt: skip
_PLACE: Final = {column: place for place, column in enumerate(EVENT_COLUMNS)}  # in an event row
_EVENT_ID_FROM_ROW: Final = tuple(_PLACE[column] for column in _EVENT_ID_COLUMNS)
_SOURCE, _EVENT_ID, _OCCURRED_AT = _PLACE["source"], _PLACE["event_id"], _PLACE["occurred_at"]
_PUBLISHED: Final = tuple(_PLACE[c] for c in ("published_at", "partition", '"offset"', "idx"))
_LATER: Final = (
    '(k.published_at, k.partition, k."offset", coalesce(k.idx, -1))'
    ' < (EXCLUDED.published_at, EXCLUDED.partition, EXCLUDED."offset", coalesce(EXCLUDED.idx, -1))'
)

# Events: `event_ids` decides which copy of (source, event_id) is kept (0006_event_ids.sql).
# The batch is first reduced to one copy per id (`_one_copy_per_id`) and sorted by id (so
# writers that meet the same ids lock them in the same order), then its ids are sent as arrays.
# Returns the ids inserted or corrected, with the occurred_at of the copy a correction replaced;
# only the rows of those ids are then copied into `events`, and each replaced copy is deleted
# with its time as a value, so only its partition or chunk is searched.
_EVENT_IDS_UPSERT: Final = f"""
INSERT INTO event_ids AS k ({", ".join(_EVENT_ID_COLUMNS)})
SELECT * FROM unnest(
    %b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[], %b::integer[],
    %b::bigint[], %b::integer[]
)
ON CONFLICT (source, event_id) DO UPDATE SET
    occurred_at = EXCLUDED.occurred_at, published_at = EXCLUDED.published_at,
    partition = EXCLUDED.partition, "offset" = EXCLUDED."offset", idx = EXCLUDED.idx,
    replaced = k.occurred_at
WHERE k.occurred_at <> EXCLUDED.occurred_at AND {_LATER}
RETURNING k.source, k.event_id, k.replaced
"""  # noqa: S608 - fixed identifiers, no input

_DELETE_REPLACED: Final = (
    "DELETE FROM events WHERE source = %s AND event_id = %s AND occurred_at = %s"
)

_UPSERTS: Final = {
    "kpi_points": _KPI_UPSERT,
    "source_freshness": (
        "INSERT INTO source_freshness AS f SELECT * FROM stage_source_freshness"  # noqa: S608 - fixed
        f" ON CONFLICT (source) DO UPDATE SET {_set(FRESHNESS_COLUMNS, skip=1)}"
        " WHERE f.changed_at < EXCLUDED.changed_at"
    ),
    "sector_last_seen": (
        "INSERT INTO sector_last_seen AS s SELECT * FROM stage_sector_last_seen"  # noqa: S608 - fixed
        f" ON CONFLICT (sector) DO UPDATE SET {_set(SECTOR_SEEN_COLUMNS, skip=1)}"
        " WHERE s.last_seen < EXCLUDED.last_seen"
    ),
    "alert_transitions": (
        "INSERT INTO alert_transitions SELECT * FROM stage_alert_transitions"
        " ON CONFLICT (fingerprint, seq) DO NOTHING"
    ),
    "alerts_current": (
        "INSERT INTO alerts_current AS a SELECT * FROM stage_alerts_current"  # noqa: S608 - fixed
        f" ON CONFLICT (fingerprint) DO UPDATE SET {_set(ALERT_CURRENT_COLUMNS, skip=1)}"
        " WHERE a.seq < EXCLUDED.seq"
    ),
    "dead_letters": (
        "INSERT INTO dead_letters SELECT * FROM stage_dead_letters"
        " ON CONFLICT (dl_partition, dl_offset, received_at) DO NOTHING"
    ),
}

# Plain path: changed points mark their UTC hour for the rollup maintenance, atomically.
_KPI_UPSERT_MARKING: Final = f"""
WITH changed AS ({_KPI_UPSERT} RETURNING k.series, k.window_start),
marked AS (
    INSERT INTO kpi_rollup_pending (series, bucket)
    SELECT DISTINCT series, date_trunc('hour', window_start, 'UTC') FROM changed
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM changed
"""  # noqa: S608 - fixed identifiers, no input


@dataclass
class WriteResult:
    """Rows per table that the batch inserted or changed, and those it left unchanged."""

    written: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    partitions_created: list[str] = field(default_factory=list)
    events_replaced: int = 0  # stored events a later copy with a corrected occurred_at replaced


class StorageSink:
    """The batch write of `ioc writer` (and of bench/writer.py)."""

    def __init__(
        self,
        *,
        path: StoragePath,
        policy: StoragePolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._policy = policy
        self._clock = clock
        # The staging tables the current connection (by backend pid) has.
        self._staged_backend: int | None = None
        self._staged: set[str] = set()
        self.known_partitions: set[str] = set()

    async def write(self, conn: Connection, batch: RowBatch) -> WriteResult:
        """Write batch in one transaction; any error rolls it all back (then retry it)."""
        now = self._clock()
        batch.drop_expired(
            {
                t.name: datetime.fromtimestamp(self._policy.horizon(t.name, now), tz=UTC)
                for t in TIME_SERIES_TABLES
            }
        )
        result = WriteResult()
        if self.path == "plain-postgresql":
            # In a short transaction of its own: creating a partition locks its parent table
            # exclusively, and readers must not wait for a whole batch behind that lock.
            result.partitions_created = await self._ensure_partitions(conn, batch)
        tables = {table: rows for table, rows in batch.tables().items() if rows}
        await self._stage(conn, tables)
        try:
            async with conn.transaction():
                for table, rows in tables.items():
                    await self._upsert(conn, table, rows, result)
        except BaseException:
            # Maybe a partition vanished (retention elsewhere): look again next time.
            self.known_partitions.clear()
            raise
        return result

    async def _stage(self, conn: Connection, tables: Iterable[str]) -> None:
        """Create the staging tables the batch needs that this connection lacks, in a short
        transaction of their own (a batch rolled back must not take them along). Only those:
        at each commit PostgreSQL empties every ON COMMIT DELETE ROWS table of the session,
        used or not."""
        backend = conn.info.backend_pid
        if backend != self._staged_backend:
            self._staged_backend, self._staged = backend, set()
        # Events are not staged: their ids go to `event_ids` as arrays, then the rows kept are
        # copied straight into `events`.
        missing = [table for table in tables if table in _UPSERTS and table not in self._staged]
        if not missing:
            return
        async with conn.transaction():
            for table in missing:
                await conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS stage_{table}"
                    f" (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
        self._staged.update(missing)

    async def _upsert(
        self, conn: Connection, table: str, rows: list[Row], result: WriteResult
    ) -> None:
        async with conn.cursor() as cursor:
            if table == "events":
                written = await self._write_events(cursor, rows, result)
            else:
                await _copy(cursor, f"stage_{table}", _COLUMNS[table], rows)
                if table == "kpi_points" and self.path == "plain-postgresql":
                    await cursor.execute(_KPI_UPSERT_MARKING)
                    counted = await cursor.fetchone()
                    written = int(counted[0]) if counted else 0
                else:
                    await cursor.execute(_UPSERTS[table])
                    written = max(cursor.rowcount, 0)
        result.written[table] = written
        result.unchanged[table] = len(rows) - written

    async def _write_events(
        self, cursor: psycopg.AsyncCursor[TupleRow], rows: list[Row], result: WriteResult
    ) -> int:
        """Upsert the batch's ids into `event_ids`, then COPY the rows of the ids it kept
        straight into `events` and delete the copies that corrections replaced."""
        latest, stored = _one_copy_per_id(rows)
        columns = list(zip(*(latest[key] for key in sorted(latest)), strict=True))
        await cursor.execute(_EVENT_IDS_UPSERT, [list(columns[i]) for i in _EVENT_ID_FROM_ROW])
        kept = await cursor.fetchall()
        await _copy(cursor, "events", EVENT_COLUMNS, (stored[s, e] for s, e, _r in kept))
        replaced = [(s, e, r) for s, e, r in kept if r is not None]
        if replaced:
            await cursor.executemany(_DELETE_REPLACED, replaced)
            result.events_replaced += len(replaced)
        return len(kept)

    async def _ensure_partitions(self, conn: Connection, batch: RowBatch) -> list[str]:
        needed: set[Partition] = set()
        for table, rows, column in (
            (TIME_SERIES_TABLES[0], batch.events, 4),
            (TIME_SERIES_TABLES[1], batch.kpi_points.values(), 4),
            (TIME_SERIES_TABLES[2], batch.dead_letters.values(), 8),
        ):
            days = {row[column].timestamp() // 86_400 for row in rows}
            for day in days:
                partition = partition_for(table, day * 86_400)
                if partition.name not in self.known_partitions:
                    needed.add(partition)
        created = []
        if needed:
            async with conn.transaction():
                for partition in sorted(needed):
                    if await create_partition(conn, partition):
                        created.append(partition.name)
            self.known_partitions.update(p.name for p in needed)
        return created


def _published(row: Row) -> tuple[Any, ...]:
    """An event row's place in publishing order: record timestamp, partition, offset, idx
    (none, a one-event record: before any)."""
    at, partition, offset, idx = (row[place] for place in _PUBLISHED)
    return (at, partition, offset, -1 if idx is None else idx)


def _one_copy_per_id(rows: list[Row]) -> tuple[dict[EventId, Row], dict[EventId, Row]]:
    """(latest, stored) per (source, event_id) of the batch: the latest published copy, whose
    occurred_at is the one kept (as `event_ids` records it), and the row to store, the earliest
    published copy with that occurred_at (a repeat never replaces the first copy)."""
    by_id = {(row[_SOURCE], row[_EVENT_ID]): row for row in rows}
    if len(by_id) == len(rows):  # no repeats: the common case
        return by_id, by_id
    copies: dict[EventId, list[Row]] = {}
    for row in rows:
        copies.setdefault((row[_SOURCE], row[_EVENT_ID]), []).append(row)
    latest: dict[EventId, Row] = {}
    stored: dict[EventId, Row] = {}
    for key, group in copies.items():
        last = latest[key] = max(group, key=_published)
        stored[key] = min(
            (row for row in group if row[_OCCURRED_AT] == last[_OCCURRED_AT]), key=_published
        )
    return latest, stored


async def _copy(
    cursor: psycopg.AsyncCursor[TupleRow], table: str, columns: Sequence[str], rows: Iterable[Row]
) -> None:
    async with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)


async def create_partition(conn: Connection, partition: Partition) -> bool:
    """Create one partition unless it exists (inside the caller's transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK_KEY,))
    cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (partition.name,))
    exists: Any = await cursor.fetchone()
    if exists and exists[0]:
        return False
    start, end = partition.bounds_sql()
    await conn.execute(
        f"CREATE TABLE {partition.name} PARTITION OF {partition.table}"
        f" FOR VALUES FROM ('{start}') TO ('{end}')"
    )
    return True
