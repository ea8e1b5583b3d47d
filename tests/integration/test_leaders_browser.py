"""Leaders and analysts as they would use the platform: a running `ioc up` (worker, writer,
gateway) fed a day of real events for a province of communes (a catalog with no districts
and no map positions), then headless Chromium: the analysis workspace at 1920×1080, the phone
page behind a signed link at 360×640 whose action shows on the wall's ticker and map, expired
and altered links refused, axe-core on the new pages; and `ioc report` from the same data."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import pytest_asyncio
from openpyxl import load_workbook
from psycopg import sql

from foundation.auth.links import issue_link
from foundation.auth.tokens import issue_token
from foundation.contract.catalog import load_catalog
from ioc.embedded._process import find_free_port
from producers.sdk import Publisher
from tests.plugins.services import IocProcess, read_records

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("/usr/bin/chromium") is None, reason="no Debian chromium"),
]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SECRET = "leaders-test-secret-0123456789abcdef"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
AXE = Path(__file__).parents[1] / "vendor" / "axe-core" / "axe.min.js"
SHOTS = Path(__file__).parents[2] / "docs" / "screenshots"

# After mid-2025 a province has communes and wards; none of this catalog's areas has a map
# position, so the map is laid out from the catalog alone.
CATALOG = """\
version: 1
province: {id: thu, name_vi: Tỉnh Thử Nghiệm, name_en: Test Province}
area_level: {name_vi: "Xã, phường", name_en: Commune or ward}
districts:
  - {code: xa-tan-lap, name_vi: Xã Tân Lập, name_en: Tan Lap Commune}
  - {code: phuong-dong-xoai, name_vi: Phường Đồng Xoài, name_en: Dong Xoai Ward}
  - {code: xa-thuan-loi, name_vi: Xã Thuận Lợi, name_en: Thuan Loi Commune}
  - {code: phuong-binh-long, name_vi: Phường Bình Long, name_en: Binh Long Ward}
teams:
  - {id: noi-chinh, name_vi: Tổ phân tích dữ liệu nội chính, name_en: Internal affairs team,
     leader_vi: Phó Chủ tịch phụ trách nội chính, leader_en: Vice-Chairman, sectors: [water]}
sectors:
  - id: water
    name_vi: Thủy lợi
    name_en: Irrigation
    sources:
      - {id: tram-do-muc-nuoc, name_vi: Trạm đo mực nước, name_en: Water level stations,
         cadence: 1h}
    event_types:
      - {id: level, name_vi: Mực nước, name_en: Water level, unit: cm}
    kpis:
      - id: level_avg
        name_vi: Mực nước trung bình
        name_en: Average water level
        event_type: level
        aggregation: avg
        unit: cm
        window: {size: 1h, grace: 2d}
        group_by: [district]
        target: {value: 75, direction: at_most}
        headline: true
    alerts:
      - id: level_high
        kind: threshold
        kpi: level_avg
        op: above
        raise: 85
        clear: 70
        severity: critical
        message_vi: "Mực nước tại {district_name} lên {value:.0f} cm, vượt {raise:.0f} cm"
        message_en: "Water level in {district_name} at {value:.0f} cm, above {raise:.0f} cm"
"""
AREAS = ["xa-tan-lap", "phuong-dong-xoai", "xa-thuan-loi", "phuong-binh-long"]
FLOODED = "xa-thuan-loi"
RECIPIENT = "Phó Chủ tịch Nguyễn Văn A"


def level_at(moment: datetime) -> float:
    """A day's water level: 40–60 cm by the hour, the same in every commune."""
    return 40.0 + (moment.astimezone(ZONE).hour % 5) * 5.0


@dataclass
class Platform:
    url: str
    env: dict[str, str]
    bootstrap: str
    tmp: Path
    events: list[dict[str, Any]]
    fingerprint: str = ""

    def token(self, **kw: Any) -> str:
        token, _ = issue_token(SECRET.encode(), now=time.time(), ttl=3600, **kw)
        return token

    def link(self, *, now: float | None = None, ttl: float = 72 * 3600) -> str:
        link, _ = issue_link(
            SECRET.encode(), kind="alert", subject=self.fingerprint, sector="water",
            recipient="pct-noi-chinh", name=RECIPIENT, now=now or time.time(), ttl=ttl,
        )  # fmt: skip
        return link


