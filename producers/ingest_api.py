"""The HTTP ingest API (aiohttp): POST /v1/events → one Kafka record per request.

Routes: POST /v1/events, GET /openapi.json, GET /healthz, GET /livez, GET /metrics, and whatever
sub-applications the composition root mounts next to them (the history API). The decisions live in
`producers.ingest_rules`; this module reads the request, authenticates the key,
calls the rules and the publisher, and writes the answer.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from foundation.auth.api_keys import ApiKeyRecord
from foundation.contract.envelope import MAX_RECORD_BYTES
from foundation.errors import DatabaseError, PortInUseError, SettingsError
from foundation.health import DependencyView, health_report
from foundation.intake import IntakePause
from foundation.log_throttle import LogThrottle
from producers.ingest_metrics import IngestMetrics
from producers.ingest_rules import (
    RequestError,
    Scope,
    check_content_type,
    check_scope,
    decode_body,
    event_results,
    presented_key,
    request_error,
    response_for,
)
from producers.openapi import ingest_openapi_document
from producers.sdk import DeliveryReport

__all__ = [
    "Authenticator",
    "IngestApi",
    "IngestLimits",
    "IntakeGate",
    "RecordSender",
    "listen_url",
    "serve_until",
]

log = logging.getLogger(__name__)


class RecordSender(Protocol):
    """Validates events of one source and publishes the valid ones as one record."""

    async def send_record(self, events: Sequence[Mapping[str, Any]]) -> list[DeliveryReport]: ...


class Authenticator(Protocol):
    """Turns a presented key into the key's record (None: not a valid, active key)."""

    async def authenticate(self, token: str) -> ApiKeyRecord | None: ...


class IntakeGate(Protocol):
    """Whether intake is paused (`ioc up` rolling or restarting the embedded broker)."""

    def paused(self) -> IntakePause | None: ...


@dataclass(frozen=True)
class IngestLimits:
    """Bounds of one API process."""

    max_in_flight: int = 64  # × 1 MiB bodies bounds the memory held by requests
    publish_timeout: float = 30.0
    auth_timeout: float = 5.0
    retry_after: int = 1


