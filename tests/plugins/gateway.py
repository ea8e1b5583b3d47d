"""Fixtures for gateway tests: private topics, a real gateway in the test's loop, clients.

Each test gets its own `ioc.kpi`/`ioc.alerts`/`ioc.alert-actions` stand-ins on the session
broker (so sequence numbers and snapshots hold exactly what the test produced), real
gateways started with `run_gateway` on port 0, tokens signed with a test secret, and
`websockets` clients that read JSON messages with timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from consumers.gateway.app import GatewayConfig, run_gateway
from foundation.auth.tokens import Role, issue_token
from foundation.contract.catalog import Catalog, load_catalog
from tests.plugins.services import run_sync

SECRET = b"gateway-test-secret-0123456789abcdef"
READY_TIMEOUT = 60.0  # a loaded 2-core machine; the feed's start-up probes take well under that
MESSAGE_TIMEOUT = 30.0


@dataclass(frozen=True)
class GatewayTopics:
    kpi: str
    alerts: str
    actions: str


@pytest.fixture(scope="session")
def wall_catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def gateway_topics(kafka_bootstrap: str) -> GatewayTopics:
    """Three fresh topics (4 partitions each) standing in for the contract's."""
    from ioc.topics import create_topics

    base = f"test.gw.{uuid.uuid4().hex[:10]}"
    topics = GatewayTopics(f"{base}.kpi", f"{base}.alerts", f"{base}.actions")
    run_sync(
        create_topics(
            kafka_bootstrap,
            [topics.kpi, topics.alerts, topics.actions],
            partitions=4,
            replication_factor=1,
            timeout=30,
        )
    )
    return topics


def make_token(
    role: Role = "wall",
    name: str = "Màn hình 1",
    sectors: list[str] | None = None,
    ttl: float = 3600.0,
    now: float | None = None,
) -> str:
    token, _claims = issue_token(
        SECRET,
        role=role,
        name=name,
        sectors=tuple(sectors) if sectors is not None else None,
        now=time.time() if now is None else now,
        ttl=ttl,
    )
    return token


@dataclass
class RunningGateway:
    """A gateway serving in the test's loop."""

    url: str
    config: GatewayConfig
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def ws_url(self, token: str | None) -> str:
        base = self.url.replace("http://", "ws://") + "ws"
        return base if token is None else f"{base}?token={token}"

    async def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 30)


GatewayFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def start_gateway(
    kafka_bootstrap: str, gateway_topics: GatewayTopics, wall_catalog: Catalog
) -> AsyncIterator[GatewayFactory]:
    """Factory: `await start_gateway(**config_overrides)` → a ready RunningGateway."""
    running: list[RunningGateway] = []

    async def start(**overrides: Any) -> RunningGateway:
        config = GatewayConfig(
            bootstrap_servers=kafka_bootstrap,
            database_url=None,
            host="127.0.0.1",
            port=0,
            secret=SECRET,
            heartbeat=5.0,
            queue_limit=256,
            resume_buffer=1000,
            resume_seconds=120.0,
            send_timeout=10.0,
            replay_seconds=600.0,
            connect_timeout=15.0,
            kpi_topic=gateway_topics.kpi,
            alerts_topic=gateway_topics.alerts,
            actions_topic=gateway_topics.actions,
        )
        config = replace(config, **overrides)
        announced: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()

        def announce(url: str) -> None:
            if not announced.done():
                announced.set_result(url)

        task = asyncio.create_task(
            run_gateway(config, catalog=wall_catalog, stop=stop, announce=announce)
        )
        waiting: set[asyncio.Future[Any]] = {task, announced}
        done, _ = await asyncio.wait(
            waiting, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()  # raises what stopped it
        if announced not in done:
            stop.set()
            await asyncio.wait({task}, timeout=30)
            raise AssertionError(f"gateway not ready within {READY_TIMEOUT} s")
        gateway = RunningGateway(announced.result(), config, stop, task)
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        await gateway.stop()


class Producer:
    """Sends JSON records to the test's topics, waiting for each batch's acknowledgement."""

    def __init__(self, bootstrap: str, topics: GatewayTopics) -> None:
        from aiokafka import AIOKafkaProducer

        self.topics = topics
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)

    async def start(self) -> None:
        await asyncio.wait_for(self._producer.start(), 30)

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, records: list[tuple[str, dict[str, Any]]]) -> None:
        futures = [
            await self._producer.send(topic, value=json.dumps(record).encode(), key=key.encode())
            for key, record in records
        ]
        await asyncio.wait_for(asyncio.gather(*futures), 30)

    async def send_raw(self, topic: str, values: list[bytes], key: bytes = b"raw") -> None:
        """Records of any bytes (poison included), in order."""
        futures = [await self._producer.send(topic, value=v, key=key) for v in values]
        await asyncio.wait_for(asyncio.gather(*futures), 30)

    async def kpi(self, *points: dict[str, Any]) -> None:
        await self.send(self.topics.kpi, [(str(p.get("series", "x")), p) for p in points])

    async def alerts(self, *transitions: dict[str, Any]) -> None:
        await self.send(self.topics.alerts, [(str(t["fingerprint"]), t) for t in transitions])


