"""Storage schema on a real PostgreSQL: migrations, storage path, partitions, retention, rollups."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from consumers.migrations import load_migrations, migrate
from consumers.storage import RecordDecoder, RowBatch, StoragePolicy, StorageSink, run_maintenance
from foundation.contract.catalog import Catalog
from foundation.contract.envelope import ContractIndex
from foundation.contract.topics import KPI
from foundation.errors import StoragePathError
from foundation.probes import probe_postgres
from tests.plugins.services import CliResult
from tests.plugins.storage import arows, rows

pytestmark = pytest.mark.integration

# Fixed columns other components read (gateway cold start, history API).
EXPECTED_COLUMNS = {
    "kpi_points": [
        "series", "kpi", "sector", "grp", "window_start", "window_end", "value", "sample_count",
        "final", "revision", "emitted_at",
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
}  # fmt: skip
NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC).timestamp()
DAY = 86_400.0


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


async def test_migrations_from_empty_then_rerun(fresh_database: str, ioc_cli: Any) -> None:
    """An empty database gets every table on the plain path; a rerun applies nothing; the
    status probe reports the recorded path (and answers before any migration too)."""
    before = await probe_postgres(fresh_database, timeout=10)
    assert before.reachable and before.details["storage_path_recorded"] is None
    first = await migrate(fresh_database, connect_timeout=10)
    after = await probe_postgres(fresh_database, timeout=10)
    assert after.details["storage_path_recorded"] == "plain-postgresql"
    assert "0003_storage" in [m.label for m in first.applied]
    assert first.storage_path == "plain-postgresql"
    for table, columns in EXPECTED_COLUMNS.items():
        assert _columns(fresh_database, table) == columns, table
    for table in ("kpi_rollup_1h", "kpi_rollup_1d", "source_freshness", "sector_last_seen"):
        assert _columns(fresh_database, table), table
    kinds = dict(
        rows(
            fresh_database,
            "SELECT relname, relkind::text FROM pg_class WHERE relname = ANY(%s)",
            [["events", "kpi_points", "dead_letters", "alerts_current"]],
        )
    )
    assert kinds == {"events": "p", "kpi_points": "p", "dead_letters": "p", "alerts_current": "r"}
    assert rows(fresh_database, "SELECT path FROM storage_path") == [("plain-postgresql",)]
    second = await migrate(fresh_database, connect_timeout=10)
    assert second.applied == [] and second.already_applied == len(load_migrations())
    assert second.storage_path == "plain-postgresql"
    result: CliResult = ioc_cli("db", "migrate", env={"DATABASE_URL": fresh_database})
    assert result.returncode == 0, result.stderr
    assert "0 applied" in result.stdout


async def test_timescaledb_asked_for_but_missing_is_an_error(
    fresh_database: str, ioc_cli: Any
) -> None:
    """IOC_STORAGE_PATH=timescaledb on a server without the extension fails with a code and
    applies nothing of the storage; a plain database refuses to change path later."""
    with pytest.raises(StoragePathError, match="CREATE EXTENSION timescaledb failed"):
        await migrate(fresh_database, connect_timeout=10, storage="timescaledb")
    assert rows(fresh_database, "SELECT to_regclass('events')::text") == [(None,)]
    result: CliResult = ioc_cli(
        "db", "migrate", env={"DATABASE_URL": fresh_database, "IOC_STORAGE_PATH": "timescaledb"}
    )
    assert result.returncode == 1
    assert result.stderr.startswith("ioc: error [storage_path_unavailable]")
    await migrate(fresh_database, connect_timeout=10)  # auto: plain
    with pytest.raises(StoragePathError, match="set up for plain-postgresql"):
        await migrate(fresh_database, connect_timeout=10, storage="timescaledb")


async def test_partitions_ahead_and_retention_by_dropping(storage_database: str) -> None:
    """Maintenance creates today's partition and those ahead, and drops partitions entirely past
    retention (with their rows) while younger ones keep theirs; the clock is injected."""
    policy = StoragePolicy(
        retention_days={"events": 3, "kpi_points": 14, "dead_letters": 3}, partitions_ahead_days=2
    )
    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        report = await run_maintenance(conn, path="plain-postgresql", policy=policy, now=NOW)
    assert _partitions(storage_database, "events") == [
        "events_p20300115", "events_p20300116", "events_p20300117",
    ]  # fmt: skip
    assert _partitions(storage_database, "kpi_points") == ["kpi_points_p20300114"]  # a Monday
    assert "dead_letters_p20300117" in report.created and report.dropped == []

    # A row on the 15th and one on the 17th, written through the sink at NOW.
    sink = StorageSink(path="plain-postgresql", policy=policy, clock=lambda: NOW)
    batch = RowBatch()
    for n, day in ((1, 15), (2, 17)):
        at = datetime(2030, 1, day, 6, tzinfo=UTC)
        batch.events.append(
            ("src", f"e{n}", "health", "t", at, 1.0, None, None, None, 1, "ioc.events.health",
             0, n, None, at)
        )  # fmt: skip
    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        await sink.write(conn, batch)
        later = NOW + 5 * DAY  # the 20th: the 15th and 16th are past 3 days, the 17th is not
        report = await run_maintenance(conn, path="plain-postgresql", policy=policy, now=later)
    assert sorted(report.dropped) == [
        "dead_letters_p20300115", "dead_letters_p20300116", "events_p20300115", "events_p20300116",
    ]  # fmt: skip
    # The 17th holds a row; the 20th to the 22nd are today and ahead (18th, 19th never needed).
    assert _partitions(storage_database, "events") == [
        "events_p20300117", "events_p20300120", "events_p20300121", "events_p20300122",
    ]  # fmt: skip
    assert rows(storage_database, "SELECT event_id FROM events") == [("e2",)]

    # A late row older than retention is left out (counted), not written into a new partition.
    old = RowBatch()
    stamp = datetime(2030, 1, 14, tzinfo=UTC)
    old.events.append(
        ("src", "e0", "health", "t", stamp, 1.0, None, None, None, 1, "t", 0, 0, None, stamp)
    )
    late_sink = StorageSink(path="plain-postgresql", policy=policy, clock=lambda: later)
    async with await psycopg.AsyncConnection.connect(storage_database, autocommit=True) as conn:
        result = await late_sink.write(conn, old)
    assert old.skipped["past_retention"] == 1 and result.written == {}
    assert "events_p20300114" not in _partitions(storage_database, "events")


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


async def test_rollups_hold_hourly_and_daily_aggregates(
    storage_database: str, storage_catalog: Catalog
) -> None:
    """The 1 h and 1 day rollups equal a recomputation from the stored points (highest revision
    only; days of the province, UTC+7), also after a late revision changes a point."""
    decoder = RecordDecoder(ContractIndex(storage_catalog))
    sink = StorageSink(path="plain-postgresql", policy=StoragePolicy.default())
    # 15-minute windows from 14:00 to 19:45 UTC: across hours and across local midnight (17:00 UTC).
    base = datetime(2026, 11, 20, 14, tzinfo=UTC).timestamp()
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
        await run_maintenance(conn, path="plain-postgresql", policy=StoragePolicy.default(),
                              now=base)  # fmt: skip
        assert await rollup("kpi_rollup_1h") == _expected(latest, hour)
        assert await rollup("kpi_rollup_1d") == _expected(latest, local_day)
        assert len(await rollup("kpi_rollup_1d")) == 4  # two series × two local days

        # A late revision of one point: only its hour and day are recomputed, correctly.
        late = RowBatch()
        start = base + 3 * 900
        decoder.add(late, topic=KPI, partition=0, offset=99, key=b"a|*",
                    value=json.dumps(_point("a|*", start, 2, 1000.0)).encode(),
                    timestamp_ms=0)  # fmt: skip
        latest[("a|*", start)] = _point("a|*", start, 2, 1000.0)
        await sink.write(conn, late)
        assert await arows(storage_database, "SELECT count(*) FROM kpi_rollup_pending") == [(1,)]
        await run_maintenance(conn, path="plain-postgresql", policy=StoragePolicy.default(),
                              now=base)  # fmt: skip
    assert await rollup("kpi_rollup_1h") == _expected(latest, hour)
    assert await rollup("kpi_rollup_1d") == _expected(latest, local_day)
    assert await arows(storage_database, "SELECT count(*) FROM kpi_rollup_pending") == [(0,)]
    hour_of_late = datetime.fromtimestamp(hour(start), tz=UTC) - timedelta(0)
    assert (await rollup("kpi_rollup_1h"))[("a|*", hour_of_late.timestamp())][3] == 1000.0
