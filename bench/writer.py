"""The writer's batch write next to a raw COPY of the same rows, on one embedded PostgreSQL.

    python bench/writer.py [--events N] [--batch 5000]

Starts its own embedded PostgreSQL (temp dir), migrates it (plain path), decodes N simulator
events into `events` rows once, then times, in batches of `--batch` rows, each its own
transaction:
  (a) raw psycopg COPY of the rows into an UNLOGGED table without indexes or keys;
  (b) the writer's path, `StorageSink.write`: COPY into a temp staging table, then
      INSERT … ON CONFLICT DO NOTHING into the partitioned `events` (its unique key and
      indexes), partitions created as needed.
Last line: `ratio: writer/raw-copy = X.XX` ((b) rows/s over (a) rows/s). Target: ≥ 0.25.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import machine, simulated_events
from consumers.migrations import migrate
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


async def raw_copy(url: str, rows: list[tuple[object, ...]], size: int) -> float:
    columns = ", ".join(EVENT_COLUMNS)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE UNLOGGED TABLE raw_events (LIKE events INCLUDING DEFAULTS)")
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


async def writer_path(url: str, rows: list[tuple[object, ...]], size: int) -> float:
    # Retention is set wide so that no simulator row is left out as too old.
    policy = StoragePolicy(retention_days={"events": 36500, "kpi_points": 36500,
                                           "dead_letters": 36500})  # fmt: skip
    sink = StorageSink(path="plain-postgresql", policy=policy)
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()

    log(f"decoding {args.events:,} simulator events")
    rows = decode(args.events)
    root = Path(tempfile.mkdtemp(prefix="ioc-bench-writer-"))
    postgres = EmbeddedPostgres(state_dir=root)
    try:
        await postgres.start()
        report = await migrate(postgres.url(), connect_timeout=30)
        log(f"storage path {report.storage_path}; (a) raw COPY")
        raw = await raw_copy(postgres.url(), rows, args.batch)
        log("(b) writer path")
        writer = await writer_path(postgres.url(), rows, args.batch)
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)

    count = len(rows)
    print(f"machine: {machine()}; embedded PostgreSQL; {count:,} rows, batches of {args.batch:,}")
    print(f"(a) raw COPY into an unlogged table:          {count / raw:>9,.0f} rows/s")
    print(f"(b) writer: staging COPY + upsert into events: {count / writer:>9,.0f} rows/s")
    print(f"ratio: writer/raw-copy = {raw / writer:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
