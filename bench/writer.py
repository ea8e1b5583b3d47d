"""The writer's batch write next to a raw COPY of the same rows, on both storage paths.

    python bench/writer.py [--events N] [--batch 5000] [--rounds 3]

Starts its own embedded PostgreSQL (temp dir; TimescaleDB preloaded when its installation has
it, see README), decodes N simulator events into `events` rows once, then, for each storage
path in its own database, times in batches of `--batch` rows, each its own transaction:
  (a) raw psycopg COPY of the rows into an UNLOGGED table without indexes or keys — on the
      TimescaleDB path an UNLOGGED hypertable with the same 1-day chunks, so both ratios
      compare the writer with a raw COPY into the same kind of table;
  (b) the writer's path, `StorageSink.write`: the upsert of the batch's ids into `event_ids`
      (the key), then a COPY of the rows it kept into `events` (partitioned table or
      hypertable, with its indexes), partitions created as needed.
Each path is measured `--rounds` times (default 3), alternating, each round in a fresh
database; the rates printed are medians, with each round's ratio. Last lines: `ratio:
writer/raw-copy = X.XX` (plain) and `ratio: writer/raw-copy (timescaledb) = X.XX`, the median
of the rounds' ratios ((b) rows/s over (a) rows/s). Target: ≥ 0.25 each. Without TimescaleDB the
second line says it was not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql

from bench.common import add_shared_buffers, machine, quiet_postgres, simulated_events
from consumers.migrations import StoragePath, migrate
from consumers.storage import RecordDecoder, RowBatch, StoragePolicy, StorageSink
from consumers.storage.rows import EVENT_COLUMNS
from foundation.contract.catalog import load_catalog
from foundation.contract.envelope import ContractIndex
from ioc.embedded import EmbeddedPostgres


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def decode(count: int) -> list[tuple[object, ...]]:
    """N simulator events as `events` rows (decoding is not timed: both paths get rows)."""
    catalog = load_catalog()
    decoder = RecordDecoder(ContractIndex(catalog))
    batch = RowBatch()
    for offset, raw in enumerate(simulated_events(catalog, count)):
        source = raw.split(b'"source":"', 1)[1].split(b'"', 1)[0]
        decoder.add(batch, topic="ioc.events.bench", partition=0, offset=offset, key=source,
                    value=raw, timestamp_ms=int(time.time() * 1000))  # fmt: skip
    if batch.rejected:
        raise SystemExit(f"simulator events rejected: {dict(batch.rejected)}")
    return batch.events


async def raw_copy(url: str, rows: list[tuple[object, ...]], size: int, path: StoragePath) -> float:
    columns = ", ".join(EVENT_COLUMNS)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE UNLOGGED TABLE raw_events (LIKE events INCLUDING DEFAULTS)")
        if path == "timescaledb":
            await conn.execute(
                "SELECT create_hypertable('raw_events', by_range('occurred_at', INTERVAL '1 day'),"
                " create_default_indexes => FALSE)"
            )
        started = time.perf_counter()
        for first in range(0, len(rows), size):
            async with (
                conn.transaction(),
                conn.cursor() as cursor,
                cursor.copy(f"COPY raw_events ({columns}) FROM STDIN") as copy,
            ):
                for row in rows[first : first + size]:
                    await copy.write_row(row)
        elapsed = time.perf_counter() - started
        cursor = await conn.execute("SELECT count(*) FROM raw_events")
        found = await cursor.fetchone()
    if not found or found[0] != len(rows):
        raise SystemExit(f"raw COPY stored {found} rows, expected {len(rows)}")
    return elapsed


async def writer_path(
    url: str, rows: list[tuple[object, ...]], size: int, path: StoragePath
) -> float:
    # Retention is set wide so that no simulator row is left out as too old.
    policy = StoragePolicy(retention_days={"events": 36500, "kpi_points": 36500,
                                           "dead_letters": 36500})  # fmt: skip
    sink = StorageSink(path=path, policy=policy)
    written = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for first in range(0, len(rows), size):
            result = await sink.write(conn, RowBatch(events=rows[first : first + size]))
            written += result.written.get("events", 0)
        elapsed = time.perf_counter() - started
    if written != len(rows):
        raise SystemExit(f"the writer stored {written} rows, expected {len(rows)}")
    return elapsed


async def measure(
    postgres: EmbeddedPostgres,
    path: StoragePath,
    rows: list[tuple[object, ...]],
    size: int,
    round_: int,
) -> tuple[float, float]:
    """(raw COPY seconds, writer seconds) in a fresh database of that storage path."""
    name = f"bench_{path.split('-')[0]}_{round_}"
    async with await psycopg.AsyncConnection.connect(postgres.url(), autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = postgres.url(name)
    report = await migrate(url, connect_timeout=30, storage=path)
    log(f"round {round_}, {report.storage_path}: (a) raw COPY")
    await checkpoint(postgres)
    raw = await raw_copy(url, rows, size, path)
    log(f"round {round_}, {report.storage_path}: (b) writer path")
    await checkpoint(postgres)
    writer = await writer_path(url, rows, size, path)
    async with await psycopg.AsyncConnection.connect(postgres.url(), autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
    return raw, writer


async def checkpoint(postgres: EmbeddedPostgres) -> None:
    """Each measurement starts with no dirty pages or WAL of the one before it (a checkpoint
    in the middle of one would slow it by the other's writes)."""
    async with await psycopg.AsyncConnection.connect(postgres.url(), autocommit=True) as conn:
        await conn.execute("CHECKPOINT")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="each path measured this many "
                        "times, alternating; the figures printed are the medians")  # fmt: skip
    add_shared_buffers(parser)
    args = parser.parse_args()

    log(f"decoding {args.events:,} simulator events")
    rows = decode(args.events)
    root = Path(tempfile.mkdtemp(prefix="ioc-bench-writer-"))
    postgres = quiet_postgres(root, args.shared_buffers)
    rounds: dict[StoragePath, list[tuple[float, float]]] = {}
    try:
        await postgres.start()
        paths: list[StoragePath] = ["plain-postgresql"]
        if postgres.timescaledb_version is not None:
            paths.append("timescaledb")
        for round_ in range(1, args.rounds + 1):
            for path in paths:
                figures = await measure(postgres, path, rows, args.batch, round_)
                rounds.setdefault(path, []).append(figures)
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)

    count = len(rows)
    timescale = postgres.timescaledb_version
    print(
        f"machine: {machine()}; embedded PostgreSQL"
        f"{f' with TimescaleDB {timescale}' if timescale else ''};"
        f" shared_buffers {args.shared_buffers};"
        f" {count:,} rows, batches of {args.batch:,}; rounds: {args.rounds} (medians printed)"
    )
    ratios: dict[StoragePath, float] = {}
    for path, kind, table in (
        ("plain-postgresql", "table", "partitioned"),
        ("timescaledb", "hypertable", "hypertable"),
    ):
        if path not in rounds:
            continue
        raw = statistics.median(count / r for r, _ in rounds[path])
        writer = statistics.median(count / w for _, w in rounds[path])
        each = [r / w for r, w in rounds[path]]
        ratios[path] = statistics.median(each)
        print(f"(a) raw COPY into an unlogged {kind}:{' ' * (14 - len(kind))}{raw:>9,.0f} rows/s")
        print(f"(b) writer: event_ids upsert + COPY, {table}: {writer:>9,.0f} rows/s")
        print(f"    ratio of each round ({path}): {', '.join(f'{x:.2f}' for x in each)}")
    print(f"ratio: writer/raw-copy = {ratios['plain-postgresql']:.2f}")
    if "timescaledb" in ratios:
        print(f"ratio: writer/raw-copy (timescaledb) = {ratios['timescaledb']:.2f}")
    else:
        print("ratio: writer/raw-copy (timescaledb) = not measured (no TimescaleDB, see README)")


if __name__ == "__main__":
    asyncio.run(main())
