"""Fixtures of the storage tests: a migrated database, an in-process writer, producers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from consumers.migrations import StoragePath, migrate
from consumers.storage import (
    StoragePolicy,
    StorageWriter,
    WriterConfig,
    WriterMetrics,
    apply_timescale_policies,
    refresh_rollups,
)
from foundation.contract.catalog import Catalog, load_catalog


@pytest.fixture
async def storage_database(path_database: str, storage_path: StoragePath) -> str:
    """A fresh database with every migration applied, on this case's storage path."""
    report = await migrate(path_database, connect_timeout=10, storage=storage_path)
    assert report.storage_path == storage_path
    return path_database


async def run_timescale_jobs(url: str, *proc_names: str) -> list[int]:
    """Run the installed TimescaleDB jobs of these procedures now (`CALL run_job`), as their
    schedule would; the ids of the jobs run (test servers run no scheduler)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = ANY(%s)"
            " ORDER BY job_id",
            (list(proc_names),),
        )
        jobs = [int(job) for (job,) in await cursor.fetchall()]
        for job in jobs:
            await conn.execute("CALL run_job(%s)", (job,))
    return jobs


async def bring_rollups_up_to_date(url: str, path: StoragePath) -> None:
    """What keeps the rollups current, run now: the writer's maintenance (plain path), or the
    continuous aggregates' refresh jobs (TimescaleDB path; installed if not yet)."""
    if path == "plain-postgresql":
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await refresh_rollups(conn)
        return
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await apply_timescale_policies(conn, StoragePolicy.default())
    ran = await run_timescale_jobs(url, "policy_refresh_continuous_aggregate")
    assert len(ran) == 2, ran


@pytest.fixture(scope="session")
def storage_catalog() -> Catalog:
    return load_catalog()


def rows(url: str, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one query on a fresh connection and return its rows (never while a writer runs
    on this event loop: a blocked loop cannot finish the transaction we would wait for)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query.encode(), tuple(params)).fetchall()


async def arows(url: str, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    """`rows`, without blocking the event loop."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(query.encode(), tuple(params))
        return await cursor.fetchall()


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, interval: float = 0.2
) -> None:
    """Await check() until it is true; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


async def produce(
    bootstrap: str, records: Iterable[tuple[str, str | None, Any]]
) -> list[tuple[int, int]]:
    """Send (topic, key, value) records in order; a value that is not bytes is sent as JSON.

    Returns each record's (partition, offset).
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    placed = []
    try:
        for topic, key, value in records:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            sent = await producer.send_and_wait(topic, key=key.encode() if key else None, value=raw)
            placed.append((sent.partition, sent.offset))
    finally:
        await producer.stop()
    return placed


class RunningWriter:
    """A StorageWriter on its own task, with its own registry (for metric assertions)."""

    def __init__(
        self, writer: StorageWriter, registry: CollectorRegistry, task: asyncio.Task[None]
    ):
        self.writer = writer
        self.registry = registry
        self.task = task

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


WriterFactory = Callable[..., contextlib.AbstractAsyncContextManager[RunningWriter]]


@pytest.fixture
def writer_factory(
    kafka_bootstrap: str, contract_topics: list[str], storage_catalog: Catalog
) -> WriterFactory:
    """Factory: `async with writer_factory(url) as running:` runs a writer in a unique group."""

    @contextlib.asynccontextmanager
    async def start(
        database_url: str,
        *,
        group: str | None = None,
        policy: StoragePolicy | None = None,
        clock: Callable[[], float] | None = None,
        **config: Any,
    ) -> AsyncIterator[RunningWriter]:
        registry = CollectorRegistry()
        settings = {"linger": 0.1, "maintenance_interval": 0.5, "retry_max": 1.0,
                    "session_timeout": 6.0, "connect_timeout": 5.0} | config  # fmt: skip
        writer = StorageWriter(
            WriterConfig(
                bootstrap_servers=kafka_bootstrap,
                database_url=database_url,
                group=group or f"test-writer-{uuid.uuid4().hex[:8]}",
                **settings,
            ),
            catalog=storage_catalog,
            policy=policy or StoragePolicy.default(),
            metrics=WriterMetrics.create(registry),
            **({"clock": clock} if clock else {}),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        try:
            async with asyncio.timeout(60):
                while not writer.ready.is_set():
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.05)
            yield RunningWriter(writer, registry, task)
        finally:
            stop.set()
            async with asyncio.timeout(60):
                await task

    return start
