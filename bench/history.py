"""History latency of a long series: rollups (continuous aggregate) next to raw KPI points.

    python bench/history.py [--days 90] [--series 50] [--rounds 20]

Starts its own embedded PostgreSQL (temp dir; TimescaleDB preloaded when its installation has
it), and for each storage path fills a database through the writer's batch write with `--days`
of 15-minute KPI points of `health.bed_occupancy_pct` and of `--series` other series of the
same sector (the table is not one series alone), brings the rollups up to date (TimescaleDB:
the refresh jobs, run once; plain: the writer's maintenance), then times, `--rounds` times each
and reports median and 95th percentile:

  (a) the history's query for the whole range at 1-hour buckets from the raw points
      (`kpi_points`, bucketed at query time) — what a request would cost without rollups;
  (b) the same buckets from the hourly rollup (`kpi_rollup_1h`: a real-time continuous
      aggregate on TimescaleDB, a table the maintenance keeps on the plain path);
  (c) the history API over HTTP (token, JSON) for the longest range it answers at 1-hour
      buckets (2,000 buckets: 83 days), which it reads from the rollup.

(a) and (b) run the SQL of `consumers/history/queries.py` through the API's own store and pool;
90 days at 1 hour are 2,160 buckets, more than one API answer holds, hence (c) on 83 days.
Last lines: `history 1h buckets, N days (<path>): points X ms, rollup Y ms (Z× faster)`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from psycopg import sql

from bench.common import add_shared_buffers, machine, quiet_postgres
from consumers.history import PREFIX, HistoryApi, HistoryMetrics, HistoryStore, open_read_pool
from consumers.history.params import MAX_BUCKETS, PROVINCE_ORIGIN, TimeRange
from consumers.history.queries import HistoryCatalog, SeriesPlan, SeriesSource, series_query
from consumers.migrations import StoragePath, migrate
from consumers.storage import (
    RowBatch,
    StoragePolicy,
    StorageSink,
    apply_timescale_policies,
    refresh_rollups,
)
from foundation.auth.tokens import issue_token
from foundation.contract.catalog import load_catalog
from ioc.embedded import EmbeddedPostgres

KPI = "health.bed_occupancy_pct"
WINDOW = 900.0
HOUR = 3600.0
SECRET = b"bench-history-secret-0123456789abcdef"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


async def fill(url: str, path: StoragePath, *, start: float, days: int, series: int) -> int:
    """Write the points through the writer's sink, a day of all series per batch."""
    sink = StorageSink(path=path, policy=StoragePolicy.default())
    names = [f"{KPI}|*"] + [f"health.bench_{n}|*" for n in range(series)]
    written = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for day in range(days):
            batch = RowBatch()
            for name in names:
                kpi = name.split("|", 1)[0]
                for i in range(96):
                    at = start + day * 86400 + i * WINDOW
                    window = _at(at)
                    value = 50.0 + 40.0 * ((day * 96 + i) % 97) / 97
                    batch.kpi_points[(name, window)] = (
                        name, kpi, "health", "*", window, _at(at + WINDOW), value, 10, True, 1,
                        _at(at + WINDOW), 0,  # generation
                    )  # fmt: skip
            result = await sink.write(conn, batch)
            written += result.written.get("kpi_points", 0)
    return written


async def bring_rollups_up_to_date(url: str, path: StoragePath) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if path == "plain-postgresql":
            while await refresh_rollups(conn):
                pass
            return
        await apply_timescale_policies(conn, StoragePolicy.default())
        cursor = await conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
        )
        for (job,) in await cursor.fetchall():
            await conn.execute("CALL run_job(%s)", (job,))
        await conn.execute("VACUUM ANALYZE")