@pytest_asyncio.fixture
async def producer(kafka_bootstrap: str, gateway_topics: GatewayTopics) -> AsyncIterator[Producer]:
    prod = Producer(kafka_bootstrap, gateway_topics)
    await prod.start()
    yield prod
    await prod.stop()


def kpi_point(
    sector: str = "health",
    kpi: str = "bed_occupancy_pct",
    group: str = "*",
    *,
    value: float = 80.0,
    window_start: float | None = None,
    size: float = 900.0,
    revision: int = 0,
    final: bool = False,
    count: int = 10,
    emitted_at: float | None = None,
) -> dict[str, Any]:
    now = time.time()
    start = window_start if window_start is not None else now - now % size
    return {
        "kind": "kpi",
        "series": f"{sector}.{kpi}|{group}",
        "kpi": f"{sector}.{kpi}",  # as the worker publishes it: `<sector>.<kpi id>`
        "sector": sector,
        "group": group,
        "window_start": start,
        "window_end": start + size,
        "value": value,
        "count": count,
        "final": final,
        "revision": revision,
        "emitted_at": emitted_at if emitted_at is not None else now,
        "newest": now,
    }


def alert_transition(
    fingerprint: str | None = None,
    *,
    seq: int = 1,
    state: str = "firing",
    transition: str = "fire",
    sector: str = "health",
    severity: str = "critical",
    started_at: float | None = None,
    message_vi: str = "Công suất giường bệnh 97% vượt ngưỡng 95%",
    message_en: str = "Bed occupancy 97% above 95%",
    acknowledged_by: str | None = None,
) -> dict[str, Any]:
    from foundation.contract.alerts import AlertTransition, Fingerprint

    now = time.time()
    return AlertTransition(
        fingerprint=Fingerprint(fingerprint or f"fp-{uuid.uuid4().hex[:12]}"),
        seq=seq,
        transition=transition,  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        previous_state=None,
        rule="bed_occupancy_high",
        severity=severity,  # type: ignore[arg-type]
        labels={"sector": sector, "kpi": "bed_occupancy_pct"},
        at=now,
        started_at=started_at if started_at is not None else now - 300,
        value=97.0,
        message_vi=message_vi,
        message_en=message_en,
        acknowledged_by=acknowledged_by,
    ).to_json()


@dataclass
class WsClient:
    """A real WebSocket client reading the gateway's JSON messages."""

    connection: ClientConnection
    received: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def recv(self, timeout: float = MESSAGE_TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        self.received.append(message)
        return message

    async def recv_until(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = MESSAGE_TIMEOUT,
        what: str = "a message",
        since: int | None = None,
    ) -> dict[str, Any]:
        """The first message (skipping heartbeats and others) for which predicate holds.

        With `since` (an index into `received`), messages already received from there on
        count too: two awaited messages may arrive in either order."""
        if since is not None:
            for message in self.received[since:]:
                if predicate(message):
                    return message
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; got {self.received[-5:]}")
            try:
                message = await self.recv(left)
            except TimeoutError:
                raise AssertionError(
                    f"no {what} within {timeout} s; got {self.received[-5:]}"
                ) from None
            if predicate(message):
                return message

    async def close(self) -> None:
        await self.connection.close()


@pytest_asyncio.fixture
async def ws_client() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await ws_client(url)` → a connected WsClient, closed at the end."""
    clients: list[WsClient] = []

    async def open_client(url: str, **kwargs: Any) -> WsClient:
        connection = await asyncio.wait_for(connect(url, compression=None, **kwargs), 30)
        client = WsClient(connection)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.connection.close(), 10)
