"""The writer survives PostgreSQL going away mid-stream: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.migrations import migrate
from foundation.contract.catalog import Catalog
from ioc.embedded import EmbeddedPostgres
from ioc.embedded._process import find_free_port
from tests.plugins.storage import WriterFactory, arows, until

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 20.0  # the scenario under test: the database is down this long


@pytest.fixture
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of this test alone (it is stopped and restarted), on a fixed port."""
    # Under /tmp, not pytest's basetemp (see tests/plugins/services.py: database_url).
    state_dir = Path(tempfile.mkdtemp(prefix="ioc-test-outage-"))
    server = EmbeddedPostgres(
        state_dir=state_dir, port=find_free_port("127.0.0.1"), timescaledb=False
    )
    await server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


async def test_database_down_for_20_seconds_loses_and_doubles_nothing(
    kafka_bootstrap: str,
    own_postgres: EmbeddedPostgres,
    writer_factory: WriterFactory,
    storage_catalog: Catalog,
) -> None:
    """Stop PostgreSQL for 20 s while events stream in, start it again: every produced event
    is in `events` exactly once, and the writer said it was retrying meanwhile."""
    url = own_postgres.url()
    await migrate(url, connect_timeout=10)
    tag = uuid.uuid4().hex[:8]
    sector = storage_catalog.sectors[0]
    kind = next(t for t in sector.event_types if t.measurement)
    sources = [s.id for s in sector.sources]
    produced = 0
    producing = asyncio.Event()
    producing.set()

    async def stream() -> None:
        nonlocal produced
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            record = 0
            while producing.is_set():
                source = sources[record % len(sources)]
                at = datetime.fromtimestamp(time.time() - 5, tz=UTC).isoformat()
                batch = [
                    {"event_id": f"{tag}-{record}-{i}", "source": source, "sector": sector.id,
                     "type": kind.id, "occurred_at": at, "value": float(i)}
                    for i in range(20)
                ]  # fmt: skip
                await producer.send_and_wait(
                    sector.topic, key=source.encode(), value=json.dumps(batch).encode()
                )
                produced += len(batch)
                record += 1
                await asyncio.sleep(0.02)  # pacing of the stream, not a wait for a condition
        finally:
            await producer.stop()

    async def stored() -> int:
        found = await arows(url, "SELECT count(*) FROM events WHERE event_id LIKE %s", [f"{tag}-%"])
        return int(found[0][0])

    async with writer_factory(url) as running:
        producer = asyncio.create_task(stream())
        try:

            async def some_stored() -> bool:
                return await stored() >= 100

            await until(some_stored, timeout=60, what="the first events stored")
            await asyncio.to_thread(own_postgres.stop)
            down_at = time.monotonic()

            async def noticed() -> bool:
                return running.metric("ioc_writer_database_up") == 0

            await until(noticed, timeout=30, what="the writer noticing the outage")
            await asyncio.sleep(max(OUTAGE_SECONDS - (time.monotonic() - down_at), 0))
            assert not running.writer.healthy()
            await own_postgres.start()
            produced_at_restart = produced
            healed_before = produced_at_restart + 200

            async def more_produced() -> bool:
                return produced >= healed_before

            await until(more_produced, timeout=60, what="events produced after the restart")
        finally:
            producing.clear()
            await producer
        total = produced

        async def all_stored() -> bool:
            return await stored() >= total

        await until(all_stored, timeout=120, what=f"all {total} events stored")
        assert running.metric("ioc_writer_retries_total", reason="unavailable") >= 1
        assert running.metric("ioc_writer_database_up") == 1
        assert running.writer.healthy()

    counts = await arows(
        url,
        "SELECT count(*), count(DISTINCT event_id) FROM events WHERE event_id LIKE %s",
        [f"{tag}-%"],
    )
    assert counts == [(total, total)]
