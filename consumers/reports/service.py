"""`ioc reporter`: makes each team's reports when they are due and sends them (thin I/O).

Every poll it asks `schedule.due_editions`; for each due edition of each team that the
routing file sends somewhere it makes the report once (`team_reports`, first writer wins),
records one delivery per recipient and channel (`report_deliveries`, once), then sends what
is pending through the notifier's channels: the e-mail carries the report as HTML with the
PDF attached, every channel carries a signed link to the report on the gateway. A delivery
row is locked while it is sent (`FOR UPDATE SKIP LOCKED`), so two reporters never send it
twice; a failed attempt is retried with backoff, five times at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from alerts.notifier.channels import Channel, DeliveryError, Envelope
from alerts.notifier.messages import Attachment, Message
from alerts.routing import Routing
from consumers.history import HistoryStore
from consumers.reports.html import LINK_MARKER, link_paragraph, render_html
from consumers.reports.model import Report, gather_report, report_period
from consumers.reports.pdf import render_pdf
from consumers.reports.schedule import Due, due_editions
from consumers.reports.text import period_title, summary_lines
from consumers.reports.xlsx import render_xlsx
from foundation.auth.links import issue_link
from foundation.contract.catalog import Catalog, Team

__all__ = ["ReporterConfig", "ReporterMetrics", "make_report", "report_message", "run_reporter"]

log = logging.getLogger("ioc.reporter")

MAX_ATTEMPTS: Final = 5
# One delivery row (a constant: only values travel as parameters).
_WHERE: Final = (
    " WHERE team = %s AND edition = %s AND first_day = %s AND recipient = %s AND channel = %s"
)


@dataclass(frozen=True, slots=True)
class ReporterMetrics:
    reports: Counter
    deliveries: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ReporterMetrics:
        return cls(
            reports=Counter(
                "ioc_reporter_reports", "reports made", ["edition"], registry=registry
            ),
            deliveries=Counter(
                "ioc_reporter_deliveries", "report deliveries by outcome", ["channel", "outcome"],
                registry=registry,
            ),
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ReporterConfig:
    secret: bytes
    public_url: str
    hour: int
    catch_up: float
    link_ttl: float
    poll_interval: float
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True, slots=True)
class MadeReport:
    report: Report
    subject: str
    summary: str
    html: str  # with LINK_MARKER where a reader's link goes
    pdf: bytes
    xlsx: bytes


async def make_report(
    rows: HistoryStore, catalog: Catalog, team: Team, edition: str, day: date, *, now: float
) -> MadeReport:
    """Gather and render one edition (what `ioc report` and the reporter both do)."""
    period = report_period("weekly" if edition == "weekly" else "daily", day,
                           ZoneInfo(catalog.province.timezone))  # fmt: skip
    report = await gather_report(rows, catalog, team, period, now=now)
    title_vi, title_en = period_title(report)
    subject = f"[IOC {report.province_vi}] {title_vi} · {report.team.name_vi}"
    summary = "\n".join(
        [subject, *summary_lines(report), "", "— English —", f"{title_en} · {team.name_en}"]
    )
    return MadeReport(
        report, subject, summary, render_html(report), render_pdf(report), render_xlsx(report)
    )


def report_message(
    *,
    subject: str,
    summary: str,
    html: str,
    link: str,
    pdf: tuple[str, bytes] | None,
    item: dict[str, Any],
) -> Message:
    """The notification of a stored report for one reader: its summary and the reader's link
    as text, the HTML with that link, the PDF (e-mail only)."""
    text = f"{summary}\nXem báo cáo / Open the report: {link}"
    attachments = (Attachment(pdf[0], pdf[1]),) if pdf is not None else ()
    return Message(
        subject=subject,
        text=text,
        items=[item | {"link": link}],
        html=html.replace(LINK_MARKER, link_paragraph(link)),
        attachments=attachments,
    )


class Reporter:
    """One reporter process: owns its pool and sends through the given channels."""

    def __init__(
        self,
        *,
        pool: AsyncConnectionPool,
        rows: HistoryStore,
        catalog: Catalog,
        routing: Routing,
        channels: Mapping[str, Channel],
        config: ReporterConfig,
        metrics: ReporterMetrics,
    ) -> None:
        self._pool = pool
        self._rows = rows
        self._catalog = catalog
        self._routing = routing
        self._channels = channels
        self._config = config
        self._metrics = metrics
        self._zone = ZoneInfo(catalog.province.timezone)
        self.last_ok = time.monotonic()

    async def tick(self) -> int:
        """Make what is due, record its deliveries, send what is pending; returns sends."""
        now = self._config.clock()
        for due in due_editions(
            now, zone=self._zone, hour=self._config.hour, catch_up=self._config.catch_up
        ):
            for team in self._catalog.teams:
                targets = self._routing.report_targets(team.id, due.edition)
                if targets:
                    await self._prepare(team, due, targets, now)
        sent = await self._send_pending(now)
        self.last_ok = time.monotonic()
        return sent

    async def _prepare(self, team: Team, due: Due, targets: list[Any], now: float) -> None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM team_reports WHERE team = %s AND edition = %s AND first_day = %s",
                (team.id, due.edition, due.first_day),
            )
            exists = await cursor.fetchone() is not None
        if not exists:
            made = await make_report(self._rows, self._catalog, team, due.edition,
                                     due.first_day, now=now)  # fmt: skip
            async with self._pool.connection() as conn:
                cursor = await conn.execute(
                    "INSERT INTO team_reports (team, edition, first_day, last_day, generated_at,"
                    " subject, summary, html, pdf, xlsx) VALUES (%s, %s, %s, %s,"
                    " to_timestamp(%s), %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (team.id, due.edition, due.first_day, made.report.period.last_day, now,
                     made.subject, made.summary, made.html, made.pdf, made.xlsx),
                )  # fmt: skip
                if cursor.rowcount:
                    self._metrics.reports.labels(due.edition).inc()
                    log.info("made the %s report of %s for %s", due.edition, team.id, due.first_day)
        async with self._pool.connection() as conn:
            await conn.cursor().executemany(
                "INSERT INTO report_deliveries (team, edition, first_day, recipient, channel,"
                " address, status, created_at, due_at) VALUES (%s, %s, %s, %s, %s, %s, 'pending',"
                " to_timestamp(%s), to_timestamp(%s)) ON CONFLICT DO NOTHING",
                [(team.id, due.edition, due.first_day, t.recipient, t.channel, t.address, now, now)
                 for t in targets],
            )  # fmt: skip

    async def _send_pending(self, now: float) -> int:
        sent = 0
        while True:
            async with self._pool.connection() as conn, conn.transaction():
                cursor = await conn.execute(
                    "SELECT team, edition, first_day, recipient, channel, address, attempts"
                    " FROM report_deliveries WHERE status = 'pending'"
                    " AND due_at <= to_timestamp(%s)"
                    " ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (now,),
                )
                row = await cursor.fetchone()
                if row is None:
                    return sent
                outcome = await self._deliver(conn, row, now)
                sent += outcome == "sent"

    async def _deliver(self, conn: AsyncConnection[Any], row: tuple[Any, ...], now: float) -> str:
        team_id, edition, first_day, recipient, channel_name, address, attempts = row
        key = (team_id, edition, first_day, recipient, channel_name)
        channel = self._channels.get(channel_name)
        team = self._catalog.team(team_id)
        stored = await (
            await conn.execute(
                "SELECT subject, summary, html, pdf FROM team_reports WHERE team = %s"
                " AND edition = %s AND first_day = %s",
                (team_id, edition, first_day),
            )
        ).fetchone()
        if channel is None or team is None or stored is None:
            reason = "channel_not_configured" if channel is None else "unknown_team"
            log.warning("report to %s on %s not sent: %s", recipient, channel_name, reason)
            await conn.execute(
                f"UPDATE report_deliveries SET status = 'failed', last_error = %s{_WHERE}",  # noqa: S608 - constant WHERE
                (reason, *key),
            )
            self._metrics.deliveries.labels(channel_name, "failed").inc()
            return "failed"
        name = next((r.name for r in self._routing.recipients if r.id == recipient), recipient)
        link, _claims = issue_link(
            self._config.secret, kind="report", subject=f"{team_id}/{edition}/{first_day}",
            sector="", recipient=recipient, name=name, now=now, ttl=self._config.link_ttl,
        )  # fmt: skip
        url = f"{self._config.public_url}/r/{link}"
        filename = f"bao-cao-{team_id}-{edition}-{first_day}.pdf"
        message = report_message(
            subject=stored[0],
            summary=stored[1],
            html=stored[2],
            link=url,
            pdf=(filename, bytes(stored[3])) if channel_name == "email" else None,
            item={"kind": "report", "team": team_id, "edition": edition,
                  "first_day": str(first_day)},
        )  # fmt: skip
        digest = f"r-{team_id}-{edition}-{first_day}-{recipient}"
        try:
            await channel.send(Envelope(recipient, address, message, digest))
        except DeliveryError as exc:
            attempts += 1
            final = exc.permanent or attempts >= MAX_ATTEMPTS
            await conn.execute(
                "UPDATE report_deliveries SET status = %s, attempts = %s, last_error = %s,"  # noqa: S608 - constant WHERE
                f" due_at = to_timestamp(%s){_WHERE}",
                ("failed" if final else "pending", attempts, exc.reason,
                 now + min(3600.0, 30.0 * 2**attempts), *key),
            )  # fmt: skip
            self._metrics.deliveries.labels(channel_name, "failed" if final else "retry").inc()
            log.warning("report to %s on %s: %s", recipient, channel_name, exc.reason)
            return "failed" if final else "retry"
        await conn.execute(
            "UPDATE report_deliveries SET status = 'sent', attempts = %s,"  # noqa: S608 - constant WHERE
            f" sent_at = to_timestamp(%s){_WHERE}",
            (attempts + 1, now, *key),
        )
        self._metrics.deliveries.labels(channel_name, "sent").inc()
        log.info("sent the %s report of %s to %s on %s", edition, team_id, recipient, channel_name)
        return "sent"


async def run_reporter(reporter: Reporter, *, stop: asyncio.Event, poll_interval: float) -> None:
    """Tick until `stop`; a database or rendering failure is logged and retried next poll."""
    while not stop.is_set():
        try:
            await reporter.tick()
        except Exception:
            log.exception("reporter tick failed (retrying at the next poll)")
        try:
            async with asyncio.timeout(poll_interval):
                await stop.wait()
        except TimeoutError:
            pass
