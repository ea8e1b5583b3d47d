"""The wall page in headless Debian Chromium against a real gateway on the real broker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from consumers.gateway.wall_config import wall_config
from foundation.contract.catalog import Catalog
from tests.plugins.gateway import Producer, alert_transition, kpi_point, make_token

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 60_000  # generous: a loaded 2-core machine
DISTRICTS = ("dong-xoai", "binh-long", "phuoc-long")

# Plausible values per KPI for the screenshots; anything else gets 42.
VALUES = {
    "er_admissions_per_hour": 9,
    "bed_occupancy_pct": 87.5,
    "er_wait_p95": 24.0,
    "vehicles_per_hour": 1450,
    "accidents_per_day": 1,
    "aqi_avg": 68,
    "pm25_24h": 31.5,
    "dissolved_oxygen_min": 5.2,
    "attendance_pct": 96.1,
    "admission_applications_per_hour": 37,
    "online_share_pct": 72.4,
    "on_time_share_pct": 98.6,
    "calls_113_per_hour": 6,
    "incidents_per_day": 4,
    "response_p95": 12.0,
    "visitors_today": 820,
    "room_occupancy_pct": 64.0,
    "visitor_rating_avg": 4.3,
    "revenue_today": 12500,
    "disbursement_progress_pct": 81.0,
    "payment_time_p95": 6.5,
    "fire_danger_max": 3,
    "disease_outbreaks_per_day": 0,
    "feedback_per_hour": 14,
    "feedback_on_time_pct": 93.0,
    "attacks_per_min": 18.5,
    "security_incidents_per_day": 2,
    "website_availability_pct": 99.7,
}


# A count KPI with no event yet (no point): "–" until its sector is seen, then 0.
QUIET = ("infosec", "security_incidents_per_day")


def tile_points(catalog: Catalog) -> list[dict[str, Any]]:
    """For every tile KPI but QUIET, an hour of revisions (the sparkline) ending in a current
    value."""
    now = time.time()
    points = []
    for sector in wall_config(catalog)["sectors"]:
        for kpi in sector["kpis"]:
            if (sector["id"], kpi["id"]) == QUIET:
                continue
            groups = DISTRICTS if kpi["grouped"] else ("*",)
            size = kpi["window"]
            additive = kpi["aggregation"] in ("count", "sum")
            base = VALUES.get(kpi["id"], 42) / (len(groups) if additive else 1)
            for group_index, group in enumerate(groups):
                for step in range(12):  # every 5 minutes over the last hour
                    emitted = now - 3300 + step * 300
                    wave = 1 + 0.08 * ((step * 7 + group_index * 3) % 5 - 2) / 2
                    value = round(base * wave if step < 11 else base, 2)
                    points.append(
                        kpi_point(
                            sector["id"],
                            kpi["id"],
                            group,
                            value=value,
                            size=size,
                            window_start=emitted - emitted % size,
                            revision=step,
                            emitted_at=emitted,
                            final=kpi["id"] == "accidents_per_day" or step < 11,
                        )
                    )
    return points


def freshness(source: str, sector: str, *, stale_for: float) -> dict[str, Any]:
    now = time.time()
    return {
        "kind": "freshness",
        "source": source,
        "sector": sector,
        "state": "stale",
        "last_seen": now - stale_for,
        "changed_at": now - stale_for + 180,
        "stale_after": 180.0,
    }


@pytest.fixture
def chromium_path() -> str:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium)"
        )
    return str(CHROMIUM)


async def test_wall_shows_tiles_alerts_and_the_connection_banner(
    chromium_path: str,
    start_gateway,
    producer: Producer,
    wall_catalog: Catalog,
    tmp_path: Path,
):
    """11 live tiles, an alert that fires, a banner while the gateway is down, and back."""
    from playwright.async_api import async_playwright, expect

    await producer.kpi(*tile_points(wall_catalog))
    await producer.send(
        producer.topics.kpi,
        [
            (
                "freshness|kiem-lam-chay-rung",
                freshness("kiem-lam-chay-rung", "agriculture", stale_for=720),
            )
        ],
    )
    gateway = await start_gateway(heartbeat=2.0)
    url = f"{gateway.url}?token={make_token(role='wall', name='Màn hình chính')}"
    shots: list[Path] = []

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await page.goto(url)
            tiles = page.locator(".tile:not(.sources)")
            await expect(tiles).to_have_count(11, timeout=WAIT_MS)
            await page.wait_for_function(
                "document.querySelectorAll('.tile .kpi[data-value]').length >= 22",
                timeout=WAIT_MS,
            )
            for index in range(11):
                await expect(tiles.nth(index).locator(".kpi[data-value]").first).to_be_visible()
            health = page.locator('.tile[data-sector="health"]')
            await expect(health).to_contain_text("Y tế")
            await expect(
                health.locator('.kpi[data-kpi="bed_occupancy_pct"] .kpi-value')
            ).to_contain_text("87,5")
            await expect(health.locator(".spark path.line").first).to_be_attached()
            await expect(page.locator('.tile[data-sector="agriculture"]')).to_contain_text(
                "dữ liệu cũ 12 phút"
            )
            await expect(page.locator("#province")).to_have_text("Bình Phước")
            await expect(page.locator("#who")).to_have_text("Màn hình chính · màn hình tường")
            # No value is cut (a long one, 12.500 triệu đồng, is set smaller instead).
            clipped = await page.evaluate(
                """() => [...document.querySelectorAll('.kpi-value')]
                     .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"""
            )
            assert clipped == [], clipped
            # A count with no point: unknown while nothing says the sector's data flows…
            quiet = page.locator(f'.tile[data-sector="{QUIET[0]}"] .kpi[data-kpi="{QUIET[1]}"]')
            await expect(quiet.locator(".kpi-value")).to_have_text("–")
            now = time.time()
            seen = {
                "kind": "sector_seen",
                "sector": QUIET[0],
                "last_seen": now - 30,
                "emitted_at": now,
            }
            await producer.send(producer.topics.kpi, [(f"sector|{QUIET[0]}", seen)])
            # … then 0 (no event in its window), said as such.
            await expect(quiet).to_have_attribute("data-value", "0", timeout=WAIT_MS)
            await expect(quiet).to_have_attribute("data-quiet", "true")
            await expect(quiet.locator(".kpi-meta")).to_contain_text("chưa ghi nhận sự kiện")
            await expect(page.locator(".tile.sources")).to_contain_text("Chi cục Kiểm lâm")
            shots.append(tmp_path / "wall-1-live.png")
            await page.screenshot(path=str(shots[-1]))

            # A firing alert appears in the ticker, on top, and the tile says so.
            alert = alert_transition("fp-wall-critical", severity="critical", sector="health")
            await producer.alerts(
                alert_transition(
                    "fp-wall-warning",
                    severity="warning",
                    sector="traffic",
                    message_vi="Lưu lượng xe tăng 60% trong 15 phút",
                    message_en="Traffic up 60% in 15 minutes",
                ),
                alert,
            )
            first = page.locator(".ticker .alert").first
            await expect(first).to_have_attribute(
                "data-fingerprint", "fp-wall-critical", timeout=WAIT_MS
            )
            await expect(first).to_contain_text("nghiêm trọng", ignore_case=True)
            await expect(first).to_contain_text("Công suất giường bệnh 97% vượt ngưỡng 95%")
            await expect(health).to_have_attribute("data-alerts", "1")
            shots.append(tmp_path / "wall-2-alert.png")
            await page.screenshot(path=str(shots[-1]))

            # The gateway stops: the banner says since when; it comes back: the banner goes.
            banner = page.locator("#banner")
            await expect(banner).to_be_hidden()
            port = gateway.port
            await gateway.stop()
            await expect(banner).to_be_visible(timeout=WAIT_MS)
            await expect(banner).to_contain_text("Mất kết nối từ")
            await expect(
                health.locator('.kpi[data-kpi="bed_occupancy_pct"] .kpi-value')
            ).to_contain_text("87,5")
            shots.append(tmp_path / "wall-3-disconnected.png")
            await page.screenshot(path=str(shots[-1]))

            await start_gateway(port=port, heartbeat=2.0)
            await expect(banner).to_be_hidden(timeout=WAIT_MS)
            await expect(page.locator(".ticker .alert").first).to_have_attribute(
                "data-fingerprint", "fp-wall-critical", timeout=WAIT_MS
            )
            await expect(page.locator("#conn")).to_contain_text("Đang kết nối trực tiếp")

            # English on demand.
            await page.click("#lang")
            await expect(page.locator("#alerts-title")).to_contain_text("Open alerts")
            await expect(health).to_contain_text("Health")
            await expect(page.locator("#who")).to_have_text("Màn hình chính · wall screen")
            shots.append(tmp_path / "wall-4-english.png")
            await page.screenshot(path=str(shots[-1]))

            # The same page on a 4K screen.
            big = await browser.new_page(viewport={"width": 3840, "height": 2160})
            await big.goto(url)
            await big.wait_for_function(
                "document.querySelectorAll('.tile .kpi[data-value]').length >= 22",
                timeout=WAIT_MS,
            )
            shots.append(tmp_path / "wall-5-4k.png")
            await big.screenshot(path=str(shots[-1]))
        finally:
            await browser.close()
    for shot in shots:
        assert shot.stat().st_size > 10_000
    print("screenshots:", *shots)