def _json(
    body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    try:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a client's unpaired surrogate echoed back: escape it
        data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(
        body=data, status=status, content_type="application/json", charset="utf-8", headers=headers
    )


async def _no_sniffing(_request: web.Request, response: web.StreamResponse) -> None:
    """Every answer, the sub-applications' and aiohttp's own included, is what it says."""
    response.headers["X-Content-Type-Options"] = "nosniff"


def _refuse(error: RequestError, *, retry_after: int | None = None) -> web.Response:
    headers: dict[str, str] = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ioc-ingest"'
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return _json(error.to_json(), error.status, headers)


class IngestApi:
    """The aiohttp application and its state; `ready` turns /healthz green."""

    def __init__(
        self,
        *,
        sender: RecordSender,
        keys: Authenticator,
        registry: CollectorRegistry,
        limits: IngestLimits | None = None,
        openapi: Mapping[str, Any] | None = None,
        mounts: Mapping[str, Callable[[], web.Application]] | None = None,
        gate: IntakeGate | None = None,
        dependencies: DependencyView | None = None,
    ) -> None:
        """`openapi`: the document served (default: the ingest API's own); `mounts`: prefix →
        factory of a sub-application served next to the ingest routes; `gate`: says when
        intake is paused; `dependencies`: the broker and database as /healthz reports them."""
        self._sender = sender
        self._gate = gate
        self._dependencies = dependencies
        self._mounts = dict(mounts or {})
        self._keys = keys
        self._registry = registry
        self._metrics = IngestMetrics.create(registry)
        self._limits = limits or IngestLimits()
        self._in_flight = 0
        document = openapi if openapi is not None else ingest_openapi_document()
        self._openapi = json.dumps(document, ensure_ascii=False, indent=2)
        self.ready = False

    @property
    def in_flight(self) -> int:
        """POST requests being handled now (a pause waits for them)."""
        return self._in_flight

    def app(self) -> web.Application:
        """A new application with the routes (the body limit is enforced by aiohttp too)."""
        app = web.Application(client_max_size=MAX_RECORD_BYTES, middlewares=[self._middleware])
        app.on_response_prepare.append(_no_sniffing)
        app.router.add_post("/v1/events", self._post_events)
        app.router.add_get("/openapi.json", self._get_openapi)
        app.router.add_get("/healthz", self._get_health)
        app.router.add_get("/livez", self._get_live)
        app.router.add_get("/metrics", self._get_metrics)
        for prefix, subapp in self._mounts.items():
            app.add_subapp(prefix, subapp())
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count every answer by status and turn aiohttp's HTTP errors into coded JSON."""
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            reason = {
                404: "not_found",
                405: "method_not_allowed",
                413: "too_large",
                415: "unsupported_media_type",
            }.get(exc.status, "bad_request" if exc.status < 500 else "internal_error")
            response = _refuse(request_error(reason))
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            response = _refuse(request_error("internal_error"))
        self._metrics.requests.labels(status=str(response.status)).inc()
        return response

    async def _post_events(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _refuse(request_error("not_ready"), retry_after=self._limits.retry_after)
        pause = self._gate.paused() if self._gate is not None else None
        if pause is not None:
            return _refuse(
                request_error("paused", f"intake paused ({pause.reason}); retry later"),
                retry_after=pause.retry_after,
            )
        if self._in_flight >= self._limits.max_in_flight:
            return _refuse(request_error("overloaded"), retry_after=self._limits.retry_after)
        self._in_flight += 1
        self._metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            return await self._ingest(request)
        finally:
            self._in_flight -= 1
            self._metrics.in_flight.dec()
            self._metrics.request_seconds.observe(time.perf_counter() - started)

    async def _ingest(self, request: web.Request) -> web.Response:
        length = request.content_length
        if length is not None and length > MAX_RECORD_BYTES:
            return _refuse(request_error("too_large", f"{length:,} bytes > {MAX_RECORD_BYTES:,}"))
        key = await self._authenticate(request)
        if isinstance(key, web.Response):
            return key
        refused = check_content_type(request.headers.get("Content-Type"))
        if refused is not None:
            return _refuse(refused)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refuse(request_error("too_large"))
        items = decode_body(raw)
        if isinstance(items, RequestError):
            return _refuse(items)
        refusal = check_scope(items, Scope(key.source, key.sector))
        if refusal is not None:
            log.info("key %s refused: %s", key.key_id, refusal.detail)
            return _refuse(refusal)
        positions = [i for i, item in enumerate(items) if isinstance(item, dict)]
        objects: list[Mapping[str, Any]] = [items[i] for i in positions]
        reports = await self._publish(objects, key.source) if objects else []
        results = event_results(items, positions, reports)
        self._metrics.observe_results(key.sector, results)
        status, body = response_for(results)
        headers = {"Retry-After": str(self._limits.retry_after)} if status == 503 else None
        return _json(body, status, headers)

    async def _authenticate(self, request: web.Request) -> ApiKeyRecord | web.Response:
        token = presented_key(
            request.headers.get("Authorization"), request.headers.get("X-API-Key")
        )
        if token is None:
            return _refuse(
                request_error(
                    "unauthorized", "send the key as `Authorization: Bearer <key>` or `X-API-Key`"
                )
            )
        try:
            async with asyncio.timeout(self._limits.auth_timeout):
                key = await self._keys.authenticate(token)
        except (DatabaseError, TimeoutError) as exc:
            log.warning("key lookup failed: %s", exc)
            return _refuse(request_error("auth_unavailable"), retry_after=self._limits.retry_after)
        if key is None:
            return _refuse(request_error("unauthorized", "unknown, revoked or malformed API key"))
        return key

    async def _publish(self, objects: list[Mapping[str, Any]], source: str) -> list[DeliveryReport]:
        try:
            async with asyncio.timeout(self._limits.publish_timeout):
                return await self._sender.send_record(objects)
        except TimeoutError:
            log.warning(
                "record of %s not acknowledged within %.0f s", source, self._limits.publish_timeout
            )
            detail = f"no acknowledgement within {self._limits.publish_timeout:g} s"
            return [
                DeliveryReport(
                    _event_id(obj), source, "failed", "send_failed", detail, index=position
                )
                for position, obj in enumerate(objects)
            ]

    async def _get_openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=self._openapi, content_type="application/json")

    async def _get_health(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _refuse(request_error("not_ready"))
        down = self._dependencies.down() if self._dependencies is not None else []
        pause = self._gate.paused() if self._gate is not None else None
        status, body = health_report(healthy=pause is None, down=down)
        if pause is not None and not down:
            body["status"] = "paused"
        if pause is not None:
            body["paused"] = {"reason": pause.reason, "since": pause.since}
        return _json(body, status)

    async def _get_live(self, request: web.Request) -> web.Response:
        """The process answers: for a liveness probe (a broker outage is no reason to restart)."""
        return _json({"ok": True}, 200)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _event_id(obj: Mapping[str, Any]) -> str | None:
    event_id = obj.get("event_id")
    return event_id if isinstance(event_id, str) else None


class _MalformedRequests(logging.Filter):
    """Requests aiohttp's parser refuses (a NUL in a header, not HTTP at all): aiohttp answers
    400 itself and logs each with a traceback; anyone could fill the log so. One line a
    minute without the traceback instead."""

    def __init__(self, throttle: LogThrottle) -> None:
        super().__init__()
        self._throttle = throttle

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        self._throttle.info(
            "malformed", "refused a malformed HTTP request (400): %s", str(error).splitlines()[0]
        )
        return False


def _server_log() -> logging.Logger:
    """The logger aiohttp's protocol layer writes to, with malformed requests throttled."""
    server_log = logging.getLogger("ioc.http")
    if not any(isinstance(f, _MalformedRequests) for f in server_log.filters):
        server_log.addFilter(_MalformedRequests(LogThrottle(server_log)))
    return server_log


def listen_url(runner: web.AppRunner) -> str:
    """http://host:port of the runner's first listening socket."""
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_until(
    api: IngestApi,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    announce: Callable[[str], None],
    shutdown_timeout: float = 10.0,
) -> None:
    """Listen on host:port, call announce(url), and stop cleanly once `stop` is set."""
    runner = web.AppRunner(
        api.app(), access_log=None, shutdown_timeout=shutdown_timeout, logger=_server_log()
    )
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"ingest API port {host}:{port} is in use (set IOC_INGEST_PORT or --port)"
                ) from exc
            raise SettingsError(
                f"IOC_INGEST_HOST: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        api.ready = True
        announce(listen_url(runner))
        await stop.wait()
    finally:
        api.ready = False
        # Waits up to shutdown_timeout for requests in flight, then closes connections.
        await runner.cleanup()
