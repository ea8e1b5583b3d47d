"""Storage schema on a real PostgreSQL, on both storage paths: migrations, the path, retention,
rollups, late rows into compressed chunks, and what keeps it all current."""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from consumers.migrations import StoragePath, load_migrations, migrate
from consumers.storage import (
    MaintenanceReport,
    RecordDecoder,
    RowBatch,
    StoragePolicy,
    StorageSink,
    WriteResult,
    apply_timescale_policies,
    run_maintenance,
)
from consumers.storage.timescale import EVENT_IDS_PRUNE
from foundation.contract.catalog import Catalog
from foundation.contract.envelope import ContractIndex
from foundation.contract.topics import DEADLETTER, KPI
from foundation.errors import StoragePathError
from foundation.probes import probe_postgres
from tests.plugins.services import BOTH_PATHS, CliResult
from tests.plugins.storage import arows, bring_rollups_up_to_date, rows, run_timescale_jobs

pytestmark = pytest.mark.integration

# Fixed columns other components read (gateway cold start, history API).
EXPECTED_COLUMNS = {
    "kpi_points": [
        "series", "kpi", "sector", "grp", "window_start", "window_end", "value", "sample_count",
        "final", "revision", "emitted_at", "generation",
    ],
    "alerts_current": [
        "fingerprint", "seq", "state", "severity", "sector", "rule", "started_at", "updated_at",
        "record",
    ],
    "alert_transitions": [
        "fingerprint", "seq", "at", "transition", "state", "severity", "sector", "rule", "actor",
        "record",
    ],
    "dead_letters": [
        "reason", "detail", "source", "event_id", "topic", "partition", "offset", "idx",
        "received_at", "original", "dl_partition", "dl_offset", "sender",
    ],
    "events": [
        "source", "event_id", "sector", "type", "occurred_at", "value", "unit", "district", "data",
        "schema_version", "topic", "partition", "offset", "idx", "published_at",
    ],
    "event_ids": [
        "source", "event_id", "occurred_at", "published_at", "partition", "offset", "idx",
        "replaced",
    ],
}  # fmt: skip
NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC).timestamp()
DAY = 86_400.0
WIDE = StoragePolicy(retention_days={"events": 36500, "kpi_points": 36500, "dead_letters": 36500})


def _columns(url: str, table: str) -> list[str]:
    return [
        name
        for (name,) in rows(
            url,
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " ORDER BY ordinal_position",
            [table],
        )
    ]


def _partitions(url: str, table: str) -> list[str]:
    found = rows(
        url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        [table],
    )
    return [name for (name,) in found]


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _event_row(
    event_id: str, at: float, offset: int, *, published: float | None = None
) -> tuple[Any, ...]:
    stamp = _at(at)
    return ("src", event_id, "health", "t", stamp, 1.0, None, None, None, 1,
            "ioc.events.health", 0, offset, None, _at(published or at))  # fmt: skip