def _events(now: datetime) -> list[dict[str, Any]]:
    """Every 20 minutes of the last 26 hours in each commune; one floods for the last 6 h."""
    out = []
    start = (now - timedelta(hours=26)).replace(minute=0, second=0, microsecond=0)
    moment = start
    seq = 0
    while moment < now - timedelta(minutes=1):
        for area in AREAS:
            value = level_at(moment)
            if area == FLOODED and moment >= now - timedelta(hours=6):
                value = 200.0
            seq += 1
            out.append({
                "event_id": f"lvl-{seq}", "source": "tram-do-muc-nuoc", "sector": "water",
                "type": "level", "occurred_at": moment.isoformat(), "value": value, "unit": "cm",
                "district": area,
            })  # fmt: skip
        moment += timedelta(minutes=20)
    return out


@pytest.fixture(scope="module")
def platform_database(database_url: str) -> Iterator[str]:
    """A database of its own on the session's PostgreSQL for this module's platform."""
    name = f"leaders_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield database_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, platform_database: str
) -> AsyncIterator[Platform]:
    """`ioc up` (worker, writer, gateway; the session's broker and a database of its own)
    with the communes catalog, fed a day of events."""
    platform_dir = tmp_path_factory.mktemp("leaders")
    catalog = platform_dir / "communes.yaml"
    catalog.write_text(CATALOG, encoding="utf-8")
    load_catalog(catalog)  # valid as written
    state = platform_dir / "state"
    port = find_free_port()
    suffix = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": platform_database,
        "IOC_WORKER_GROUP": f"leaders-worker-{suffix}",
        "IOC_WRITER_GROUP": f"leaders-writer-{suffix}",
        "IOC_WORKER_SESSION_TIMEOUT": "4",
        "IOC_STATE_DIR": str(state),
        "IOC_CATALOG": str(catalog),
        "IOC_GATEWAY_PORT": str(port),
        "IOC_GATEWAY_TOKEN_SECRET": SECRET,
        "IOC_WORKER_METRICS_PORT": "0",
        "IOC_WRITER_METRICS_PORT": "0",
        "IOC_WRITER_LINGER": "0.2",
        "IOC_WRITER_MAINTENANCE_INTERVAL": "1",
    }
    up = IocProcess(["up", "--no-simulate", "--only", "worker,writer,gateway"], env,
                    platform_dir / "up.log")  # fmt: skip
    try:
        await asyncio.to_thread(up.wait_for_output, "ready:", 180)
        bootstrap = kafka_bootstrap
        events = _events(datetime.now(ZONE))
        async with Publisher(bootstrap_servers=bootstrap, catalog=load_catalog(catalog)) as pub:
            await pub.send_many(events)
        world = Platform(f"http://127.0.0.1:{port}", env, bootstrap, platform_dir, events)

        def fired(records: list[Any]) -> bool:
            for record in records:
                value = json.loads(record.value)
                if value["rule"] == "level_high" and value["transition"] == "fire":
                    world.fingerprint = value["fingerprint"]
                    return True
            return False

        await read_records(
            bootstrap,
            "ioc.alerts",
            keep=lambda r: json.loads(r.value)["kind"] == "alert",  # others put poison there
            until=fired,
            timeout=120,
        )
        yield world
    finally:
        up.close()


async def _axe(page: Any) -> list[dict[str, Any]]:
    """Serious and critical accessibility violations axe-core finds on the page."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def _shot(page: Any, tmp: Path, name: str, *, full_page: bool = False) -> None:
    """A screenshot kept with the test's files (and in docs/screenshots/ when asked to)."""
    await page.screenshot(path=str(tmp / name), full_page=full_page)
    if os.environ.get("IOC_TEST_SCREENSHOTS_TO_DOCS") and SHOTS.is_dir():
        await page.screenshot(path=str(SHOTS / name), full_page=full_page)


