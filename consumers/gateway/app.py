"""`run_gateway`: cold start, Kafka feed, server, heartbeats; stops cleanly on `stop`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from consumers.gateway.actions import ActionSink, KafkaActionSink
from consumers.gateway.coldstart import load_cold_start
from consumers.gateway.fanout import Hub
from consumers.gateway.feed import KafkaFeed
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.server import GatewayServer, ServerOptions
from consumers.gateway.state import GatewayState
from consumers.history import HistoryStore, Query, open_read_pool
from foundation.contract.catalog import Catalog
from foundation.contract.topics import ALERT_ACTIONS, ALERTS, KPI
from foundation.errors import (
    BrokerUnreachableError,
    DatabaseError,
    DatabaseUnreachableError,
    IocError,
)
from foundation.health import DependencyHealth, DependencyWatch

__all__ = ["GatewayConfig", "run_gateway"]

log = logging.getLogger("ioc.gateway")


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Everything `run_gateway` needs, resolved from the settings by the command."""

    bootstrap_servers: str
    database_url: str | None  # None: no cold start from the database (Kafka replay only)
    host: str
    port: int
    secret: bytes
    heartbeat: float
    queue_limit: int
    resume_buffer: int
    resume_seconds: float
    send_timeout: float
    replay_seconds: float
    connect_timeout: float
    # The contract's topics; tests give their own to read nothing but what they produce.
    kpi_topic: str = KPI
    alerts_topic: str = ALERTS
    actions_topic: str = ALERT_ACTIONS
    kafka_options: dict[str, Any] | None = None  # foundation.kafka_client.kafka_client_options
    query_timeout: float = (
        8.0  # the workspace's and phone page's reads (under the handshake's 10 s)
    )
    # How often the broker and the database are probed: while one does not answer, /healthz
    # says "degraded" and every screen gets a `status` message (figures not current).
    probe_interval: float = 2.0