@BOTH_PATHS
async def test_migrations_from_empty_then_rerun(
    path_database: str, storage_path: StoragePath, ioc_cli: Any
) -> None:
    """An empty database gets every table on the path its server offers (plain partitions, or
    hypertables with 1-day/7-day chunks and real-time continuous aggregates); `events` has no
    unique key of its own (`event_ids` holds it); a rerun applies nothing; the status probe
    reports the recorded path (and answers before any migration too)."""
    before = await probe_postgres(path_database, timeout=10)
    assert before.reachable and before.details["storage_path_recorded"] is None
    first = await migrate(path_database, connect_timeout=10)
    after = await probe_postgres(path_database, timeout=10)
    assert first.storage_path == after.details["storage_path_recorded"] == storage_path
    assert {"0003_storage", "0006_event_ids"} <= {m.label for m in first.applied}
    for table, columns in EXPECTED_COLUMNS.items():
        assert _columns(path_database, table) == columns, table
    for table in ("kpi_rollup_1h", "kpi_rollup_1d", "source_freshness", "sector_last_seen"):
        assert _columns(path_database, table), table
    kinds = dict(
        rows(
            path_database,
            "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY(%s)",
            [["events", "kpi_points", "dead_letters", "alerts_current", "kpi_rollup_1h"]],
        )
    )
    keys = rows(
        path_database,
        "SELECT conname FROM pg_constraint WHERE conrelid = 'events'::regclass"
        " AND contype IN ('p', 'u')",
    )
    assert keys == []
    if storage_path == "plain-postgresql":
        assert kinds == {"events": "p", "kpi_points": "p", "dead_letters": "p",
                         "alerts_current": "r", "kpi_rollup_1h": "r"}  # fmt: skip
        assert first.timescaledb is not None and first.timescaledb.installed is None
    else:
        assert kinds == {"events": "r", "kpi_points": "r", "dead_letters": "r",
                         "alerts_current": "r", "kpi_rollup_1h": "v"}  # fmt: skip
        assert first.timescaledb is not None and first.timescaledb.installed
        chunks = rows(
            path_database,
            "SELECT hypertable_name, column_name, time_interval"
            " FROM timescaledb_information.dimensions WHERE hypertable_schema = 'public'"
            " ORDER BY hypertable_name",
        )
        assert chunks == [
            ("dead_letters", "received_at", timedelta(days=7)),
            ("events", "occurred_at", timedelta(days=1)),
            ("kpi_points", "window_start", timedelta(days=7)),
        ]
        aggregates = rows(
            path_database,
            "SELECT view_name, materialized_only, view_definition LIKE '%%Asia/Ho_Chi_Minh%%'"
            " FROM timescaledb_information.continuous_aggregates ORDER BY view_name",
        )
        assert aggregates == [("kpi_rollup_1d", False, True), ("kpi_rollup_1h", False, False)]
        compression = rows(
            path_database,
            "SELECT hypertable::text, segmentby, orderby"
            " FROM timescaledb_information.hypertable_compression_settings"
            " WHERE hypertable::text IN ('events', 'kpi_points', 'dead_letters')"
            " ORDER BY 1",
        )
        assert compression == [
            ("dead_letters", "source", "received_at DESC,dl_partition,dl_offset"),
            ("events", "sector,type", "occurred_at DESC"),
            ("kpi_points", "series", "window_start DESC"),
        ]
    assert rows(path_database, "SELECT path FROM storage_path") == [(storage_path,)]
    second = await migrate(path_database, connect_timeout=10)
    assert second.applied == [] and second.already_applied == len(load_migrations())
    assert second.storage_path == storage_path and second.notes == []
    result: CliResult = ioc_cli("db", "migrate", env={"DATABASE_URL": path_database})
    assert result.returncode == 0, result.stderr
    assert "0 applied" in result.stdout


@BOTH_PATHS
async def test_an_asked_for_path_is_taken_or_refused(
    path_database: str, storage_path: StoragePath, ioc_cli: Any
) -> None:
    """IOC_STORAGE_PATH=timescaledb on a server without TimescaleDB loaded fails with a code and
    applies nothing of the storage; IOC_STORAGE_PATH=plain-postgresql on a TimescaleDB server
    gives plain tables; either way a database refuses to change path later."""
    if storage_path == "plain-postgresql":
        with pytest.raises(StoragePathError, match="IOC_STORAGE_PATH=timescaledb, but Timescale"):
            await migrate(path_database, connect_timeout=10, storage="timescaledb")
        assert rows(path_database, "SELECT to_regclass('events')::text") == [(None,)]
        result: CliResult = ioc_cli(
            "db", "migrate", env={"DATABASE_URL": path_database, "IOC_STORAGE_PATH": "timescaledb"}
        )
        assert result.returncode == 1
        assert result.stderr.startswith("ioc: error [storage_path_unavailable]")
        await migrate(path_database, connect_timeout=10)  # auto: plain
    else:
        report = await migrate(path_database, connect_timeout=10, storage="plain-postgresql")
        assert report.storage_path == "plain-postgresql" and report.notes == []
        assert rows(path_database, "SELECT relkind::text FROM pg_class WHERE relname = 'events'")[
            0
        ] == ("p",)
        assert rows(path_database, "SELECT extname FROM pg_extension") == [("plpgsql",)]
    with pytest.raises(StoragePathError, match="set up for plain-postgresql"):
        await migrate(path_database, connect_timeout=10, storage="timescaledb")