@pytest.mark.asyncio(loop_scope="module")
async def test_workspace_draws_the_team_kpis_from_real_data_and_exports_them(
    platform: Platform,
) -> None:
    """1920×1080: the team's KPI with 24 h of points, the target, the communes on the map
    (the flooded one missed), a drill-down to events, 7 days from the rollups, CSV and XLSX."""
    from playwright.async_api import async_playwright, expect

    token = platform.token(role="leader", name=RECIPIENT, sectors=("water",), team="noi-chinh")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1920, "height": 1080},
                                          accept_downloads=True)  # fmt: skip
            await page.goto(f"{platform.url}/analysis?token={token}")
            row = page.locator('tr[data-kpi="water.level_avg"]')
            await expect(row).to_be_visible(timeout=30_000)
            # The writer stores points as the worker emits them: reload until the whole day is in.
            points = 0
            for _attempt in range(30):
                points = await page.evaluate(
                    "() => window.__analysis.detail ? window.__analysis.detail.series.length : 0"
                )
                if points >= 20:
                    break
                await asyncio.sleep(2)
                await page.reload()
                await expect(row).to_be_visible(timeout=30_000)
            assert points >= 20, points
            await expect(page.locator("#chart canvas").first).to_be_visible()
            detail = await page.evaluate("() => window.__analysis.detail")
            assert detail["target"] == {"value": 75.0, "direction": "at_most"}
            assert detail["met"] is True  # the day's average is far under 75 cm
            assert 0.5 < detail["on_target_share"] < 1.0  # the flooded hours missed
            tiles = page.locator("#map .tile")
            await expect(tiles).to_have_count(4)
            await expect(page.locator(f'#map .tile[data-area="{FLOODED}"]')).to_have_attribute(
                "data-status", "missed"
            )
            await expect(page.locator('#map .tile[data-area="xa-tan-lap"]')).to_have_attribute(
                "data-status", "met"
            )
            await expect(page.locator("#area-col")).to_have_text("Xã, phường")
            # A point of the chart opens its events (with their Kafka positions).
            box = await page.locator("#chart .u-over").bounding_box()
            assert box is not None
            await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            await page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            await expect(page.locator("#events")).to_be_visible(timeout=15_000)
            assert await page.locator("#event-rows tr").count() >= 4
            await _shot(page, platform.tmp, "analysis-workspace.png")
            assert await _axe(page) == []
            # Exports of what is shown.
            async with page.expect_download() as download_info:
                await page.click("#export-xlsx")
            download = await download_info.value
            saved = await download.path()
            book = load_workbook(io.BytesIO(await asyncio.to_thread(Path(saved).read_bytes)))
            kpi_row = next(
                r for r in book["Chỉ tiêu"].iter_rows(values_only=True) if r[2] == "water.level_avg"
            )
            assert kpi_row[4] == pytest.approx(detail["value"])
            assert {
                r[1] for r in book["Theo địa bàn"].iter_rows(min_row=2, values_only=True)
            } == set(AREAS)
            async with page.expect_download() as download_info:
                await page.click("#export-csv")
            saved = await (await download_info.value).path()
            csv_text = await asyncio.to_thread(Path(saved).read_text, "utf-8-sig")
            assert "Mực nước trung bình" in csv_text and "water.level_avg" in csv_text
            # Seven days come from the hourly rollups the writer keeps.
            await page.click('button[data-range="7d"]')
            await page.wait_for_function(
                "() => window.__analysis.detail && window.__analysis.detail.bucket === '1h'"
                " && window.__analysis.summary.range === '7d'"
                " && window.__analysis.detail.series.length >= 20",
                timeout=60_000,
                polling=1000,
            )
            # English is one click away.
            await page.click("#lang")
            await expect(page.locator("h1")).to_have_text("Data analysis workspace")
        finally:
            await browser.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_phone_page_action_reaches_the_wall_and_bad_links_are_refused(
    platform: Platform,
) -> None:
    """360×640: the alert behind a signed link, its KPI and timeline; "Tiếp nhận" is on the
    wall's ticker under the recipient's name and the wall's map marks the commune; an expired
    and an altered link get a Vietnamese page and cannot act."""
    from playwright.async_api import async_playwright, expect

    wall_token = platform.token(role="wall", name="Màn hình", sectors=None)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            wall = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await wall.goto(f"{platform.url}/?token={wall_token}")
            alert = wall.locator(f'.ticker .alert[data-fingerprint="{platform.fingerprint}"]')
            await expect(alert).to_be_visible(timeout=30_000)
            area = wall.locator(f'#map .area[data-area="{FLOODED}"]')
            await expect(area).to_have_attribute("data-severity", "critical")
            await expect(wall.locator("#map .area")).to_have_count(4)

            phone_ctx = await browser.new_context(
                viewport={"width": 360, "height": 640}, is_mobile=True, has_touch=True,
                device_scale_factor=2,
            )  # fmt: skip
            phone = await phone_ctx.new_page()
            response = await phone.goto(f"{platform.url}/m/{platform.link()}")
            assert response is not None and response.status == 200
            await expect(phone.locator("#message")).to_contain_text("Mực nước tại Xã Thuận Lợi")
            await expect(phone.locator("#who")).to_contain_text(RECIPIENT)
            await expect(phone.locator("#kpi-chart svg")).to_be_visible(timeout=15_000)
            await expect(phone.locator("#timeline li").first).to_be_visible()
            await expect(phone.locator("#act-ack")).to_be_enabled(timeout=15_000)
            width = await phone.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 360  # nothing wider than the phone
            assert await _axe(phone) == []
            await phone.click("#act-ack")
            await expect(phone.locator("#notice")).to_have_text(
                "Đã tiếp nhận cảnh báo", timeout=15_000
            )
            await expect(phone.locator("#state")).to_contain_text(RECIPIENT, timeout=30_000)
            await _shot(phone, platform.tmp, "phone-page.png", full_page=True)
            await expect(alert).to_have_attribute("data-state", "acknowledged", timeout=30_000)
            await expect(alert.locator(".state")).to_contain_text(f"bởi {RECIPIENT}")
            await _shot(wall, platform.tmp, "wall-map.png")
            # A note goes into the alert's timeline the same way.
            await phone.fill("#note-input", "Đã yêu cầu xã sơ tán hộ dân ven suối")
            await phone.click("#act-note")
            await expect(phone.locator("#timeline .note").first).to_contain_text(
                "sơ tán", timeout=30_000
            )

            expired = await phone.goto(
                f"{platform.url}/m/{platform.link(now=time.time() - 7200, ttl=60)}"
            )
            assert expired is not None and expired.status == 410
            await expect(phone.locator("h1")).to_have_text("Đường dẫn đã hết hạn")
            assert await phone.locator("#act-ack").count() == 0
            await _shot(phone, platform.tmp, "phone-link-expired.png")
            assert await _axe(phone) == []
            good = platform.link()
            altered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
            refused = await phone.goto(f"{platform.url}/m/{altered}")
            assert refused is not None and refused.status == 403
            await expect(phone.locator("h1")).to_have_text("Đường dẫn không hợp lệ")
        finally:
            await browser.close()

    # The socket refuses an expired link too: no action can come from it.
    from websockets.asyncio.client import connect

    stale = platform.link(now=time.time() - 7200, ttl=60)
    async with connect(f"{platform.url.replace('http', 'ws')}/ws?link={stale}") as socket:
        with pytest.raises(Exception, match="4401"):
            await asyncio.wait_for(socket.recv(), 10)


