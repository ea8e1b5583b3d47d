"""The wall against the whole running platform: `ioc up` (every component, 11 simulators, a
spike scenario) and headless Debian Chromium. The catalog is Bình Phước's with every window
shortened to seconds, so that live values and a spike alert come within a test's patience."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from foundation.contract.catalog import default_catalog_path
from ioc.embedded._process import find_free_port
from tests.plugins.services import CliResult, IocProcess, read_records

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
WINDOW = "15s"


def _fast_catalog(path: Path) -> None:
    """Bình Phước's catalog with 15 s windows, rate rules over 15 s, `for` of rate rules 0."""
    catalog: dict[str, Any] = yaml.safe_load(default_catalog_path().read_text(encoding="utf-8"))
    for sector in catalog["sectors"]:
        for kpi in sector["kpis"]:
            kpi["window"] = {"size": WINDOW, "grace": "2s"}
        for rule in sector.get("alerts", []):
            if rule["kind"] == "rate_of_change":
                rule["over"] = WINDOW
                rule.pop("for", None)
    path.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False), "utf-8")


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed")
async def test_the_wall_shows_live_tiles_and_a_spike_alert_from_the_running_platform(
    ioc_process: Callable[..., IocProcess],
    ioc_cli: Callable[..., CliResult],
    state_dir: Path,
    tmp_path: Path,
) -> None:
    """11 tiles fill with live values from the simulators; the health spike's alert appears."""
    from playwright.async_api import async_playwright, expect

    catalog = tmp_path / "fast.yaml"
    _fast_catalog(catalog)
    gateway_port = find_free_port()
    env = {
        "IOC_STATE_DIR": str(state_dir),
        "IOC_CATALOG": str(catalog),
        "IOC_GATEWAY_PORT": str(gateway_port),
        "IOC_INGEST_PORT": "0",
        "IOC_WORKER_METRICS_PORT": "0",
        "IOC_WRITER_METRICS_PORT": "0",
        "IOC_NOTIFIER_METRICS_PORT": "0",
        "IOC_REPORTER_METRICS_PORT": "0",
    }
    up = ioc_process(
        "up", "--rate", "300", "--scenario", "spike:health", "--scenario-after", "40", env=env
    )
    up.wait_for_output("ready:", timeout=180)
    started = time.time()
    found = re.search(r"^wall: (http\S+)", up.output(), re.M)
    assert found, up.output()
    bootstrap = json.loads((state_dir / "runtime.json").read_text())["bootstrap_servers"]

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await page.goto(found.group(1))
            tiles = page.locator(".tile:not(.sources)")
            await expect(tiles).to_have_count(11, timeout=60_000)
            await page.wait_for_function(
                """() => [...document.querySelectorAll('.tile:not(.sources)')]
                     .every(t => t.querySelector('.kpi[data-value]'))""",
                timeout=120_000,
                polling=500,
            )
            await page.screenshot(path=str(tmp_path / "wall-live.png"))
            status = ioc_cli("status", env=env)
            assert "wall screens 1 live" in status.stdout, status.stdout
            # From another shell, without IOC_GATEWAY_PORT: the running gateway's address.
            elsewhere = {k: v for k, v in env.items() if k != "IOC_GATEWAY_PORT"}
            status = ioc_cli("status", env=elsewhere)
            assert "wall screens 1 live" in status.stdout, status.stdout
            url = ioc_cli("tokens", "create", "--role", "wall", "--name", "W", "--url",
                          env=elsewhere)  # fmt: skip
            assert url.stdout.startswith(f"http://127.0.0.1:{gateway_port}/?token="), url

            def surge(records: list[Any]) -> bool:
                # `refire` too: a district that noise fired before the spike re-fires in it
                # (with the morning's low rates every district may have fired in 40 s).
                return any(
                    (v := json.loads(r.value))["rule"] == "er_admissions_surge"
                    and v["transition"] in ("fire", "refire")
                    and v["at"] >= started + 40
                    for r in records
                )

            # A rate alert may resolve one window later: look at the wall while it is open,
            # then check on ioc.alerts that the spike (not noise before it) fired the rule.
            ticker = page.locator(".ticker .alert", has_text="Ca cấp cứu")
            await expect(ticker.first).to_be_visible(timeout=180_000)
            await page.screenshot(path=str(tmp_path / "wall-spike-alert.png"))
            await read_records(bootstrap, "ioc.alerts", until=surge, timeout=180)
        finally:
            await browser.close()
