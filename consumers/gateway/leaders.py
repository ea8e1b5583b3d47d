"""The gateway's pages for leaders and analysts (plain HTTP GETs on the gateway's port).

    /analysis                  the analysis workspace (a token: ?token=… like the wall)
    /api/analysis/<what>       its data: teams, summary, kpi, events, export (Bearer token)
    /m/<link>                  an alert's phone page, from a notification's signed link
    /api/m/<link>              that page's data: the alert, its timeline, its KPI's 24 hours
    /r/<link>                  a team's report (?format=pdf|xlsx), from the report's link

The workspace reads the storage tables itself through the history's query planner
(`consumers.analysis`), on a small read-only pool of the gateway: one origin for the page,
its data and the socket (no CORS, nothing to configure), and the history API's rules
(rollups for long ranges, bounded statements) apply unchanged. Actions from the phone page
go over the WebSocket (`/ws?link=…`), where the gateway turns them into `AlertAction`s
exactly as it does for an officer's token, signed with the recipient's name.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from html import escape
from typing import Any, Final

from consumers.analysis.data import alert_timeline, kpi_buckets
from consumers.analysis.figures import province_series
from consumers.analysis.workspace import Workspace, workspace_config
from consumers.gateway.state import GatewayState
from consumers.history import HistoryCatalog, Query, RowSource
from foundation.auth.links import LinkClaims, LinkKind, LinkRejectedError, verify_link
from foundation.auth.tokens import TokenClaims, TokenRejectedError, verify_token
from foundation.contract.catalog import Catalog
from foundation.errors import HistoryQueryError, IocError

__all__ = ["PREFIXES", "LeaderPages", "Reply"]

log = logging.getLogger("ioc.gateway")

Reply = tuple[int, bytes, str, dict[str, str]]  # status, body, content type, extra headers
PREFIXES: Final = ("/analysis/", "/api/analysis/", "/m/", "/api/m/", "/r/")
_JSON: Final = "application/json; charset=utf-8"
_HTML: Final = "text/html; charset=utf-8"
_PHONE_HOURS: Final = 24 * 3600.0

# What an expired or altered link shows: Vietnamese first, never the page, never an action.
_REFUSED: Final[dict[str, tuple[int, str, str, str]]] = {
    "link_expired": (
        410,
        "Đường dẫn đã hết hạn",
        "Đường dẫn này đã hết hạn. Vui lòng mở thông báo mới nhất, hoặc liên hệ cán bộ trực"
        " IOC để nhận đường dẫn mới.",
        "This link has expired. Open the latest notification, or ask the IOC duty officer.",
    ),
    "link_bad_signature": (
        403,
        "Đường dẫn không hợp lệ",
        "Đường dẫn này không đúng hoặc đã bị sửa đổi, nên không thể mở. Vui lòng dùng đúng"
        " đường dẫn trong thông báo.",
        "This link is not valid or was altered. Use the link exactly as it came.",
    ),
    "link_malformed": (
        403,
        "Đường dẫn không hợp lệ",
        "Đường dẫn này không đúng hoặc không đầy đủ. Vui lòng dùng đúng đường dẫn trong thông báo.",
        "This link is incomplete or not one of ours. Use the link exactly as it came.",
    ),
}
_REFUSED["link_wrong_kind"] = _REFUSED["link_malformed"]


def _json(body: Mapping[str, Any], status: int = 200) -> Reply:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return status, text.encode(), _JSON, {}


def _error(code: str, detail: str, status: int) -> Reply:
    return _json({"error": code, "detail": detail}, status)


def refused_page(reason: str) -> Reply:
    """The page an expired or altered link gets (Vietnamese, with English below)."""
    status, title, text_vi, text_en = _REFUSED.get(reason, _REFUSED["link_malformed"])
    body = (
        '<!doctype html><html lang="vi"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)} · IOC</title><link rel="stylesheet" href="/phone.css">'
        '</head><body class="refused"><main><div class="refused-icon" aria-hidden="true">⊘</div>'
        f"<h1>{escape(title)}</h1><p>{escape(text_vi)}</p>"
        f'<p class="en" lang="en">{escape(text_en)}</p>'
        f'<p class="code">Mã lỗi: {escape(reason)}</p></main></body></html>'
    )
    return status, body.encode(), _HTML, {}


class LeaderPages:
    """Answers the paths in PREFIXES; `rows` None: no database (the data answers 503)."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        secret: bytes,
        rows: RowSource | None,
        state: GatewayState,
        files: Mapping[str, tuple[bytes, str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._history = HistoryCatalog(catalog)
        self._secret = secret
        self._rows = rows
        self._state = state
        self._files = files
        self._clock = clock
        self._workspace = (
            None if rows is None else Workspace(rows=rows, catalog=catalog, clock=clock)
        )
        self._config = json.dumps(workspace_config(catalog), ensure_ascii=False).encode()

    @staticmethod
    def handles(path: str) -> bool:
        return path == "/analysis" or path.startswith(PREFIXES)

    async def respond(
        self, path: str, query: Mapping[str, str], authorization: str | None
    ) -> Reply:
        try:
            if path in ("/analysis", "/analysis/"):
                return self._file("/analysis.html")
            if path == "/analysis/config.json":
                return 200, self._config, _JSON, {}
            if path.startswith("/api/analysis/"):
                return await self._analysis(
                    path.removeprefix("/api/analysis/"), query, authorization
                )
            if path.startswith("/m/"):
                return self._phone_page(path.removeprefix("/m/"))
            if path.startswith("/api/m/"):
                return await self._phone_data(path.removeprefix("/api/m/"))
            if path.startswith("/r/"):
                return await self._report(path.removeprefix("/r/"), query)
        except HistoryQueryError as exc:
            return _error(exc.code, exc.message, exc.status)
        except IocError as exc:  # the database did not answer in time
            log.warning("%s: %s", path, exc)
            return _error("unavailable", exc.message, 503)
        return _error("not_found", f"nothing at {path}", 404)

    def _file(self, name: str) -> Reply:
        body, kind = self._files[name]
        return 200, body, kind, {}

    def _claims(self, query: Mapping[str, str], authorization: str | None) -> TokenClaims:
        token = query.get("token")
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
        try:
            return verify_token(self._secret, token, now=self._clock())
        except TokenRejectedError as exc:
            raise HistoryQueryError(exc.reason, exc.detail, status=401) from exc

    def _link(self, link: str, kind: LinkKind) -> LinkClaims:
        return verify_link(self._secret, link.strip("/"), now=self._clock(), kind=kind)

    # -- the workspace

    async def _analysis(
        self, what: str, query: Mapping[str, str], authorization: str | None
    ) -> Reply:
        claims = self._claims(query, authorization)
        if what == "teams":
            return _json(Workspace.teams_of(self._catalog, claims))
        workspace = self._workspace
        if workspace is None:
            return _error("unavailable", "this gateway has no database (DATABASE_URL)", 503)
        if what == "summary":
            return _json(await workspace.summary(claims, query))
        if what == "kpi":
            return _json(await workspace.kpi(claims, query))
        if what == "events":
            return _json(await workspace.events(claims, query))
        if what == "export":
            found = await workspace.export(claims, query)
            disposition = f'attachment; filename="{found.filename}"'
            return 200, found.body, found.content_type, {"Content-Disposition": disposition}
        return _error("not_found", f"no analysis endpoint {what!r}", 404)

    # -- the phone page

    def _phone_page(self, link: str) -> Reply:
        try:
            self._link(link, "alert")
        except LinkRejectedError as exc:
            return refused_page(exc.reason)
        return self._file("/phone.html")

    async def _phone_data(self, link: str) -> Reply:
        try:
            claims = self._link(link, "alert")
        except LinkRejectedError as exc:
            return _error(exc.reason, exc.detail, 410 if exc.reason == "link_expired" else 403)
        fingerprint = claims.subject
        timeline = [] if self._rows is None else await alert_timeline(self._rows, fingerprint)
        current = timeline[-1].to_json() if timeline else self._state.open_alert(fingerprint)
        live = self._state.open_alert(fingerprint)
        if live is not None and (current is None or live["seq"] > current["seq"]):
            current = live
        answer: dict[str, Any] = {
            "recipient": claims.name,
            "expires_at": claims.expires_at,
            "fingerprint": fingerprint,
            "sector": claims.sector,
            "alert": current,
            "timeline": [t.to_json() for t in timeline],
            "kpi": None,
            "levels": {
                lvl.level: {"vi": lvl.name_vi or lvl.role, "en": lvl.name_en or lvl.role}
                for lvl in self._catalog.escalation.levels
            },
        }
        if current is not None and self._rows is not None:
            answer["kpi"] = await self._phone_kpi(current)
        sector = self._catalog.sector(claims.sector)
        answer["sector_name"] = {"vi": sector.name_vi, "en": sector.name_en} if sector else None
        return _json(answer)

    async def _phone_kpi(self, alert: Mapping[str, Any]) -> dict[str, Any] | None:
        labels = alert.get("labels", {})
        key = f"{labels.get('sector')}.{labels.get('kpi')}"
        entry = self._history.kpis.get(key)
        if entry is None or self._rows is None:
            return None
        group = labels.get("district") or labels.get("source")
        group_key = group if group and entry.kpi.group_by else None
        end = self._clock()
        buckets = await kpi_buckets(
            self._rows, entry, start=end - _PHONE_HOURS, end=end, bucket="15m", group=group_key
        )
        area = (
            self._catalog.district(labels.get("district", "")) if labels.get("district") else None
        )
        return {
            "kpi": key,
            "name_vi": entry.kpi.name_vi,
            "name_en": entry.kpi.name_en,
            "unit": entry.kpi.unit,
            "target": entry.kpi.target.model_dump() if entry.kpi.target else None,
            "area": {"code": area.code, "vi": area.name_vi, "en": area.name_en} if area else None,
            "series": [[t, v] for t, v in province_series(entry.kpi, buckets)],
        }

    # -- reports

    async def _report(self, link: str, query: Mapping[str, str]) -> Reply:
        try:
            claims = self._link(link, "report")
        except LinkRejectedError as exc:
            return refused_page(exc.reason)
        if self._rows is None:
            return _error("unavailable", "this gateway has no database", 503)
        team, _sep, rest = claims.subject.partition("/")
        edition, _sep, first_day = rest.partition("/")
        fmt = query.get("format", "html")
        column = {"html": "html", "pdf": "pdf", "xlsx": "xlsx"}.get(fmt)
        if column is None:
            return _error("bad_parameter", "format is html, pdf or xlsx", 400)
        rows = await self._rows.fetch(
            Query(
                f"SELECT {column} FROM team_reports WHERE team = %(team)s"  # noqa: S608 - fixed column
                " AND edition = %(edition)s AND first_day = %(day)s::date",
                {"team": team, "edition": edition, "day": first_day},
            )
        )
        if not rows or rows[0][0] is None:
            return _error("not_found", "this report has not been made (yet)", 404)
        body = rows[0][0]
        if fmt == "html":
            return 200, str(body).encode(), _HTML, {}
        kinds = {
            "pdf": "application/pdf",
            "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
        name = f"bao-cao-{team}-{edition}-{first_day}.{fmt}"
        return 200, bytes(body), kinds[fmt], {"Content-Disposition": f'inline; filename="{name}"'}