@pytest.mark.asyncio(loop_scope="module")
async def test_ioc_report_from_the_running_platform_has_the_day_s_figures(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ioc report` for yesterday: the KPI is the mean of the hours' levels that were published
    (every commune sends as often, so an hour's figure is the mean of its events), and the
    share on target the share of those hours at or under 75 cm."""
    import argparse

    from foundation.settings import load_settings
    from ioc.commands.report import _cmd_report

    yesterday = datetime.now(ZONE).date() - timedelta(days=1)
    hours: dict[int, list[float]] = {}
    for event in platform.events:
        moment = datetime.fromisoformat(event["occurred_at"]).astimezone(ZONE)
        if moment.date() == yesterday:
            hours.setdefault(moment.hour, []).append(event["value"])
    means = [sum(v) / len(v) for v in hours.values()]
    expected = sum(means) / len(means)
    share = sum(1 for m in means if m <= 75) / len(means)
    out = platform.tmp / "report.xlsx"
    # The command in this process (a subprocess costs seconds of imports), with the
    # platform's settings.
    args = argparse.Namespace(team="noi-chinh", date=yesterday.isoformat(), weekly=False,
                              format="xlsx", out=str(out))  # fmt: skip
    settings = load_settings(
        database_url=platform.env["DATABASE_URL"], catalog=Path(platform.env["IOC_CATALOG"])
    )
    assert await _cmd_report(args, settings) == 0
    book = load_workbook(out)
    row = next(r for r in book["Chỉ tiêu"].iter_rows(values_only=True) if r[2] == "water.level_avg")
    assert row[4] == pytest.approx(expected)
    assert row[7] == ("Đạt" if expected <= 75 else "Chưa đạt")
    assert row[8] == pytest.approx(share)
    assert "Báo cáo ngày" in capsys.readouterr().err
