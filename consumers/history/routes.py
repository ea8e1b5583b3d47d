"""The history API's aiohttp sub-application (mounted at /v1/history on the ingest server).

Each handler reads its parameters (`params`), plans its query (`queries`), runs it
(`HistoryStore`) and shapes the rows (`views`). Every refusal is JSON
`{"error": code, "detail": …}` with a 4xx status; a database that does not answer is a 503
`unavailable` with Retry-After. No answer carries the database's own error text (it is
logged instead), and every answer carries `X-Content-Type-Options: nosniff`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from consumers.history.auth import KeyAuthenticator, Reader, authenticate
from consumers.history.metrics import HistoryMetrics
from consumers.history.params import (
    DEFAULT_LOG_RANGE,
    DEFAULT_SERIES_RANGE,
    MAX_LOG_RANGE,
    check_text,
    decode_cursor,
    encode_cursor,
    format_time,
    page_size,
    parse_time,
    time_range,
)
from consumers.history.queries import (
    HistoryCatalog,
    Query,
    alert_history_query,
    check_window_start,
    dead_letter_query,
    drilldown_events_query,
    drilldown_points_query,
    latest_points_query,
    plan_series,
    series_query,
)
from consumers.history.views import (
    alert_item,
    bucket_item,
    dead_letter_item,
    event_item,
    latest_view,
    point_item,
)
from foundation.contract.alerts import SEVERITY_RANK, STATE_LABELS
from foundation.contract.catalog import Catalog
from foundation.errors import HistoryQueryError, IocError
from foundation.log_throttle import LogThrottle

__all__ = ["LATEST_LOOKBACK", "PREFIX", "HistoryApi", "RowSource"]

log = logging.getLogger(__name__)

PREFIX: Final = "/v1/history"
LATEST_LOOKBACK: Final = 7 * 86400.0  # "latest" looks at windows that started this recently


class RowSource(Protocol):
    """Runs a query and returns its rows (HistoryStore; a fake in unit tests)."""

    async def fetch(self, query: Query) -> list[Sequence[Any]]: ...


_UNAVAILABLE: Final = "the history database is unavailable; retry later"


def _json(body: Mapping[str, Any], status: int = 200, **headers: str) -> web.Response:
    try:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a stored or echoed unpaired surrogate: escape it
        data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(
        body=data, status=status, content_type="application/json", charset="utf-8", headers=headers
    )


async def _no_sniffing(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Content-Type-Options"] = "nosniff"


def _error(code: str, detail: str, status: int, **headers: str) -> web.Response:
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ioc-history"'
    return _json({"error": code, "detail": detail}, status, **headers)


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        shown = ", ".join(ascii(name[:40]) for name in unknown[:5])
        raise HistoryQueryError(
            "bad_parameter",
            f"unknown parameter(s) {shown}; allowed: {', '.join(sorted(allowed))}",
        )
    return {name: check_text(name, value) for name, value in request.query.items()}


Endpoint = Callable[[web.Request, Reader], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class _Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


class HistoryApi:
    """Read-only history of KPIs, events, alerts and dead letters over HTTP."""

    def __init__(
        self,
        *,
        rows: RowSource,
        catalog: Catalog,
        token_secret: bytes | Callable[[], bytes],
        keys: KeyAuthenticator | None,
        metrics: HistoryMetrics,
        clock: Callable[[], float] = time.time,
        retry_after: int = 1,
    ) -> None:
        self._rows = rows
        self._catalog = HistoryCatalog(catalog)
        self._secret = token_secret
        self._keys = keys
        self._metrics = metrics
        self._clock = clock
        self._retry_after = retry_after
        self._log = LogThrottle(log)

    def app(self) -> web.Application:
        """The sub-application; mount it with `app.add_subapp(PREFIX, history.app())`."""
        app = web.Application(middlewares=[self._middleware])
        app.on_response_prepare.append(_no_sniffing)
        routes = {
            "/kpis/{kpi}/series": ("series", self._series),
            "/kpis/{kpi}/events": ("drilldown", self._drilldown),
            "/sectors/{sector}/latest": ("latest", self._latest),
            "/alerts": ("alerts", self._alerts),
            "/dead-letters": ("dead_letters", self._dead_letters),
        }
        for path, (name, endpoint) in routes.items():
            app.router.add_get(path, self._handler(name, endpoint), allow_head=False)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp's own 404/405 in this API's error format."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 405:
                response = _error("method_not_allowed", "the history API is read-only: GET", 405)
                if "Allow" in exc.headers:
                    response.headers["Allow"] = exc.headers["Allow"]
            else:
                response = _error("not_found", f"no history endpoint {request.path}", 404)
            self._metrics.requests.labels(endpoint="none", status=str(response.status)).inc()
            return response

    def _handler(
        self, name: str, endpoint: Endpoint
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            started = time.perf_counter()
            try:
                for part, value in request.match_info.items():
                    check_text(part, value)
                reader = await authenticate(
                    request.headers.get("Authorization"),
                    request.headers.get("X-API-Key"),
                    secret=self._secret,
                    keys=self._keys,
                    now=self._clock(),
                )
                response = _json(await endpoint(request, reader))
            except HistoryQueryError as exc:
                headers = {"Retry-After": str(self._retry_after)} if exc.status == 503 else {}
                response = _error(exc.code, exc.message, exc.status, **headers)
            except IocError as exc:  # the database, or the token secret's file: logged, not shown
                self._log.warning(f"unavailable:{name}", "history %s: %s", name, exc)
                response = _error(
                    "unavailable", _UNAVAILABLE, 503, **{"Retry-After": str(self._retry_after)}
                )
            except Exception:  # a bug: logged with its traceback, never shown
                log.exception("history %s: unexpected error", name)
                response = _error("internal_error", "unexpected error (see the server log)", 500)
            self._metrics.requests.labels(endpoint=name, status=str(response.status)).inc()
            self._metrics.query_seconds.labels(endpoint=name).observe(time.perf_counter() - started)
            return response

        return handle

    # -- KPIs ---------------------------------------------------------------------------

    async def _series(self, request: web.Request, reader: Reader) -> dict[str, Any]:
        entry = self._catalog.kpi(request.match_info["kpi"])
        reader.require_sector(entry.sector.id)
        query = _query(request, {"from", "to", "bucket", "group"})
        asked = time_range(query, now=self._clock(), default=DEFAULT_SERIES_RANGE)
        plan = plan_series(entry, asked, query.get("bucket"))
        group = query.get("group")
        rows = await self._rows.fetch(series_query(entry, plan, group))
        self._metrics.series_source.labels(table=plan.source).inc()
        series: dict[str, dict[str, Any]] = {}
        for row in rows:
            held = series.setdefault(row[0], {"series": row[0], "group": row[1], "points": []})
            item = point_item(row) if plan.width is None else bucket_item(row, plan.width)
            held["points"].append(item)
        return {
            "kpi": entry.key,
            "sector": entry.sector.id,
            "name_vi": entry.kpi.name_vi,
            "name_en": entry.kpi.name_en,
            "unit": entry.kpi.unit,
            "aggregation": entry.kpi.aggregation,
            "bucket": plan.bucket,
            "table": plan.source,
            "from": format_time(plan.range.start),
            "to": format_time(plan.range.end),
            "series": sorted(series.values(), key=lambda s: str(s["group"])),
        }

    async def _latest(self, request: web.Request, reader: Reader) -> dict[str, Any]:
        sector = self._catalog.sector(request.match_info["sector"])
        reader.require_sector(sector.id)
        _query(request, set())
        now = self._clock()
        entries = self._catalog.sector_kpis(sector.id)
        rows = await self._rows.fetch(latest_points_query([sector.id], now - LATEST_LOOKBACK))
        return {
            "sector": sector.id,
            "name_vi": sector.name_vi,
            "name_en": sector.name_en,
            "as_of": format_time(now),
            "kpis": [k.to_json() for k in latest_view(entries, rows, now=now)],
        }

    async def _drilldown(self, request: web.Request, reader: Reader) -> dict[str, Any]:
        entry = self._catalog.kpi(request.match_info["kpi"])
        reader.require_sector(entry.sector.id)
        query = _query(request, {"window_start", "group", "limit", "cursor"})
        if "window_start" not in query:
            raise HistoryQueryError("bad_range", "window_start is required (a KPI point's start)")
        start = parse_time("window_start", query["window_start"])
        check_window_start(entry, start)
        group = query.get("group")
        limit = page_size(query)
        after = decode_cursor(query["cursor"], (datetime, str, str)) if "cursor" in query else None
        points = await self._rows.fetch(drilldown_points_query(entry, start, group))
        rows = await self._rows.fetch(
            drilldown_events_query(entry, start, group, limit=limit, after=after)
        )
        page = _page(rows, limit, event_item, lambda r: [r[4], r[0], r[1]])
        return {
            "kpi": entry.key,
            "group": group,
            "event_type": entry.kpi.event_type,
            "window": {
                "start": format_time(start),
                "end": format_time(start + entry.spec.window.size),
            },
            "points": [{"series": r[0], "group": r[1], **point_item(r)} for r in points],
            "events": page.items,
            "next_cursor": page.next_cursor,
        }

    # -- alerts and dead letters --------------------------------------------------------

    async def _alerts(self, request: web.Request, reader: Reader) -> dict[str, Any]:
        query = _query(
            request, {"from", "to", "sector", "fingerprint", "state", "severity", "limit", "cursor"}
        )
        sectors = reader.sectors
        if "sector" in query:
            reader.require_sector(self._catalog.sector(query["sector"]).id)
            sectors = (query["sector"],)
        else:
            reader.require_token()
        for name, known in (("state", STATE_LABELS), ("severity", SEVERITY_RANK)):
            if name in query and query[name] not in known:
                raise HistoryQueryError(
                    "bad_parameter", f"{name} must be one of {', '.join(known)}"
                )
        fingerprint = query.get("fingerprint")
        span = None
        if fingerprint is None or "from" in query or "to" in query:
            span = time_range(
                query, now=self._clock(), default=DEFAULT_LOG_RANGE, maximum=MAX_LOG_RANGE
            )
        limit = page_size(query)
        after = decode_cursor(query["cursor"], (datetime, str, int)) if "cursor" in query else None
        rows = await self._rows.fetch(
            alert_history_query(
                span, sectors=sectors, fingerprint=fingerprint, state=query.get("state"),
                severity=query.get("severity"), limit=limit, after=after,
            )
        )  # fmt: skip
        page = _page(rows, limit, alert_item, lambda r: [r[0], r[1], r[2]])
        return {
            "from": None if span is None else format_time(span.start),
            "to": None if span is None else format_time(span.end),
            "transitions": page.items,
            "next_cursor": page.next_cursor,
        }

    async def _dead_letters(self, request: web.Request, reader: Reader) -> dict[str, Any]:
        """Dead letters belong to their sender (the refused record's key, or the API key's
        source over HTTP): a department's key reads those it sent, whatever source the
        records named; a token reads those sent by or naming a source of its sectors."""
        query = _query(request, {"source", "reason", "from", "to", "limit", "cursor"})
        source = query.get("source")
        senders: list[str] | None = None
        scope: list[str] | None = None
        if reader.kind == "api_key":
            if source is None:
                raise HistoryQueryError(
                    "forbidden",
                    f"an API key reads its own dead letters: add ?source={reader.source}",
                    status=403,
                )
            if source != reader.source:
                raise HistoryQueryError(
                    "forbidden", f"this API key belongs to {reader.source!r}, not {source!r}",
                    status=403,
                )  # fmt: skip
            senders = [source]
        elif source is not None:
            sector = self._catalog.source_sector.get(source)
            if reader.sectors is not None and (sector is None or sector not in reader.sectors):
                raise HistoryQueryError(
                    "forbidden", f"this token may not read source {source!r}", status=403
                )
            senders = [source]
        elif reader.sectors is not None:
            scope = self._catalog.sources_of(reader.sectors)
        span = time_range(
            query, now=self._clock(), default=DEFAULT_LOG_RANGE, maximum=MAX_LOG_RANGE
        )
        limit = page_size(query)
        after = decode_cursor(query["cursor"], (datetime, int, int)) if "cursor" in query else None
        rows = await self._rows.fetch(
            dead_letter_query(
                span, senders=senders, scope=scope, reason=query.get("reason"), limit=limit,
                after=after,
            )
        )  # fmt: skip
        page = _page(rows, limit, dead_letter_item, lambda r: [r[0], r[1], r[2]])
        return {
            "source": source,
            "from": format_time(span.start),
            "to": format_time(span.end),
            "dead_letters": page.items,
            "next_cursor": page.next_cursor,
        }


def _page(
    rows: Sequence[Sequence[Any]],
    limit: int,
    item: Callable[[Sequence[Any]], dict[str, Any]],
    key: Callable[[Sequence[Any]], list[Any]],
) -> _Page:
    """Items of at most limit rows; a cursor after the last one when the query found more."""
    shown = rows[:limit]
    cursor = encode_cursor(key(shown[-1])) if len(rows) > limit and shown else None
    return _Page([item(r) for r in shown], cursor)