@BOTH_PATHS
async def test_retention_drops_whole_partitions_or_chunks(
    storage_database: str, storage_path: StoragePath
) -> None:
    """Rows past retention go by whole partitions (the writer's maintenance, plain path) or
    whole chunks (TimescaleDB's retention job), younger ones stay, `event_ids` follows; a late
    row older than retention is left out by the writer, not stored."""
    if storage_path == "plain-postgresql":
        await _plain_partitions_ahead_and_retention(storage_database)
        return
    now = time.time()
    narrow = StoragePolicy(retention_days={"events": 3, "kpi_points": 14, "dead_letters": 3})
    batch = RowBatch(events=[_event_row("e1", now - 10 * DAY, 1), _event_row("e2", now - DAY, 2)])
    for start, revision in ((now - 30 * DAY, 0), (now - 2 * DAY, 0)):
        window = _at(start - start % 900)
        batch.kpi_points[("s|*", window)] = ("s|*", "k", "health", "*", window,
                                             window + timedelta(minutes=15), 1.0, 1, True,
                                             revision, window, 0)  # fmt: skip
    received = _at(now - 10 * DAY)
    batch.dead_letters[(0, 1, received)] = ("bad_json", None, "src", None, None, None, None, None,
                                  received, b"{", 0, 1, "src")  # fmt: skip
    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        await StorageSink(path=storage_path, policy=WIDE).write(conn, batch)
        await apply_timescale_policies(conn, narrow)
        nothing = await run_maintenance(conn, path=storage_path, policy=narrow, now=now)
        assert nothing == MaintenanceReport()  # the jobs do it on this path, not the writer
    ran = await run_timescale_jobs(storage_database, "policy_retention", EVENT_IDS_PRUNE)
    assert len(ran) == 4
    assert await arows(storage_database, "SELECT event_id FROM events") == [("e2",)]
    assert await arows(storage_database, "SELECT event_id FROM event_ids") == [("e2",)]
    assert len(await arows(storage_database, "SELECT 1 FROM kpi_points")) == 1
    assert await arows(storage_database, "SELECT count(*) FROM dead_letters") == [(0,)]
    chunks = await arows(
        storage_database,
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'events'",
    )
    assert chunks == [(1,)]
    late = RowBatch(events=[_event_row("e0", now - 5 * DAY, 3)])
    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        result = await StorageSink(path=storage_path, policy=narrow).write(conn, late)
    assert late.skipped["past_retention"] == 1 and result.written == {}


async def _plain_partitions_ahead_and_retention(url: str) -> None:
    """Maintenance creates today's partition and those ahead, and drops partitions entirely past
    retention (with their rows) while younger ones keep theirs; the clock is injected."""
    policy = StoragePolicy(
        retention_days={"events": 3, "kpi_points": 14, "dead_letters": 3}, partitions_ahead_days=2
    )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        report = await run_maintenance(conn, path="plain-postgresql", policy=policy, now=NOW)
    assert _partitions(url, "events") == [
        "events_p20300115", "events_p20300116", "events_p20300117",
    ]  # fmt: skip
    assert _partitions(url, "kpi_points") == ["kpi_points_p20300114"]  # a Monday
    assert "dead_letters_p20300117" in report.created and report.dropped == []

    # A row on the 15th and one on the 17th, written through the sink at NOW.
    sink = StorageSink(path="plain-postgresql", policy=policy, clock=lambda: NOW)
    batch = RowBatch()
    for n, day in ((1, 15), (2, 17)):
        batch.events.append(
            _event_row(f"e{n}", datetime(2030, 1, day, 6, tzinfo=UTC).timestamp(), n)
        )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await sink.write(conn, batch)
        later = NOW + 5 * DAY  # the 20th: the 15th and 16th are past 3 days, the 17th is not
        report = await run_maintenance(conn, path="plain-postgresql", policy=policy, now=later)
    assert sorted(report.dropped) == [
        "dead_letters_p20300115", "dead_letters_p20300116", "events_p20300115", "events_p20300116",
    ]  # fmt: skip
    # The 17th holds a row; the 20th to the 22nd are today and ahead (18th, 19th never needed).
    assert _partitions(url, "events") == [
        "events_p20300117", "events_p20300120", "events_p20300121", "events_p20300122",
    ]  # fmt: skip
    assert rows(url, "SELECT event_id FROM events") == [("e2",)]
    # The key of e1 goes a day after its partition could (3 + 1 days before the 20th).
    assert report.event_ids_pruned == 1
    assert rows(url, "SELECT event_id FROM event_ids") == [("e2",)]

    # A late row older than retention is left out (counted), not written into a new partition.
    old = RowBatch(events=[_event_row("e0", datetime(2030, 1, 14, tzinfo=UTC).timestamp(), 0)])
    late_sink = StorageSink(path="plain-postgresql", policy=policy, clock=lambda: later)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        result = await late_sink.write(conn, old)
    assert old.skipped["past_retention"] == 1 and result.written == {}
    assert "events_p20300114" not in _partitions(url, "events")