async def run_gateway(
    config: GatewayConfig,
    *,
    catalog: Catalog,
    stop: asyncio.Event,
    announce: Callable[[str], None],
    registry: CollectorRegistry | None = None,
    actions: ActionSink | None = None,
) -> None:
    """Serve until `stop` is set; an IocError when a service is missing or the feed dies."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = GatewayMetrics.create(registry)
    state = GatewayState()
    database_answered = config.database_url is not None and await _cold_start(
        state, config.database_url, timeout=config.connect_timeout
    )
    hub = Hub(
        state,
        epoch=secrets.token_hex(6),
        buffer_size=config.resume_buffer,
        buffer_seconds=config.resume_seconds,
        metrics=metrics,
    )
    feed = KafkaFeed(
        hub,
        bootstrap_servers=config.bootstrap_servers,
        replay_seconds=config.replay_seconds,
        metrics=metrics,
        timeout=config.connect_timeout,
        kpi_topic=config.kpi_topic,
        alerts_topic=config.alerts_topic,
        kafka_options=config.kafka_options,
        sectors=[sector.id for sector in catalog.sectors],
    )
    own_sink: KafkaActionSink | None = None
    if actions is None:
        own_sink = KafkaActionSink(
            bootstrap_servers=config.bootstrap_servers,
            timeout=config.connect_timeout,
            topic=config.actions_topic,
            kafka_options=config.kafka_options,
        )
        await own_sink.start()
        actions = own_sink
    # The workspace, the phone page and the report links read the storage tables.
    rows = None
    if config.database_url is not None:
        rows = _StorageRows(
            config.database_url,
            connect_timeout=config.connect_timeout,
            query_timeout=config.query_timeout,
            retry_every=config.probe_interval,
        )
        await rows.open(now=database_answered)
    watch = DependencyWatch(
        bootstrap_servers=config.bootstrap_servers,
        database_url=config.database_url,
        interval=config.probe_interval,
        timeout=min(config.connect_timeout, max(2.0, config.probe_interval)),
        kafka_options=config.kafka_options,
    )
    server = GatewayServer(
        rows=rows,
        hub=hub,
        dependencies=watch,
        ready=feed.ready,
        catalog=catalog,
        secret=config.secret,
        actions=actions,
        metrics=metrics,
        registry=registry,
        options=ServerOptions(
            heartbeat=config.heartbeat,
            queue_limit=config.queue_limit,
            send_timeout=config.send_timeout,
        ),
    )

    def changed(_health: DependencyHealth) -> None:
        server.dependencies_changed()

    watch.on_change = changed
    watch.start()
    feed_task = asyncio.create_task(feed.run(), name="gateway-feed")
    stop_task = asyncio.create_task(stop.wait(), name="gateway-stop")
    try:
        port = await server.start(config.host, config.port)
        ready_task = asyncio.create_task(feed.ready.wait())
        await asyncio.wait({feed_task, stop_task, ready_task}, return_when=asyncio.FIRST_COMPLETED)
        ready_task.cancel()
        if feed.ready.is_set():
            announce(f"http://{config.host}:{port}/")
        await asyncio.wait({feed_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if feed_task.done():
            exc = feed_task.exception()
            if isinstance(exc, IocError):
                raise exc
            raise BrokerUnreachableError(f"the Kafka feed stopped: {exc!r}") from exc
    finally:
        stop_task.cancel()
        feed_task.cancel()
        await server.stop()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feed_task
        with contextlib.suppress(asyncio.CancelledError):
            await stop_task
        await watch.close()
        if own_sink is not None:
            await own_sink.stop()
        if rows is not None:
            await rows.close()


async def _cold_start(state: GatewayState, database_url: str, *, timeout: float) -> bool:
    """Load the writer's tables into `state`; a database that fails is logged, not fatal."""
    try:
        loaded = await load_cold_start(state, database_url, timeout=timeout)
    except (DatabaseUnreachableError, DatabaseError) as exc:
        log.warning(
            "cold start: no history from the database (%s): starting from the Kafka replay "
            "and live points only (sparklines hold what Kafka still has)",
            exc.message,
        )
        return False
    log.info(
        "cold start: %d KPI rows, %d freshness rows, %d open alerts (%d known)",
        loaded.kpi_rows,
        loaded.freshness_rows,
        loaded.open_alerts,
        loaded.known_alerts,
    )
    return True


class _StorageRows:
    """The storage tables for the leaders' pages, read once the database answers.

    A gateway that starts while the database is down serves the wall anyway; until the
    pool opens (retried every probe interval by a task this object owns) the pages' data
    answer 503 `unavailable`.
    """

    def __init__(
        self, url: str, *, connect_timeout: float, query_timeout: float, retry_every: float
    ) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._query_timeout = query_timeout
        self._retry_every = retry_every
        self._store: HistoryStore | None = None
        self._pool: AsyncConnectionPool | None = None
        self._retry: asyncio.Task[None] | None = None

    async def _open_once(self) -> bool:
        try:
            self._pool = await open_read_pool(
                self._url,
                timeout=self._connect_timeout,
                statement_timeout=self._query_timeout,
                max_size=4,
            )
        except DatabaseUnreachableError:
            return False
        self._store = HistoryStore(pool=self._pool, timeout=self._query_timeout)
        return True

    async def open(self, *, now: bool) -> None:
        """Open the pool (`now`: first here, the database answered a moment ago), else keep
        trying in the background."""
        if now and await self._open_once():
            return
        log.warning(
            "the database does not answer: the analysis pages answer 503 until it does "
            "(retrying every %g s)",
            self._retry_every,
        )
        self._retry = asyncio.create_task(self._keep_trying(), name="gateway-read-pool")

    async def _keep_trying(self) -> None:
        while True:
            await asyncio.sleep(self._retry_every)
            if await self._open_once():
                log.info("the database answers: the analysis pages read it again")
                return

    async def fetch(self, query: Query) -> list[Sequence[Any]]:
        if self._store is None:
            raise DatabaseUnreachableError(
                "the database has not answered since the gateway started"
            )
        return await self._store.fetch(query)

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if self._pool is not None:
            await self._pool.close()
