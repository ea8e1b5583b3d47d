"""Fixtures for notifier tests: local stand-ins for the channels, transitions on ioc.alerts.

`notify_servers` runs, on a background thread's own event loop (so that blocking waits in a
test never stall them), a webhook receiver that checks the HMAC signature, stand-ins for
the Telegram Bot API and the Zalo OA API on their real paths, and a real SMTP server
(aiosmtpd). Each counts what it accepted; `script` makes one answer given statuses first.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from alerts.notifier.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from foundation.contract.alerts import AlertTransition, Fingerprint

WEBHOOK_SECRET = "test-webhook-secret"
TELEGRAM_TOKEN = "123456:TEST-token"
ZALO_TOKEN = "zalo-test-access-token"


@dataclass
class Received:
    """One accepted message: which channel, to whom, and what it said."""

    channel: str
    to: str
    text: str
    subject: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    html: str = ""
    attachments: list[tuple[str, bytes]] = field(default_factory=list)


class LocalServers:
    """Webhook, Telegram, Zalo (aiohttp) and SMTP (aiosmtpd) servers on loopback ports."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._requests: dict[str, int] = {"webhook": 0, "telegram": 0, "zalo": 0, "email": 0}
        self._scripts: dict[str, list[int]] = {}
        self.bad_signatures = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.ports: dict[str, int] = {}
        self._cleanups: list[Callable[[], Any]] = []

    # -- what the tests read ---------------------------------------------------------
    def received(self, channel: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if channel is None or r.channel == channel]

    def requests(self, channel: str) -> int:
        """Every request the channel's server answered (accepted or not)."""
        with self._lock:
            return self._requests[channel]

    def script(self, channel: str, statuses: list[int]) -> None:
        """Answer the next requests of `channel` with these HTTP statuses, then normally."""
        with self._lock:
            self._scripts[channel] = list(statuses)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['webhook']}"

    @property
    def telegram_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['telegram']}"

    @property
    def zalo_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['zalo']}"

    def env(self) -> dict[str, str]:
        """IOC_NOTIFIER_* settings pointing every channel at these servers."""
        return {
            "IOC_NOTIFIER_WEBHOOK_BASE_URL": self.webhook_url,
            "IOC_NOTIFIER_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "IOC_NOTIFIER_TELEGRAM_BASE_URL": self.telegram_url,
            "IOC_NOTIFIER_TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
            "IOC_NOTIFIER_ZALO_BASE_URL": self.zalo_url,
            "IOC_NOTIFIER_ZALO_ACCESS_TOKEN": ZALO_TOKEN,
            "IOC_NOTIFIER_SMTP_HOST": "127.0.0.1",
            "IOC_NOTIFIER_SMTP_PORT": str(self.ports["email"]),
        }

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        for channel, route, handler in (
            ("webhook", "/{path:.*}", self._webhook),
            ("telegram", "/bot{token}/sendMessage", self._telegram),
            ("zalo", "/v3.0/oa/message/cs", self._zalo),
        ):
            app = web.Application()
            app.router.add_post(route, handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.ports[channel] = int(runner.addresses[0][1])
            self._cleanups.append(runner.cleanup)
        server = await self._loop.create_server(
            lambda: SMTP(_SmtpHandler(self), hostname="ioc-test-smtp"), "127.0.0.1", 0
        )
        self.ports["email"] = int(server.sockets[0].getsockname()[1])

        async def close_smtp() -> None:
            server.close()
            await server.wait_closed()

        self._cleanups.append(close_smtp)

    async def _stop(self) -> None:
        for cleanup in reversed(self._cleanups):
            await cleanup()

    def _scripted(self, channel: str) -> int | None:
        with self._lock:
            self._requests[channel] += 1
            script = self._scripts.get(channel)
            return script.pop(0) if script else None

    def _accept(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    # -- handlers --------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self._scripted("webhook")
        if status is not None:
            return web.Response(status=status, text="scripted failure")
        ok = verify(
            WEBHOOK_SECRET.encode(),
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
            now=time.time(),
        )
        if not ok:
            with self._lock:
                self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        document = json.loads(body)
        self._accept(
            Received(
                "webhook",
                request.path,
                document["text"],
                document["subject"],
                document,
                dict(request.headers),
            )
        )
        return web.json_response({"ok": True})

    async def _telegram(self, request: web.Request) -> web.Response:
        document = await request.json()
        status = self._scripted("telegram")
        if status is not None:
            reply: dict[str, Any] = {"ok": False, "error_code": status, "description": "scripted"}
            if status == 429:
                reply["parameters"] = {"retry_after": 1}
            return web.json_response(reply, status=status)
        if request.match_info["token"] != TELEGRAM_TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        self._accept(
            Received("telegram", str(document["chat_id"]), document["text"], body=document)
        )
        return web.json_response({"ok": True, "result": {"message_id": len(self.received())}})

    async def _zalo(self, request: web.Request) -> web.Response:
        document = await request.json()
        status = self._scripted("zalo")
        if status is not None:
            return web.json_response({"error": -1, "message": "scripted"}, status=status)
        if request.headers.get("access_token") != ZALO_TOKEN:
            return web.json_response({"error": -216, "message": "Access token is invalid"})
        self._accept(
            Received(
                "zalo",
                document["recipient"]["user_id"],
                document["message"]["text"],
                body=document,
            )
        )
        return web.json_response(
            {"error": 0, "message": "Success", "data": {"message_id": uuid.uuid4().hex}}
        )


class _SmtpHandler:
    def __init__(self, servers: LocalServers) -> None:
        self._servers = servers

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        status = self._servers._scripted("email")
        if status is not None:
            return f"{status} scripted failure"
        raw = envelope.original_content or envelope.content or b""
        mail = email.message_from_bytes(
            raw if isinstance(raw, bytes) else raw.encode(), policy=email.policy.default
        )
        body = mail.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        html = mail.get_body(preferencelist=("html",))
        files = [
            (str(part.get_filename()), bytes(part.get_content()))
            for part in mail.iter_attachments()
        ]
        for rcpt in envelope.rcpt_tos:
            self._servers._accept(
                Received(
                    "email", rcpt, text, str(mail["Subject"]), headers=dict(mail.items()),
                    html=html.get_content() if html is not None else "", attachments=files,
                )
            )  # fmt: skip
        return "250 OK"


@pytest.fixture
def notify_servers() -> Iterator[LocalServers]:
    """Local webhook/Telegram/Zalo/SMTP servers for one test."""
    servers = LocalServers()
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()


def transition(
    fingerprint: str,
    seq: int,
    kind: str = "fire",
    *,
    sector: str,
    severity: str = "critical",
    state: str = "firing",
    level: int = 0,
    at: float | None = None,
    started_at: float | None = None,
    **extra: Any,
) -> AlertTransition:
    """An alert transition as the lifecycle would publish it."""
    now = time.time() if at is None else at
    return AlertTransition(
        fingerprint=Fingerprint(fingerprint),
        seq=seq,
        transition=kind,  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        previous_state=None,
        rule="bed_occupancy_high",
        severity=severity,  # type: ignore[arg-type]
        labels={"sector": sector, "kpi": "bed_occupancy_pct", "district": "dong-xoai"},
        at=now,
        started_at=now - 720 if started_at is None else started_at,
        value=97.0,
        message_vi="Công suất giường bệnh 97% vượt ngưỡng 95%",
        message_en="Bed occupancy 97% above 95%",
        escalation_level=level,
        **extra,
    )


async def publish(bootstrap: str, transitions: list[AlertTransition]) -> None:
    """Produce transitions onto the real ioc.alerts topic, keyed by fingerprint."""
    from aiokafka import AIOKafkaProducer

    from foundation.contract.topics import ALERTS

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for t in transitions:
            await producer.send_and_wait(ALERTS, t.encode(), key=t.fingerprint.encode())
    finally:
        await producer.stop()


ROUTING = """\
version: 1
recipients:
  - {{id: officer, name: Cán bộ trực, email: officer@ioc.test, telegram: "1001", zalo: "2001",
     webhook: /hooks/ioc}}
  - {{id: vice, name: Phó Chủ tịch, telegram: "1002"}}
  - {{id: chair, name: Chủ tịch, telegram: "1003"}}
routes:
  - {{role: duty_officer, sectors: [{sector}], min_severity: warning, notify: [officer]}}
  - {{role: sector_vice_chairman, sectors: [{sector}], notify: [vice]}}
  - {{role: chairman, sectors: [{sector}], notify: [chair]}}
"""


@dataclass(frozen=True)
class NotifyCase:
    """One test's sector (unique), routing file, consumer group and database."""

    sector: str
    routing: Path
    group: str
    database_url: str

    def fingerprint(self, name: str = "a") -> str:
        return f"{self.sector}.bed_occupancy_high|{name}"


@pytest.fixture
def notify_case(
    tmp_path: Path, fresh_database: str, kafka_bootstrap: str, contract_topics: list[str]
) -> NotifyCase:
    """A unique sector routed to `officer` (all 4 channels), `vice` and `chair` (Telegram)."""
    sector = f"t{uuid.uuid4().hex[:8]}"
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING.format(sector=sector), encoding="utf-8")
    return NotifyCase(sector, path, f"notifier-{uuid.uuid4().hex[:8]}", fresh_database)


def notifier_env(
    case: NotifyCase, servers: LocalServers, bootstrap: str, **more: str
) -> dict[str, str]:
    """The environment of a notifier for this case (fast group_wait, retries, timeouts)."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": case.database_url,
        "IOC_NOTIFIER_ROUTING": str(case.routing),
        "IOC_NOTIFIER_GROUP": case.group,
        "IOC_NOTIFIER_METRICS_PORT": "0",
        "IOC_NOTIFIER_SESSION_TIMEOUT": "6",
        "IOC_NOTIFIER_GROUP_WAIT": "1",
        "IOC_NOTIFIER_RETRY_BASE": "0.2",
        "IOC_NOTIFIER_RETRY_MAX": "1",
        "IOC_NOTIFIER_POLL_INTERVAL": "0.1",
        "IOC_NOTIFIER_REQUEST_TIMEOUT": "10",
        **servers.env(),
    }
    env.update(more)
    return env


def deliveries(database_url: str) -> list[dict[str, Any]]:
    """Every row of notification_deliveries, oldest first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT id, idempotency_key, recipient, channel, status, hold_reason, attempts,"
            " last_error, digest_id, transition FROM notification_deliveries ORDER BY id"
        )
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@asynccontextmanager
async def running_notifier(env: dict[str, str]) -> AsyncIterator[Any]:
    """The notifier in this test's event loop (its settings from `env`), stopped on exit."""
    from alerts.notifier import NotifierHandle, run_notifier
    from consumers.migrations import migrate
    from foundation.settings import load_settings

    settings = load_settings(**{_field(k): v for k, v in env.items()})
    assert settings.database_url and settings.kafka_bootstrap_servers
    await migrate(settings.database_url, connect_timeout=10)
    stop = asyncio.Event()
    handle = NotifierHandle()
    task = asyncio.create_task(
        run_notifier(
            settings,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            database_url=settings.database_url,
            stop=stop,
            handle=handle,
        )
    )
    try:
        async with asyncio.timeout(60):
            waiter = asyncio.create_task(handle.assigned.wait())
            done, _ = await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiter.cancel()
                task.result()  # raises what stopped it
        yield handle
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await task


def _field(env_name: str) -> str:
    plain = {"KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers", "DATABASE_URL": "database_url"}
    return plain.get(env_name) or env_name.removeprefix("IOC_").lower()
