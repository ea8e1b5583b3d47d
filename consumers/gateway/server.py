"""The gateway's server: the wall page, /healthz, /metrics and the WebSocket on one port.

`websockets` (asyncio API) serves plain HTTP GETs through `process_request` (the page, its
static files, `/config.json`, `/healthz`, `/metrics`, the Kafka contract at `/asyncapi.json`
and `/schemas/…`) and upgrades `/ws?token=…`. Each
connection gets a `ClientSession` (direct writes while the connection keeps up, else a
bounded outbox + writer task) and a reader loop that handles the client's messages; both end
together, and the session leaves the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import json
import logging
import mimetypes
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from consumers.gateway.actions import ActionPublishError, ActionSink
from consumers.gateway.channels import ChannelDeniedError, expand_channels
from consumers.gateway.fanout import ClientGoneError, ClientSession, Hub
from consumers.gateway.leaders import LeaderPages
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHORIZED,
    ActionRequest,
    Ping,
    ProtocolError,
    Resume,
    Resync,
    Subscribe,
    Unsubscribe,
    action_result,
    error,
    heartbeat,
    hello,
    parse_client_message,
    pong,
    status_frame,
    subscribed,
)
from consumers.gateway.wall_config import wall_config
from consumers.history import RowSource
from foundation.auth.links import LinkRejectedError, verify_link
from foundation.auth.tokens import TokenClaims, TokenRejectedError, verify_token
from foundation.contract.alerts import AlertAction, Fingerprint
from foundation.contract.asyncapi import contract_documents
from foundation.contract.catalog import Catalog
from foundation.errors import PortInUseError
from foundation.health import DependencyDown, DependencyView, health_report
from foundation.log_throttle import LogThrottle

__all__ = ["STATIC_DIR", "GatewayServer", "ServerOptions"]

_ACTION_IDS = uuid.UUID("5f1c2a8e-3b7d-4e0a-9c61-2d8f7b4a6e13")  # namespace of wall actions

log = logging.getLogger("ioc.gateway")

STATIC_DIR = Path(__file__).with_name("static")
_READY_WAIT = 30.0  # a client connecting during the start-up replay waits at most this long
# A connection whose write buffer holds this much is backed up: its messages wait in its
# outbox (websockets' default high-water mark, given to `serve` too).
WRITE_LIMIT = 32 * 1024


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


class _NothingDown:
    def down(self) -> list[DependencyDown]:
        return []


class ServerOptions:
    """The knobs of the server, grouped (keyword-only)."""

    def __init__(
        self,
        *,
        heartbeat: float,
        queue_limit: int,
        send_timeout: float,
        close_timeout: float = 5.0,
    ) -> None:
        self.heartbeat = heartbeat
        self.queue_limit = queue_limit
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout


class _WireFrames:
    """The last message framed for the wire, shared by every connection it is written to.

    A server's frames are not masked and the gateway negotiates no extension (compression
    is off), so one text message is the same bytes on every connection: the fan-out frames
    it once instead of once per client (half the per-client cost, measured). The fan-out
    writes one message to all clients in a row, so remembering the last one is enough.
    """

    def __init__(self) -> None:
        self._data: bytes | None = None
        self._wire = b""

    def text(self, data: bytes) -> bytes:
        if data is not self._data:  # identity: the hub hands every client the same object
            self._wire = Frame(Opcode.TEXT, data).serialize(mask=False)
            self._data = data
        return self._wire


class _WsTransport:
    """A `websockets` connection as the fan-out's Transport."""

    def __init__(self, connection: ServerConnection, write_limit: int, frames: _WireFrames) -> None:
        self._connection = connection
        self._write_limit = write_limit
        self._frames = frames

    def write_now(self, frame: bytes) -> bool:
        # What `websockets.broadcast` does for each connection, plus the high-water check
        # that broadcast lacks: frame the message and hand it to the transport, no await.
        connection = self._connection
        protocol = connection.protocol
        if protocol.state is not State.OPEN:
            raise ClientGoneError("the connection is closing")
        if connection.transport.get_write_buffer_size() >= self._write_limit:
            return False
        try:
            if protocol.extensions or protocol.expect_continuation_frame:
                protocol.send_text(frame)  # never here: no extension, no fragmented send
                connection.send_data()
            else:
                # The protocol keeps no state for a whole text frame it sends, and its own
                # output is always flushed before control returns to the loop, so a frame
                # written here never lands inside another one.
                connection.transport.write(self._frames.text(frame))
        except (WebSocketException, RuntimeError, OSError) as exc:
            raise ClientGoneError(repr(exc)) from exc
        return True

    async def send(self, frame: bytes) -> None:
        try:
            await self._connection.send(frame, text=True)
        except ConnectionClosed as exc:
            raise ClientGoneError(str(exc)) from exc


