"""Fixtures of the history tests: a migrated database filled through the writer's own batch
functions (RecordDecoder → StorageSink), and the history API served over real HTTP."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from consumers.history import (
    PREFIX,
    HistoryApi,
    HistoryMetrics,
    HistoryStore,
    open_read_pool,
)
from consumers.migrations import StoragePath, migrate
from consumers.storage import RecordDecoder, RowBatch, StoragePolicy, StorageSink
from foundation.auth.api_keys import KeyCache
from foundation.auth.key_store import KeyStore, open_pool
from foundation.auth.tokens import Role, issue_token
from foundation.contract.catalog import Catalog, load_catalog
from foundation.contract.envelope import ContractIndex
from tests.plugins.services import new_database, run_sync
from tests.plugins.storage import bring_rollups_up_to_date

HISTORY_SECRET = b"history-test-secret-0123456789abcdef"

# (topic, partition, offset, key, value, timestamp_ms) as the writer reads it from Kafka.
Record = tuple[str, int, int, str | None, Any, int]


def history_token(
    role: Role = "officer",
    sectors: list[str] | None = None,
    *,
    ttl: float = 3600.0,
    now: float | None = None,
) -> str:
    token, _claims = issue_token(
        HISTORY_SECRET,
        role=role,
        name="Trực ban 1",
        sectors=tuple(sectors) if sectors is not None else None,
        now=time.time() if now is None else now,
        ttl=ttl,
    )
    return token


@pytest.fixture(scope="session")
def history_catalog() -> Catalog:
    return load_catalog()


@dataclass
class HistoryWorld:
    """A migrated database, written the way `ioc writer` writes it."""

    url: str
    catalog: Catalog
    path: StoragePath = "plain-postgresql"
    sink: StorageSink = field(init=False)

    def __post_init__(self) -> None:
        self.sink = StorageSink(path=self.path, policy=StoragePolicy.default())

    async def write(self, records: Iterable[Record]) -> RowBatch:
        """Decode records with the writer's decoder and write them as one batch."""
        decoder = RecordDecoder(ContractIndex(self.catalog))
        batch = RowBatch()
        for topic, partition, offset, key, value, timestamp_ms in records:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            decoder.add(
                batch, topic=topic, partition=partition, offset=offset,
                key=key.encode() if key else None, value=raw, timestamp_ms=timestamp_ms,
            )  # fmt: skip
        assert not batch.skipped, batch.skipped
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await self.sink.write(conn, batch)
        return batch

    async def rollup(self) -> None:
        """Bring the rollups up to date (the writer's maintenance, or TimescaleDB's jobs)."""
        await bring_rollups_up_to_date(self.url, self.path)

    async def rollup_table(self, view: str) -> str:
        """Where the rows of rollup `view` are stored: itself (plain path), or the hypertable
        that materializes the continuous aggregate (TimescaleDB path)."""
        if self.path == "plain-postgresql":
            return view
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT format('%%I.%%I', materialization_hypertable_schema,"
                " materialization_hypertable_name)"
                " FROM timescaledb_information.continuous_aggregates WHERE view_name = %s",
                (view,),
            )
            row = await cursor.fetchone()
        assert row is not None, view
        return str(row[0])

    async def execute(self, statement: str, params: Iterable[Any] = ()) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            await conn.execute(statement.encode(), tuple(params))

    async def api_key(self, source: str) -> str:
        """A new API key of source (as `ioc keys create` makes it)."""
        pool = await open_pool(self.url, timeout=10)
        try:
            sector = self.catalog.source(source)
            assert sector is not None
            new, _record = await KeyStore(pool=pool).create(source=source, sector=sector[0].id)
        finally:
            await pool.close()
        return new.token


@pytest_asyncio.fixture
async def history_world(
    path_database: str, storage_path: StoragePath, history_catalog: Catalog
) -> HistoryWorld:
    """A fresh database with every migration applied, on this case's storage path."""
    await migrate(path_database, connect_timeout=10, storage=storage_path)
    return HistoryWorld(path_database, history_catalog, storage_path)


@pytest.fixture(scope="module")
def unchanged_history_world(database_url: str, history_catalog: Catalog) -> Iterator[HistoryWorld]:
    """One migrated database (plain path) for a module's tests that only read and refuse:
    they need the tables, not rows of their own, and a database each costs time."""
    with new_database(database_url) as url:
        run_sync(migrate(url, connect_timeout=10))
        yield HistoryWorld(url, history_catalog)


@contextlib.asynccontextmanager
async def _serve(world: HistoryWorld) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    read_pool = await open_read_pool(world.url, timeout=10, statement_timeout=30)
    key_pool = await open_pool(world.url, timeout=10)
    registry = CollectorRegistry()
    history = HistoryApi(
        rows=HistoryStore(pool=read_pool, timeout=30),
        catalog=world.catalog,
        token_secret=HISTORY_SECRET,
        keys=KeyCache(lookup=KeyStore(pool=key_pool), ttl=0.0),
        metrics=HistoryMetrics.create(registry),
    )
    root = web.Application()
    root.add_subapp(PREFIX, history.app())
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(root))
    await client.start_server()
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        await read_pool.close()
        await key_pool.close()


@pytest_asyncio.fixture
async def history_client(
    history_world: HistoryWorld,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The history API over real HTTP on a free port, reading the world's database."""
    async with _serve(history_world) as client:
        yield client


@pytest_asyncio.fixture
async def unchanged_history_client(
    unchanged_history_world: HistoryWorld,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The history API over real HTTP, on the module's shared database (tests that write
    nothing)."""
    async with _serve(unchanged_history_world) as client:
        yield client