async def timed(rounds: int, work: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """Median and 95th percentile of `rounds` runs (ms), after one warm-up run."""
    await work()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


async def measure(
    postgres: EmbeddedPostgres, path: StoragePath, args: argparse.Namespace
) -> dict[str, tuple[float, float]]:
    name = "history_" + path.split("-")[0]
    async with await psycopg.AsyncConnection.connect(postgres.url(), autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = postgres.url(name)
    await migrate(url, connect_timeout=30, storage=path)
    end = (time.time() // 86400) * 86400 + PROVINCE_ORIGIN  # a province midnight
    start = end - args.days * 86400
    log(f"{path}: writing {args.days} days of {args.series + 1} series")
    points = await fill(url, path, start=start, days=args.days, series=args.series)
    log(f"{path}: {points:,} KPI points; bringing the rollups up to date")
    await bring_rollups_up_to_date(url, path)

    catalog = load_catalog()
    entry = HistoryCatalog(catalog).kpi(KPI)
    pool = await open_read_pool(url, timeout=30, statement_timeout=120)
    store = HistoryStore(pool=pool, timeout=120)
    results: dict[str, tuple[float, float]] = {}
    try:
        span = TimeRange(start, end)
        sources: tuple[tuple[str, SeriesSource], ...] = (
            ("points", "kpi_points"),
            ("rollup", "kpi_rollup_1h"),
        )
        for label, table in sources:
            query = series_query(entry, SeriesPlan("1h", HOUR, table, span), None)
            rows = await store.fetch(query)
            if len(rows) != args.days * 24:
                raise SystemExit(f"{label}: {len(rows)} buckets, expected {args.days * 24}")
            results[label] = await timed(args.rounds, partial(store.fetch, query))
        history = HistoryApi(
            rows=store,
            catalog=catalog,
            token_secret=SECRET,
            keys=None,
            metrics=HistoryMetrics.create(CollectorRegistry()),
        )
        root = web.Application()
        root.add_subapp(PREFIX, history.app())
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(root))
        await client.start_server()
        try:
            token, _claims = issue_token(
                SECRET, role="leader", name="bench", sectors=None, now=time.time(), ttl=3600
            )
            api_days = min(args.days, MAX_BUCKETS // 24)
            params = {"from": str(end - api_days * 86400), "to": str(end), "bucket": "1h"}
            headers = {"Authorization": f"Bearer {token}"}

            async def api() -> None:
                response = await client.get(
                    f"{PREFIX}/kpis/{KPI}/series", params=params, headers=headers
                )
                body = await response.json()
                if response.status != 200 or body["table"] != "kpi_rollup_1h":
                    raise SystemExit(f"API answered {response.status}: {body}")

            results[f"api {api_days} days"] = await timed(args.rounds, api)
        finally:
            await client.close()
    finally:
        await pool.close()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--series", type=int, default=50, help="other series in kpi_points")
    parser.add_argument("--rounds", type=int, default=20)
    add_shared_buffers(parser)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ioc-bench-history-"))
    postgres = quiet_postgres(root, args.shared_buffers)
    results: dict[StoragePath, dict[str, tuple[float, float]]] = {}
    try:
        await postgres.start()
        paths: list[StoragePath] = ["plain-postgresql"]
        if postgres.timescaledb_version is not None:
            paths.append("timescaledb")
        for path in paths:
            results[path] = await measure(postgres, path, args)
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)

    timescale = postgres.timescaledb_version
    print(
        f"machine: {machine()}; embedded PostgreSQL"
        f"{f' with TimescaleDB {timescale}' if timescale else ''};"
        f" shared_buffers {args.shared_buffers};"
        f" {args.days} days of 15-minute points, {args.series + 1} series, {args.rounds} rounds"
    )
    for path, figures in results.items():
        for label, (median, p95) in figures.items():
            print(f"{path:<17} {label:<12} median {median:8.1f} ms   p95 {p95:8.1f} ms")
    for path, figures in results.items():
        points, rollup = figures["points"][0], figures["rollup"][0]
        print(
            f"history 1h buckets, {args.days} days ({path}): points {points:.1f} ms,"
            f" rollup {rollup:.1f} ms ({points / rollup:.1f}× faster)"
        )
    if "timescaledb" not in results:
        print("timescaledb: not measured (no TimescaleDB in the embedded PostgreSQL, see README)")


if __name__ == "__main__":
    asyncio.run(main())