_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    410: "Gone", 422: "Unprocessable Content", 503: "Service Unavailable",
}  # fmt: skip


def _response(status: int, reason: str, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(status, reason, headers, body)


class GatewayServer:
    """Serves the page and the socket; owns the sessions and the heartbeat task."""

    def __init__(
        self,
        *,
        hub: Hub,
        ready: asyncio.Event,
        catalog: Catalog,
        secret: bytes,
        actions: ActionSink,
        metrics: GatewayMetrics,
        registry: CollectorRegistry,
        options: ServerOptions,
        dependencies: DependencyView | None = None,
        clock: Callable[[], float] = time.time,
        rows: RowSource | None = None,
    ) -> None:
        self._hub = hub
        self._dependencies = dependencies or _NothingDown()
        self._ready = ready
        self._sectors = [s.id for s in catalog.sectors]
        self._secret = secret
        self._actions = actions
        self._metrics = metrics
        self._registry = registry
        self._options = options
        self._clock = clock
        self._sessions: set[ClientSession] = set()
        self._frames = _WireFrames()
        self._roles: Counter[str] = Counter()
        self._server: Server | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._files = self._load_files(catalog)
        self._leaders = LeaderPages(
            catalog=catalog, secret=secret, rows=rows, state=hub.state, files=self._files,
            clock=clock,
        )  # fmt: skip
        self._log = LogThrottle(log)  # what strangers can trigger: at most a line a minute
        metrics.clients_backed_up.set_function(
            lambda: sum(1 for s in self._sessions if s.backed_up)
        )
        metrics.clients_coalescing.set_function(
            lambda: sum(1 for s in self._sessions if s.coalescing)
        )

    @staticmethod
    def _load_files(catalog: Catalog) -> dict[str, tuple[bytes, str]]:
        files: dict[str, tuple[bytes, str]] = {}
        for path in sorted(STATIC_DIR.rglob("*")):
            if path.is_file():
                kind = mimetypes.guess_type(path.name)[0] or "text/plain"  # LICENSE files
                if kind.startswith("text/") or kind.endswith(("javascript", "json")):
                    kind += "; charset=utf-8"
                files[f"/{path.relative_to(STATIC_DIR).as_posix()}"] = (path.read_bytes(), kind)
        files["/"] = files["/index.html"]
        config = json.dumps(wall_config(catalog), ensure_ascii=False).encode()
        files["/config.json"] = (config, "application/json; charset=utf-8")
        # The Kafka contract for integrators: /asyncapi.json and /schemas/… (JSON Schema).
        for name, document in contract_documents(catalog).items():
            body = json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False).encode()
            schema = name.startswith("schemas/") and name != "schemas/index.json"
            kind = "application/schema+json" if schema else "application/json"
            files[f"/{name}"] = (body, kind + "; charset=utf-8")
        files["/schemas/"] = files["/schemas"] = files["/schemas/index.json"]
        return files

    # -- life cycle

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (port 0 picks one). PortInUseError if taken."""
        try:
            self._server = await serve(
                self._handle,
                host,
                port,
                process_request=self._process_request,
                compression=None,  # per-message deflate costs CPU per client and message
                max_size=64 * 1024,  # client messages are small
                write_limit=WRITE_LIMIT,
                close_timeout=self._options.close_timeout,
                # Our own keepalive (`_keepalive`) pings instead: a client that stops reading
                # must be closed as too slow (4408), not by the library's 1011.
                ping_interval=None,
                logger=logging.getLogger("ioc.gateway.ws"),
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"gateway port {host}:{port} is in use (set IOC_GATEWAY_PORT, 0 for any)"
                ) from exc
            raise
        self._heartbeat_task = asyncio.create_task(self._heartbeats())
        bound = port
        for sock in self._server.sockets:
            bound = int(sock.getsockname()[1])
        return bound

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of /healthz: 503 during the start-up replay or while degraded."""
        roles = {role: n for role, n in self._roles.items() if n}
        status, body = health_report(
            healthy=self._ready.is_set(),
            down=self._dependencies.down(),
            extra={
                "ready": self._ready.is_set(),
                "epoch": self._hub.epoch,
                "clients": roles,
                "walls": roles.get("wall", 0),
                "series": self._hub.state.series_count,
                "open_alerts": self._hub.state.open_alert_count,
            },
        )
        if body["status"] == "failing":  # only the start-up replay makes a gateway unready
            body["status"] = "starting"
        return status, body

    def _status_frame(self) -> str:
        down = self._dependencies.down()
        since = min((d.since for d in down), default=None)
        return status_frame(
            since=since, down=[(d.dependency, d.since) for d in down], now=self._clock()
        )

    def dependencies_changed(self) -> None:
        """Tell every screen that a dependency went down or came back (a `status` message)."""
        frame = self._status_frame()
        for session in list(self._sessions):
            session.push(frame, "control")

    # -- HTTP

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path
        if path == "/ws":
            return None
        if LeaderPages.handles(path):
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, body, kind, extra = await self._leaders.respond(
                path, query, request.headers.get("Authorization")
            )
            response = _response(status, _REASONS.get(status, "Error"), body, kind)
            for name, value in extra.items():
                response.headers[name] = value
            return response
        if path == "/healthz":
            status, report = self.health()
            body = json.dumps(report).encode()
            reason = "OK" if status == 200 else "Service Unavailable"
            return _response(status, reason, body, "application/json")
        if path == "/livez":  # the process answers (a liveness probe; /healthz says the rest)
            return _response(200, "OK", b'{"ok": true}', "application/json")
        if path == "/metrics":
            return _response(200, "OK", generate_latest(self._registry), CONTENT_TYPE_LATEST)
        if path == "/favicon.ico":  # the pages declare none; a browser asking gets no error
            return _response(204, "No Content", b"", "image/x-icon")
        found = self._files.get(path)
        if found is None:
            return _response(404, "Not Found", b"not found\n", "text/plain; charset=utf-8")
        body, kind = found
        return _response(200, "OK", body, kind)

    # -- WebSocket

    async def _handle(self, connection: ServerConnection) -> None:
        query = parse_qs(urlsplit(connection.request.path if connection.request else "").query)
        tokens = query.get("token")
        token = tokens[0] if tokens else None
        links = query.get("link")
        only_alert: str | None = None
        try:
            if links and not token:
                # A leader's phone page: the link signed for them and for one alert acts
                # like a leader's token scoped to that alert, under the recipient's name.
                link = verify_link(self._secret, links[0], now=self._clock(), kind="alert")
                only_alert = link.subject
                claims = TokenClaims(
                    role="leader", name=link.name, sectors=(link.sector,),
                    issued_at=link.issued_at, expires_at=link.expires_at,
                    token_id=f"link-{link.link_id}",
                )  # fmt: skip
            else:
                claims = verify_token(self._secret, token, now=self._clock())
        except (TokenRejectedError, LinkRejectedError) as exc:
            self._metrics.auth_failures.labels(exc.reason).inc()
            self._log.info(
                f"refused:{exc.reason}",
                "refused a connection from %s: %s",
                _peer(connection),
                exc.reason,
            )
            await connection.close(CLOSE_UNAUTHORIZED, exc.reason)
            return
        unknown = [s for s in claims.sectors or () if s not in self._sectors]
        if unknown:
            self._metrics.auth_failures.labels("unknown_sector").inc()
            self._log.info(
                "refused:unknown_sector",
                "refused a connection from %s: unknown_sector",
                _peer(connection),
            )
            await connection.close(CLOSE_FORBIDDEN, "unknown_sector")
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_READY_WAIT):
                await self._ready.wait()
        session = ClientSession(
            transport=_WsTransport(connection, WRITE_LIMIT, self._frames),
            epoch=self._hub.epoch,
            queue_limit=self._options.queue_limit,
            send_timeout=self._options.send_timeout,
            metrics=self._metrics,
        )
        self._sessions.add(session)
        self._roles[claims.role] += 1
        self._metrics.clients.labels(claims.role).inc()
        session.push(
            hello(
                epoch=self._hub.epoch,
                role=claims.role,
                name=claims.name,
                sectors=claims.sectors,
                heartbeat=self._options.heartbeat,
                now=self._clock(),
                may_act=claims.may_act,
            ),
            "control",
        )
        if self._dependencies.down():  # the screen must not take old figures for current ones
            session.push(self._status_frame(), "control")
        writer = asyncio.create_task(session.run())
        reader = asyncio.create_task(self._read(connection, session, claims, only_alert))
        keepalive = asyncio.create_task(self._keepalive(connection, session))
        tasks = (reader, writer, keepalive)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._hub.drop(session)
            session.close()
            self._sessions.discard(session)
            self._roles[claims.role] -= 1
            self._metrics.clients.labels(claims.role).dec()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if session.close_code is not None:
            self._log.info(
                f"closed:{session.close_code[1]}",
                "closed %s (%s): %d %s",
                _peer(connection),
                claims.name,
                *session.close_code,
            )
            await connection.close(*session.close_code)

    async def _keepalive(self, connection: ServerConnection, session: ClientSession) -> None:
        """Ping every heartbeat; a client whose pong does not come within the send timeout
        does not read its socket: it is closed as too slow (4408) like a stalled send.

        websockets' own keepalive would close it with 1011 after its ping timeout, and with
        little traffic the send timeout never fires: the kernel buffers take every frame.
        """
        while not session.closed:
            await asyncio.sleep(self._options.heartbeat)
            try:
                async with asyncio.timeout(self._options.send_timeout):
                    pong = await connection.ping()
                    await pong
            except TimeoutError:
                session.close_slow()
                return
            except ConnectionClosed:
                return

    async def _read(
        self,
        connection: ServerConnection,
        session: ClientSession,
        claims: TokenClaims,
        only_alert: str | None,
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                if session.closed:
                    return
                try:
                    await self._on_message(session, claims, message, only_alert)
                except ProtocolError as exc:
                    session.push(error(exc.code, exc.message), "control")
                except ChannelDeniedError as exc:
                    session.push(
                        error(exc.reason, f"channel {exc.channel!r}", channel=exc.channel),
                        "control",
                    )
                except Exception:  # a bug: the client gets an error, not a silent close
                    if self._log.warning("bug:message", "a client message failed (answered)"):
                        log.exception("the message's error")
                    session.push(
                        error("bad_message", "the message could not be handled"), "control"
                    )

    def _concrete(self, channel: str, claims: TokenClaims) -> str:
        expanded = expand_channels([channel], sectors=self._sectors, scope=claims.sectors)
        if expanded != [channel]:
            raise ChannelDeniedError("not_concrete", channel)
        return channel

    async def _on_message(
        self,
        session: ClientSession,
        claims: TokenClaims,
        message: str | bytes,
        only_alert: str | None = None,
    ) -> None:
        request = parse_client_message(message)
        hub = self._hub
        if isinstance(request, Subscribe):
            channels = expand_channels(
                request.channels, sectors=self._sectors, scope=claims.sectors
            )
            session.push(subscribed(channels), "control")
            for channel in channels:
                hub.subscribe(session, channel)
        elif isinstance(request, Resume):
            channels = [self._concrete(c, claims) for c in request.seqs]
            session.push(subscribed(channels), "control")
            for channel in channels:
                hub.resume(session, channel, request.epoch, request.seqs[channel])
        elif isinstance(request, Unsubscribe):
            for channel in expand_channels(
                request.channels, sectors=self._sectors, scope=claims.sectors
            ):
                hub.unsubscribe(session, channel)
        elif isinstance(request, Resync):
            hub.resync(session, self._concrete(request.channel, claims), "gap")
        elif isinstance(request, Ping):
            session.push(pong(request.nonce, self._clock()), "control")
        elif isinstance(request, ActionRequest):
            session.push(await self._act(request, claims, only_alert), "control")

    async def _act(
        self, request: ActionRequest, claims: TokenClaims, only_alert: str | None = None
    ) -> str:
        def refuse(code: str, message: str) -> str:
            self._metrics.actions.labels(request.action, code).inc()
            return action_result(request.request_id, ok=False, code=code, message=message)

        if not claims.may_act:
            return refuse("forbidden_action", f"a {claims.role} token cannot act on alerts")
        if only_alert is not None and request.fingerprint != only_alert:
            return refuse("forbidden_alert", "this link is for another alert")
        sector = self._hub.state.alert_sector(request.fingerprint)
        if sector is None:
            return refuse("unknown_alert", "this gateway has not seen that alert")
        if not claims.allows_sector(sector):
            return refuse("forbidden_sector", f"the token does not cover sector {sector}")
        action = AlertAction(
            # The same request (a client's resend after "try again") gives the same id, which
            # the alert engine applies once.
            action_id=uuid.uuid5(_ACTION_IDS, f"{claims.token_id}|{request.request_id}").hex,
            action=request.action,
            by=claims.name,
            at=self._clock(),
            fingerprint=Fingerprint(request.fingerprint),
            note=request.note,
            assignee=request.assignee,
        )
        try:
            await self._actions.publish(action)
        except ActionPublishError as exc:
            log.warning("could not publish %s on %s: %s", action.action, action.fingerprint, exc)
            return refuse("publish_failed", "the action was not recorded; try again")
        self._metrics.actions.labels(request.action, "ok").inc()
        log.info("%s %s by %s (%s)", action.action, action.fingerprint, claims.name, claims.role)
        return action_result(request.request_id, ok=True, action_id=action.action_id)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._options.heartbeat)
            frame = heartbeat(self._clock())
            for session in list(self._sessions):
                if session.queued < 2:
                    session.push(frame, "heartbeat")
