"""The API server of `ioc ingest-api`: the ingest API with the history API mounted next to it.

Producers and consumers do not import each other; this composition root wires the two
HTTP applications onto one server and merges their OpenAPI documents.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
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
from foundation.kafka_client import kafka_client_options
from foundation.settings import Settings
from producers.ingest_api import IngestApi, IngestLimits, serve_until
from producers.openapi import ingest_openapi_document
from producers.sdk import Publisher

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
    try:
        store = KeyStore(pool=pool, timeout=min(timeout, 5.0))
        await store.check_schema()
        keys = KeyCache(lookup=store, ttl=settings.ingest_key_cache_ttl)
        publisher = Publisher(
            bootstrap_servers=bootstrap_servers,
            catalog=catalog,
            retries=3,
            request_timeout=10.0,
            kafka_options=kafka_client_options(settings),
        )
        try:
            async with asyncio.timeout(timeout):
                await publisher.start()
        except (TimeoutError, KafkaError, OSError) as exc:
            raise BrokerUnreachableError(
                f"cannot reach Kafka at {bootstrap_servers}: {exc or type(exc).__name__}"
            ) from exc
        try:
            history_pool = await open_read_pool(
                database_url, timeout=timeout, statement_timeout=settings.history_query_timeout
            )
            try:
                registry = registry or CollectorRegistry()
                history = await _history_api(settings, history_pool, catalog, keys, registry)
                api = IngestApi(
                    sender=publisher,
                    keys=keys,
                    registry=registry,
                    limits=limits,
                    openapi=openapi_document(),
                    mounts={HISTORY_PREFIX: history},
                )
                await serve_until(
                    api,
                    host=settings.ingest_host,
                    port=settings.ingest_port,
                    stop=stop,
                    announce=announce,
                )
            finally:
                await history_pool.close()
        finally:
            await publisher.stop()
    finally:
        await pool.close()


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