def _point(series: str, start: float, revision: int, value: float | None) -> dict[str, Any]:
    return {
        "kind": "kpi", "series": series, "kpi": "k", "sector": "health", "group": "*",
        "window_start": start, "window_end": start + 900, "value": value,
        "count": revision + 3, "final": revision > 0, "revision": revision,
        "emitted_at": start + 900, "newest": start + 899,
    }  # fmt: skip


def _expected(points: dict[tuple[str, float], dict[str, Any]], bucket_of: Any) -> dict[Any, Any]:
    grouped: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for (series, start), point in points.items():
        grouped[(series, bucket_of(start))].append(point)
    out = {}
    for key, members in grouped.items():
        values = [p["value"] for p in members if p["value"] is not None]
        latest = max(members, key=lambda p: p["window_start"])
        out[key] = (
            len(members),
            pytest.approx(statistics.fmean(values)) if values else None,
            min(values, default=None),
            max(values, default=None),
            pytest.approx(sum(values)) if values else None,
            latest["value"],
            sum(p["count"] for p in members),
        )
    return out


async def _compress_all(url: str, *tables: str) -> int:
    """Compress every chunk of these hypertables now (as the compression job would when they
    are old enough); how many chunks."""
    compressed = 0
    for table in tables:
        found = await arows(url, "SELECT compress_chunk(c) FROM show_chunks(%s) c", [table])
        compressed += len(found)
    return compressed


