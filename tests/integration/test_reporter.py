"""The morning reports against a real PostgreSQL and local SMTP/Telegram servers: on a Monday
at 07:01 a team's leader gets the daily and the weekly edition (HTML mail with the PDF
attached, and a link on Telegram), the Chairman the weekly one on Telegram; a second tick and
a restarted reporter send nothing again; the link opens the stored report on the gateway."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from alerts.notifier.app import build_channels
from alerts.routing import Routing, load_routing
from consumers.gateway.leaders import LeaderPages
from consumers.gateway.state import GatewayState
from consumers.history import HistoryStore, Query, open_read_pool
from consumers.migrations import migrate
from consumers.reports.service import Reporter, ReporterConfig, ReporterMetrics
from foundation.auth.key_store import open_pool
from foundation.auth.links import verify_link
from foundation.contract.catalog import load_catalog
from foundation.settings import load_settings
from tests.plugins.notify import TELEGRAM_TOKEN, LocalServers
from tests.plugins.services import CliResult

SECRET = b"reporter-test-secret-0123456789abcdef"
MONDAY_0701 = datetime(2026, 12, 7, 7, 1, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")).timestamp()


async def test_reports_go_out_once_per_team_and_period_with_pdf_and_link(
    fresh_database: str, notify_servers: LocalServers, tmp_path: Path
) -> None:
    """2 e-mails (daily and weekly) with a PDF each, 3 Telegram links (the Chairman's weekly
    one too); nothing more on a second tick or after a restart."""
    from prometheus_client import CollectorRegistry

    await migrate(fresh_database, connect_timeout=10)
    catalog = load_catalog()
    demo = load_routing()
    routing = Routing.model_validate(
        demo.model_dump(by_alias=True)
        | {
            "reports": [
                {"team": "van-xa", "notify": ["pct-van-xa"], "channels": ["email", "telegram"]},
                {"team": "van-xa", "notify": ["chu-tich"], "channels": ["telegram"],
                 "editions": ["weekly"]},
            ]
        }
    )  # fmt: skip
    settings = load_settings(
        state_dir=tmp_path,
        notifier_smtp_host="127.0.0.1",
        notifier_smtp_port=notify_servers.ports["email"],
        notifier_telegram_base_url=notify_servers.telegram_url,
        notifier_telegram_bot_token=TELEGRAM_TOKEN,
    )
    pool = await open_pool(fresh_database, timeout=10, name="test-reporter")
    read_pool = await open_read_pool(fresh_database, timeout=10, statement_timeout=30)
    rows = HistoryStore(pool=read_pool, timeout=30)
    try:
        async with aiohttp.ClientSession() as session:

            def reporter() -> Reporter:
                return Reporter(
                    pool=pool, rows=rows, catalog=catalog, routing=routing,
                    channels=build_channels(settings, session),
                    config=ReporterConfig(
                        secret=SECRET, public_url="https://ioc.example", hour=7,
                        catch_up=3600, link_ttl=86400, poll_interval=60,
                        clock=lambda: MONDAY_0701,
                    ),
                    metrics=ReporterMetrics.create(CollectorRegistry()),
                )  # fmt: skip

            first = reporter()
            assert await first.tick() == 5
            assert await first.tick() == 0
            assert await reporter().tick() == 0  # a restart sends nothing twice
        mails = notify_servers.received("email")
        assert len(notify_servers.received("telegram")) == 3  # each send awaited its answer
        assert [m.to for m in mails] == ["pct.vanxa@example.invalid"] * 2
        subjects = sorted(m.subject for m in mails)
        assert sum("Báo cáo ngày 06/12/2026" in s for s in subjects) == 1
        assert sum("Báo cáo tuần 30/11 – 06/12/2026" in s for s in subjects) == 1
        for mail in mails:
            [(name, pdf)] = mail.attachments
            assert name.startswith("bao-cao-") and pdf.startswith(b"%PDF")
            assert "https://ioc.example/r/iol1." in mail.html and "Chỉ tiêu" in mail.html
        links = [
            re.search(r"https://ioc\.example/r/(\S+)", m.text)
            for m in notify_servers.received("telegram")
        ]
        assert all(links)
        claims = [
            verify_link(SECRET, found.group(1), now=MONDAY_0701, kind="report")
            for found in links
            if found
        ]
        assert sorted(c.subject for c in claims) == [
            "van-xa/daily/2026-12-06",
            "van-xa/weekly/2026-11-30",
            "van-xa/weekly/2026-11-30",
        ]
        assert {c.name for c in claims} == {
            "Phó Chủ tịch UBND tỉnh phụ trách văn hóa – xã hội",
            "Chủ tịch UBND tỉnh",
        }
        # The link opens the stored report (HTML, PDF) on the gateway.
        daily = [c for c in claims if "/daily/" in c.subject]
        link = next(
            f.group(1)
            for f in links
            if f and verify_link(SECRET, f.group(1), now=MONDAY_0701, kind="report") in daily
        )
        pages = LeaderPages(
            catalog=catalog, secret=SECRET, rows=rows, state=GatewayState(), files={},
            clock=lambda: MONDAY_0701 + 60,
        )  # fmt: skip
        status, body, kind, _ = await pages.respond(f"/r/{link}", {"format": "pdf"}, None)
        assert (status, kind) == (200, "application/pdf") and body.startswith(b"%PDF")
        status, body, _, _ = await pages.respond(f"/r/{link}", {}, None)
        assert status == 200 and "Báo cáo ngày 06/12/2026" in body.decode()
        status, _, _, _ = await pages.respond(f"/r/{link[:-2]}xx", {}, None)
        assert status == 403
        stored = await rows.fetch(
            Query(
                "SELECT count(*) FROM team_reports WHERE first_day = %(d)s",
                {"d": date(2026, 12, 6)},
            )
        )
        assert stored[0][0] == 1
    finally:
        await read_pool.close()
        await pool.close()


def test_ioc_report_writes_a_finished_days_pdf_and_refuses_a_day_not_over(
    fresh_database: str, ioc_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """The PDF comes quietly (no line per font table on stderr); today and later are refused."""
    zone = ZoneInfo(load_catalog().province.timezone)
    today = datetime.now(zone).date()
    env = {"DATABASE_URL": fresh_database, "IOC_STATE_DIR": str(tmp_path / "state")}
    out = tmp_path / "r.pdf"
    yesterday = str(today - timedelta(days=1))
    made = ioc_cli("report", "--team", "van-xa", "--date", yesterday, "--out", str(out), env=env)
    assert made.returncode == 0, made.stderr
    assert out.read_bytes().startswith(b"%PDF")
    assert "fontTools" not in made.stderr, made.stderr
    assert made.stderr.splitlines()[-1].startswith(f"{out} ("), made.stderr
    for args in (["--date", str(today)], ["--date", str(today + timedelta(days=150))],
                 ["--date", str(today - timedelta(days=today.weekday())), "--weekly"]):  # fmt: skip
        refused = ioc_cli("report", "--team", "van-xa", *args, "--out", str(out), env=env)
        assert refused.returncode == 1
        assert refused.stderr.startswith("ioc: error [bad_setting] --date:"), refused.stderr
        assert "has not ended yet" in refused.stderr
    # Without --date: yesterday, or with --weekly the last finished week (any day of the week).
    weekly = ioc_cli("report", "--team", "van-xa", "--weekly", "--out", str(out), env=env)
    assert weekly.returncode == 0, weekly.stderr
    sunday = today - timedelta(days=today.weekday() + 1)
    monday = sunday - timedelta(days=6)
    assert f"Báo cáo tuần {monday:%d/%m} – {sunday:%d/%m/%Y}" in weekly.stderr, weekly.stderr
