"""The API server of `ioc ingest-api`: the ingest API with the history API mounted next to it.

Producers and consumers do not import each other; this composition root wires the two
HTTP applications onto one server and merges their OpenAPI documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from consumers.history import PREFIX as HISTORY_PREFIX
from consumers.history import HistoryApi, HistoryMetrics, HistoryStore, open_read_pool
from consumers.history.openapi import history_paths, history_schemas, history_security_schemes
from foundation.auth.api_keys import KeyCache
from foundation.auth.key_store import KeyStore, open_pool
from foundation.auth.token_secret import token_secret
from foundation.contract.catalog import Catalog, load_catalog
from foundation.errors import BrokerUnreachableError, DatabaseError
from foundation.health import DependencyWatch
from foundation.intake import IntakeAck, IntakePause, read_pause, write_ack
from foundation.kafka_client import kafka_client_options, producer_compression
from foundation.settings import Settings
from producers.ingest_api import IngestApi, IngestLimits, serve_until
from producers.openapi import ingest_openapi_document
from producers.sdk import DeliveryReport, Publisher

__all__ = ["openapi_document", "run_api_server"]

log = logging.getLogger(__name__)


def openapi_document() -> dict[str, Any]:
    """The whole document served at /openapi.json: the ingest API and the history API."""
    document = ingest_openapi_document()
    document["info"]["description"] += (
        "\n\nThe same server answers the read-only history API under `/v1/history/` "
        "(KPI series, latest KPIs, drill-down to events, alert history, dead letters): "
        'see the `history` tag. Its errors are `{"error": code, "detail": …}`.'
    )
    document["paths"].update(history_paths())
    document["components"]["schemas"].update(history_schemas())
    document["components"]["securitySchemes"].update(history_security_schemes())
    return document


async def run_api_server(
    settings: Settings,
    *,
    bootstrap_servers: str,
    database_url: str,
    stop: asyncio.Event,
    announce: Callable[[str], None],
    registry: CollectorRegistry | None = None,
    limits: IngestLimits | None = None,
) -> None:
    """Connect the key store and Kafka, serve until `stop`, then close both."""
    timeout = settings.connect_timeout
    catalog = load_catalog(settings.catalog)
    pool = await open_pool(database_url, timeout=timeout)
    watch = DependencyWatch.from_settings(
        settings, bootstrap_servers=bootstrap_servers, database_url=database_url
    )
    try:
        store = KeyStore(pool=pool, timeout=min(timeout, 5.0))
        await store.check_schema()
        keys = KeyCache(lookup=store, ttl=settings.ingest_key_cache_ttl)

        def new_publisher() -> Publisher:
            return Publisher(
                bootstrap_servers=bootstrap_servers,
                catalog=catalog,
                retries=3,
                request_timeout=10.0,
                kafka_options=kafka_client_options(settings),
                compression=producer_compression(settings),
            )

        intake = IntakeSwitch(new_publisher, state_dir=settings.state_dir, timeout=timeout)
        await intake.start()
        watch.start()
        try:
            history_pool = await open_read_pool(
                database_url, timeout=timeout, statement_timeout=settings.history_query_timeout
            )
            try:
                registry = registry or CollectorRegistry()
                history = await _history_api(settings, history_pool, catalog, keys, registry)
                api = IngestApi(
                    sender=intake,
                    keys=keys,
                    registry=registry,
                    limits=limits,
                    openapi=openapi_document(),
                    mounts={HISTORY_PREFIX: history},
                    gate=intake,
                    dependencies=watch,
                )
                follow = asyncio.create_task(intake.follow(api), name="intake-pause")
                try:
                    await serve_until(
                        api,
                        host=settings.ingest_host,
                        port=settings.ingest_port,
                        stop=stop,
                        announce=announce,
                    )
                finally:
                    follow.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follow
            finally:
                await history_pool.close()
        finally:
            await intake.stop()
    finally:
        await watch.close()
        await pool.close()


class IntakeSwitch:
    """The ingest API's publisher, closed while `ioc up` pauses intake (foundation.intake).

    Implements the API's RecordSender (through the current publisher) and IntakeGate.
    """

    POLL = 0.1  # seconds between looks at the pause file
    DRAIN = 10.0  # seconds the requests in flight get to finish when a pause begins
    CLOSE = 5.0  # seconds the publisher gets to close

    def __init__(
        self, new_publisher: Callable[[], Publisher], *, state_dir: Path, timeout: float
    ) -> None:
        self._new_publisher = new_publisher
        self._state_dir = state_dir
        self._timeout = timeout
        self._publisher: Publisher | None = None
        self._pause: IntakePause | None = None
        self._acked: str | None = None

    def paused(self) -> IntakePause | None:
        return self._pause

    async def send_record(self, events: Sequence[Mapping[str, Any]]) -> list[DeliveryReport]:
        publisher = self._publisher
        if publisher is None:  # paused between the gate's check and here
            return [
                DeliveryReport(
                    str(e.get("event_id")) if isinstance(e.get("event_id"), str) else None,
                    str(e.get("source", "")),
                    "failed",
                    "send_failed",
                    "intake paused",
                    index=i,
                )
                for i, e in enumerate(events)
            ]
        return await publisher.send_record(events)

    async def start(self) -> None:
        """Open the first publisher (unless a pause is in force: then at resume)."""
        self._pause = read_pause(self._state_dir)
        if self._pause is None:
            await self._open()

    async def stop(self) -> None:
        await self._close()

    async def follow(self, api: IngestApi) -> None:
        """Poll the pause file until cancelled: pause, drain, close / reopen, resume."""
        while True:
            pause = read_pause(self._state_dir)
            if pause is not None and self._acked != pause.token:
                await self._begin_pause(pause, api)
            elif pause is None and self._pause is not None:
                try:
                    await self._open()
                except BrokerUnreachableError as exc:
                    log.warning("intake stays paused: %s", exc)
                    await asyncio.sleep(1.0)
                else:
                    log.info("intake resumed (paused %.1f s)", time.time() - self._pause.since)
                    self._pause, self._acked = None, None
            await asyncio.sleep(self.POLL)

    async def _begin_pause(self, pause: IntakePause, api: IngestApi) -> None:
        self._pause = pause  # new requests get 503 `paused` from now on
        log.info("intake paused: %s", pause.reason)
        deadline = time.monotonic() + self.DRAIN
        for _ in range(int(self.DRAIN / 0.02)):  # requests in flight finish (no event to wait on)
            if not api.in_flight or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        in_flight = api.in_flight
        await self._close()
        write_ack(
            self._state_dir,
            IntakeAck(token=pause.token, pid=os.getpid(), in_flight=in_flight, at=time.time()),
        )
        self._acked = pause.token

    async def _open(self) -> None:
        publisher = self._new_publisher()
        try:
            async with asyncio.timeout(self._timeout):
                await publisher.start()
        except (TimeoutError, KafkaError, OSError, BrokerUnreachableError) as exc:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.CLOSE):
                    await publisher.stop()
            raise BrokerUnreachableError(
                f"cannot reach Kafka: {exc or type(exc).__name__}"
            ) from exc
        self._publisher = publisher

    async def _close(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is None:
            return
        try:
            async with asyncio.timeout(self.CLOSE):
                await publisher.stop()  # sends what is pending (the requests waiting on it)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("the producer did not close cleanly: %s", exc or type(exc).__name__)


async def _history_api(
    settings: Settings,
    pool: AsyncConnectionPool,
    catalog: Catalog,
    keys: KeyCache,
    registry: CollectorRegistry,
) -> Callable[[], web.Application]:
    """The history API's sub-application factory, reading through its own pool."""
    store = HistoryStore(pool=pool, timeout=settings.history_query_timeout)
    try:
        await store.check_schema()
    except DatabaseError as exc:
        log.warning("history API: %s; it answers 503 until then", exc)
    history = HistoryApi(
        rows=store,
        catalog=catalog,
        token_secret=functools.cache(functools.partial(token_secret, settings)),
        keys=keys,
        metrics=HistoryMetrics.create(registry),
    )
    return history.app