@BOTH_PATHS
async def test_rollups_hold_hourly_and_daily_aggregates(
    storage_database: str, storage_catalog: Catalog, storage_path: StoragePath
) -> None:
    """The 1 h and 1 day rollups equal a recomputation from the stored points (highest revision
    only; days of the province, UTC+7), also after a late revision changes a point — on the
    TimescaleDB path one that lands in a compressed chunk, picked up by the refresh job."""
    decoder = RecordDecoder(ContractIndex(storage_catalog))
    sink = StorageSink(path=storage_path, policy=StoragePolicy.default())
    # 15-minute windows from 14:00 to 19:45 UTC two weeks ago: across hours and across local
    # midnight (17:00 UTC).
    base = (time.time() // DAY - 14) * DAY + 14 * 3600
    latest: dict[tuple[str, float], dict[str, Any]] = {}
    batch = RowBatch()
    for series_n, series in enumerate(("a|*", "b|*")):
        for i in range(24):
            start = base + i * 900
            value = None if (i == 5 and series_n == 0) else float((i * 7 + series_n * 13) % 40)
            for revision in (0, 1):
                point = _point(series, start, revision, value if revision else -1.0)
                decoder.add(batch, topic=KPI, partition=0, offset=i, key=series.encode(),
                            value=json.dumps(point).encode(), timestamp_ms=0)  # fmt: skip
            latest[(series, start)] = _point(series, start, 1, value)

    async def rollup(table: str) -> dict[Any, Any]:
        found = await arows(
            storage_database,
            f"SELECT series, bucket, points, value_avg, value_min, value_max, value_sum,"  # noqa: S608
            f" value_last, samples FROM {table} ORDER BY series, bucket",
        )
        return {(r[0], r[1].timestamp()): tuple(r[2:]) for r in found}

    def hour(start: float) -> float:
        return start - start % 3600

    def local_day(start: float) -> float:
        zone = ZoneInfo("Asia/Ho_Chi_Minh")
        moment = datetime.fromtimestamp(start, tz=zone)
        return datetime(moment.year, moment.month, moment.day, tzinfo=zone).timestamp()

    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        await sink.write(conn, batch)
    if storage_path == "timescaledb":
        # Never refreshed: the continuous aggregates answer from the points (real time).
        assert await rollup("kpi_rollup_1h") == _expected(latest, hour)
    await bring_rollups_up_to_date(storage_database, storage_path)
    assert await rollup("kpi_rollup_1h") == _expected(latest, hour)
    assert await rollup("kpi_rollup_1d") == _expected(latest, local_day)
    assert len(await rollup("kpi_rollup_1d")) == 4  # two series × two local days

    # A late revision of one point: only its hour and day are recomputed, correctly.
    if storage_path == "timescaledb":
        assert await _compress_all(storage_database, "kpi_points") >= 1
    late = RowBatch()
    start = base + 3 * 900
    decoder.add(late, topic=KPI, partition=0, offset=99, key=b"a|*",
                value=json.dumps(_point("a|*", start, 2, 1000.0)).encode(),
                timestamp_ms=0)  # fmt: skip
    before = _expected(latest, hour)
    latest[("a|*", start)] = _point("a|*", start, 2, 1000.0)
    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        await sink.write(conn, late)
    assert await arows(
        storage_database,
        "SELECT revision, value FROM kpi_points WHERE series = 'a|*' AND window_start = %s",
        [_at(start)],
    ) == [(2, 1000.0)]
    if storage_path == "plain-postgresql":
        assert await arows(storage_database, "SELECT count(*) FROM kpi_rollup_pending") == [(1,)]
    else:  # materialized before the revision: stale until the refresh job runs
        assert await rollup("kpi_rollup_1h") == before
    await bring_rollups_up_to_date(storage_database, storage_path)
    assert await rollup("kpi_rollup_1h") == _expected(latest, hour)
    assert await rollup("kpi_rollup_1d") == _expected(latest, local_day)
    if storage_path == "plain-postgresql":
        assert await arows(storage_database, "SELECT count(*) FROM kpi_rollup_pending") == [(0,)]
    assert (await rollup("kpi_rollup_1h"))[("a|*", hour(start))][3] == 1000.0


@BOTH_PATHS
async def test_late_rows_into_compressed_chunks_end_as_one_row(
    storage_database: str, storage_catalog: Catalog, storage_path: StoragePath
) -> None:
    """Three weeks old rows, their chunks compressed (TimescaleDB path), then written again: a
    repeated event and dead letter change nothing, a later KPI revision replaces its point, and
    an event re-sent with a corrected occurred_at replaces its stored copy — one row each."""
    decoder = RecordDecoder(ContractIndex(storage_catalog))
    sink = StorageSink(path=storage_path, policy=StoragePolicy.default())
    old = (time.time() // DAY - 21) * DAY + 8 * 3600
    window = old - old % 900
    source = "his-bvdk-tinh"

    def event(event_id: str, at: float, value: float) -> bytes:
        return json.dumps({
            "event_id": event_id, "source": source, "sector": "health", "type": "bed_occupancy",
            "occurred_at": _at(at).isoformat(), "value": value,
        }).encode()  # fmt: skip

    def kpi(revision: int, value: float) -> bytes:
        point = _point("health.bed_occupancy_pct|*", window, revision, value)
        return json.dumps(point | {"kpi": "health.bed_occupancy_pct"}).encode()

    dead_letter = json.dumps({
        "reason": "bad_json", "source": source, "topic": "ioc.events.health", "partition": 0,
        "offset": 5, "received_at": old, "original_b64": "e30=",
    }).encode()  # fmt: skip

    async def write(records: list[tuple[str, int, bytes, float]]) -> WriteResult:
        batch = RowBatch()
        for topic, offset, value, published in records:
            decoder.add(batch, topic=topic, partition=0, offset=offset, key=source.encode(),
                        value=value, timestamp_ms=int(published * 1000))  # fmt: skip
        assert not batch.rejected and not batch.skipped
        async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as c:
            return await sink.write(c, batch)

    health = "ioc.events.health"
    await write([
        (health, 1, event("e1", old, 80.0), old),
        (health, 2, event("e2", old + 60, 81.0), old + 60),
        (health, 3, event("e3", old + 120, 82.0), old + 120),
        (KPI, 1, kpi(1, 80.0), old + 900),
        (DEADLETTER, 1, dead_letter, old),
    ])  # fmt: skip
    if storage_path == "timescaledb":
        assert await _compress_all(storage_database, "events", "kpi_points", "dead_letters") == 3
    later = float(int(time.time()))  # whole seconds: compared after a trip through SQL
    result = await write([
        (health, 11, event("e1", old, 99.0), later),  # a repeat (the first copy stays)
        (health, 12, event("e2", old + 3600, 91.0), later),  # corrected: an hour later
        (health, 13, event("e3", later - 60, 92.0), later),  # corrected: into today's chunk
        (KPI, 11, kpi(2, 70.0), later),  # a later revision
        (KPI, 12, kpi(0, 10.0), later),  # an older one
        (DEADLETTER, 1, dead_letter, later),  # the same dead letter again
    ])  # fmt: skip
    assert result.events_replaced == 2
    assert result.written["events"] == 2 and result.unchanged["events"] == 1
    assert await arows(
        storage_database,
        'SELECT event_id, extract(epoch FROM occurred_at)::float8, value, "offset" FROM events'
        " ORDER BY event_id",
    ) == [("e1", old, 80.0, 1), ("e2", old + 3600, 91.0, 12), ("e3", later - 60, 92.0, 13)]
    assert await arows(
        storage_database,
        "SELECT event_id, extract(epoch FROM occurred_at)::float8,"
        " extract(epoch FROM replaced)::float8 FROM event_ids ORDER BY event_id",
    ) == [("e1", old, None), ("e2", old + 3600, old + 60), ("e3", later - 60, old + 120)]
    assert await arows(storage_database, "SELECT revision, value FROM kpi_points") == [(2, 70.0)]
    assert await arows(storage_database, "SELECT count(*) FROM dead_letters") == [(1,)]

    # The first copies again (a writer re-reading old records): nothing changes.
    await write([(health, 2, event("e2", old + 60, 81.0), old + 60),
                 (health, 3, event("e3", old + 120, 82.0), old + 120)])  # fmt: skip
    assert await arows(
        storage_database,
        "SELECT event_id, extract(epoch FROM occurred_at)::float8 FROM events ORDER BY 1",
    ) == [("e1", old), ("e2", old + 3600), ("e3", later - 60)]


@BOTH_PATHS
async def test_what_keeps_the_storage_current(
    storage_database: str, storage_path: StoragePath
) -> None:
    """Plain path: the writer's maintenance creates partitions and rolls up; TimescaleDB path:
    the maintenance does nothing by hand, nine jobs (retention, compression, aggregate
    refresh, event ids) are installed once, run, and the compression job compresses old
    chunks."""
    now = time.time()
    old = RowBatch(events=[_event_row("old", now - 10 * DAY, 1), _event_row("new", now, 2)])
    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        await StorageSink(path=storage_path, policy=StoragePolicy.default()).write(conn, old)
        report = await run_maintenance(
            conn, path=storage_path, policy=StoragePolicy.default(), now=now
        )
        if storage_path == "plain-postgresql":
            assert report.created  # today's and the next days' partitions
            return
        assert report.created == report.dropped == [] and report.rollup_hours == 0
        assert await arows(storage_database, "SELECT to_regclass('kpi_rollup_pending')") == [
            (None,)
        ]
        first = await apply_timescale_policies(conn, StoragePolicy.default())
        again = await apply_timescale_policies(conn, StoragePolicy.default())
    assert len(first.installed) == 9 and first.kept == []
    assert again.installed == [] and sorted(again.kept) == sorted(first.installed)
    jobs = await arows(
        storage_database,
        "SELECT proc_name, coalesce(hypertable_name, ''), config ->> 'drop_after',"
        " config ->> 'compress_after', config ->> 'start_offset'"
        " FROM timescaledb_information.jobs WHERE job_id >= 1000 ORDER BY 1, 2",
    )
    assert jobs == [
        ("ioc_prune_event_ids", "", "91 days", None, None),
        ("policy_compression", "dead_letters", None, "7 days", None),
        ("policy_compression", "events", None, "7 days", None),
        ("policy_compression", "kpi_points", None, "30 days", None),
        ("policy_refresh_continuous_aggregate", "kpi_rollup_1d", None, None, "729 days"),
        ("policy_refresh_continuous_aggregate", "kpi_rollup_1h", None, None, "729 days"),
        ("policy_retention", "dead_letters", "90 days", None, None),
        ("policy_retention", "events", "90 days", None, None),
        ("policy_retention", "kpi_points", "730 days", None, None),
    ]
    ran = await run_timescale_jobs(
        storage_database,
        "policy_retention", "policy_compression", "policy_refresh_continuous_aggregate",
        EVENT_IDS_PRUNE,
    )  # fmt: skip
    assert len(ran) == 9
    chunks = await arows(
        storage_database,
        "SELECT is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'events' ORDER BY range_start",
    )
    assert chunks == [(True,), (False,)]  # ten days old: compressed; today's: not yet
    assert await arows(storage_database, "SELECT event_id FROM events ORDER BY 1") == [
        ("new",),
        ("old",),
    ]


@BOTH_PATHS
async def test_a_later_broker_epochs_point_supersedes_the_stored_one(
    storage_database: str, storage_catalog: Catalog, storage_path: StoragePath
) -> None:
    """A window spanning a restart of the embedded broker: the new epoch's final point (revision
    11) replaces the old epoch's provisional one (revision 63); the old epoch's late revision,
    read again afterwards, does not come back."""
    decoder = RecordDecoder(ContractIndex(storage_catalog))
    sink = StorageSink(path=storage_path, policy=StoragePolicy.default())
    start = time.time() // 900 * 900 - 1800
    old_epoch = {**_point("a|*", start, 63, 358.0), "final": False, "generation": 1_000}
    new_epoch = {**_point("a|*", start, 11, 422.0), "final": True, "generation": 2_000}
    late_old = {**_point("a|*", start, 64, 359.0), "final": True, "generation": 1_000}
    for offset, point in enumerate((old_epoch, new_epoch, late_old)):
        batch = RowBatch()
        decoder.add(batch, topic=KPI, partition=0, offset=offset, key=b"a|*",
                    value=json.dumps(point).encode(), timestamp_ms=0)  # fmt: skip
        async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
            await sink.write(conn, batch)
    assert await arows(
        storage_database, "SELECT value, final, revision, generation FROM kpi_points"
    ) == [(422.0, True, 11, 2_000)]


@BOTH_PATHS
async def test_a_refused_first_batch_leaves_the_connection_able_to_write(
    storage_database: str, storage_path: StoragePath
) -> None:
    """The first batch on a connection is refused (a NUL in a text field): the staging tables
    are made outside its transaction, so its rollback does not take them along and the next
    batch on that connection, the writer's row-by-row retry, is written."""
    sink = StorageSink(path=storage_path, policy=WIDE)
    at = time.time() // 60 * 60 - 600
    bad = (*_event_row("bad", at, 0)[:6], "\x00", *_event_row("bad", at, 0)[7:])
    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        with pytest.raises(psycopg.DataError):
            await sink.write(conn, RowBatch(events=[_event_row("good", at, 1), bad]))
        result = await sink.write(conn, RowBatch(events=[_event_row("good", at, 1)]))
    assert result.written == {"events": 1}
    assert await arows(storage_database, "SELECT event_id FROM events") == [("good",)]
