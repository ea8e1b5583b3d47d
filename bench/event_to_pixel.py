"""Event to pixel: from publishing an event to the wall page in Chromium showing its value.

    python bench/event_to_pixel.py [--samples 200] [--load 2000]

Runs the whole platform (`ioc up --no-simulate` in a temp state dir: embedded broker and
PostgreSQL, worker, writer, notifier, gateway, ingest API), puts a background load of
`--load` events/s on every sector but finance (`ioc simulate`), opens the wall in Debian's
headless Chromium at 1920×1080, and publishes probe events of finance's headline KPI
`disbursement_progress_pct` (aggregation `last`, no group-by: the tile shows the value of the
newest event) with known values, one at a time at random intervals. A MutationObserver in the
page notes when each value first appears in the tile's DOM (`data-value`); the latency of a
probe is that moment minus the moment before it was published (one clock: same machine).
Prints p50/p99 over the samples with the machine load beside them. Goal (issue 15): p99 ≤ 1.5 s,
which includes the worker's per-series coalescing hold (at most one provisional point per
series a second).

Where the time goes: a WebSocket client of the bench subscribes to the finance channel as the
wall does and notes when each probe's point arrives; the point carries the time the worker took
the event in (`newest`) and computed the point (`emitted_at`). Each probe's latency splits
into four hops, printed with their percentiles and how often each was the largest in the
slowest tenth of the probes:
  into the worker   publish → broker → the worker's stage 1 takes the event in
  worker            stage 1 → partials topic → stage 2 computes the point (coalescing included)
  to the socket     the worker's producer → broker → gateway → the bench's WebSocket
  browser           the bench's WebSocket got it → the tile's DOM shows it (Chromium gets the
                    same frame at about the same time; this is its parsing and rendering)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine
from foundation.contract.catalog import load_catalog
from ioc.embedded import find_free_port
from producers.sdk import Publisher

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SECTOR, KPI, EVENT_TYPE = "finance", "disbursement_progress_pct", "disbursement_progress"

# Notes the first time each value shows in the probe KPI's tile (epoch milliseconds).
OBSERVER = """
(kpi) => {
  window.__seen = new Map();
  const note = () => {
    const el = document.querySelector(`.kpi[data-kpi="${kpi}"]`);
    const value = el && el.getAttribute("data-value");
    if (value !== null && value !== undefined && !window.__seen.has(value)) {
      window.__seen.set(value, Date.now());
    }
  };
  new MutationObserver(note).observe(document.body,
    {subtree: true, childList: true, attributes: true, attributeFilter: ["data-value"]});
  note();
}
"""


HOPS = ("into the worker", "worker", "to the socket", "browser")


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe: its latency (s) and, when its point reached the bench's socket, its hops."""

    latency: float
    hops: tuple[float, float, float, float] | None


async def watch_socket(wall: str, seen: dict[float, tuple[float, float, float]]) -> None:
    """Per probe value, (received, newest, emitted_at) in epoch seconds, as the wall gets it."""
    from websockets.asyncio.client import connect

    parts = urllib.parse.urlsplit(wall)
    token = urllib.parse.parse_qs(parts.query)["token"][0]
    url = f"ws://{parts.netloc}/ws?token={urllib.parse.quote(token)}"
    async with connect(url, open_timeout=30, max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channels": [f"kpi:{SECTOR}"]}))
        async for raw in ws:
            received = time.time()
            message = json.loads(raw)
            for item in message.get("items") or []:
                if item.get("kpi") != f"{SECTOR}.{KPI}" or not isinstance(item.get("value"), float):
                    continue
                seen.setdefault(
                    item["value"],
                    (received, float(item.get("newest") or 0), float(item.get("emitted_at") or 0)),
                )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    out = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "ioc.cli", *args], env=env, stdout=out, stderr=subprocess.STDOUT
    )


def wait_for_line(path: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        found = re.search(pattern, text, re.M)
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"`ioc` exited ({proc.returncode}):\n{text[-3000:]}")
        time.sleep(0.2)
    raise SystemExit(f"no line matching {pattern!r} within {timeout:g} s")


async def probe(
    publisher: Publisher,
    page: Any,
    socket_seen: dict[float, tuple[float, float, float]],
    source: str,
    n: int,
    value: float,
    timeout: float,
) -> Sample | None:
    """Publish one probe event; seconds until the tile shows its value (None: never)."""
    event = {
        "event_id": f"pixel-{os.getpid()}-{n}",
        "source": source,
        "sector": SECTOR,
        "type": EVENT_TYPE,
        "occurred_at": datetime.now(UTC).isoformat(),
        "value": value,
        "unit": "%",
    }
    sent_ms = time.time() * 1000
    report = await publisher.send(event)
    if not report.ok:
        raise SystemExit(f"probe refused: {report}")
    key = repr(value) if value != int(value) else str(int(value))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = await page.evaluate("(v) => window.__seen.get(v) ?? null", key)
        if seen is not None:
            shown, sent = float(seen) / 1000.0, sent_ms / 1000.0
            hops = None
            if value in socket_seen:
                received, newest, emitted = socket_seen.pop(value)
                if sent <= newest <= emitted:
                    hops = (newest - sent, emitted - newest, received - emitted, shown - received)
            return Sample(shown - sent, hops)
        await asyncio.sleep(0.02)
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--load", type=float, default=2000.0, help="background events/s")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of load first")
    parser.add_argument(
        "--sim-linger", type=float, default=0.25,
        help="each simulated source's linger (s): how many records the load is made of",
    )  # fmt: skip
    args = parser.parse_args()
    from playwright.async_api import async_playwright

    catalog = load_catalog()
    finance = next(s for s in catalog.sectors if s.id == SECTOR)
    source = finance.sources[0].id
    others = ",".join(s.id for s in catalog.sectors if s.id != SECTOR)
    root = Path(tempfile.mkdtemp(prefix="ioc-pixel-"))
    env = {
        **os.environ,
        "IOC_STATE_DIR": str(root / "state"),
        "IOC_GATEWAY_PORT": str(find_free_port()),  # `ioc up` prints the wall URL for it
        "IOC_INGEST_PORT": "0",
        "IOC_WORKER_METRICS_PORT": "0",
        "IOC_WRITER_METRICS_PORT": "0",
        "IOC_NOTIFIER_METRICS_PORT": "0",
        "IOC_REPORTER_METRICS_PORT": "0",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("DATABASE_URL", None)
    up = start(["up", "--no-simulate"], env, root / "up.log")
    load: subprocess.Popen[bytes] | None = None
    samples: list[Sample] = []
    missed = 0
    try:
        wall = wait_for_line(root / "up.log", r"^wall: (http\S+)", up, 240)
        runtime = json.loads((root / "state" / "runtime.json").read_text())
        bootstrap = runtime["bootstrap_servers"]
        log(f"platform up; background load {args.load:,.0f} ev/s on the other sectors")
        load = start(
            ["simulate", "--sectors", others, "--rate", f"{args.load:g}",
             "--linger", f"{args.sim_linger:g}"],
            env,
            root / "load.log",
        )  # fmt: skip
        await asyncio.sleep(args.warmup)
        load_before = os.getloadavg()
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await page.goto(wall)
            await page.wait_for_selector(f'.kpi[data-kpi="{KPI}"]', timeout=60_000)
            await page.evaluate(OBSERVER, KPI)
            socket_seen: dict[float, tuple[float, float, float]] = {}
            watcher = asyncio.create_task(watch_socket(wall, socket_seen))
            async with Publisher(
                bootstrap_servers=bootstrap, catalog=catalog, linger=0
            ) as publisher:
                rng = random.Random(15)
                for n in range(args.samples):
                    value = 1000.25 + n  # a value no other event of the series carries
                    sample = await probe(publisher, page, socket_seen, source, n, value, timeout=15)
                    if sample is None:
                        missed += 1
                    else:
                        samples.append(sample)
                    if n % 20 == 19 and samples:
                        so_far = statistics.median(s.latency for s in samples)
                        log(f"{n + 1}/{args.samples} probes, p50 so far {so_far * 1000:.0f} ms")
                    await asyncio.sleep(rng.uniform(0.2, 1.5))  # a random phase each time
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await browser.close()
        load_after = os.getloadavg()
    finally:
        for proc in (load, up):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    print(f"machine: {machine()}; embedded Tansu broker and PostgreSQL; whole platform")
    print(
        f"load average (1/5/15 min) before: {load_before[0]:.2f}/{load_before[1]:.2f}/"
        f"{load_before[2]:.2f}, after: {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}"
    )
    if not samples:
        raise SystemExit("no probe reached the wall")
    latencies = [s.latency for s in samples]
    print(
        f"background load: ioc simulate --rate {args.load:g} --linger {args.sim_linger:g} "
        f"(each of the 32 sources sends a record every {args.sim_linger:g} s, events batched)"
    )
    print(
        f"event to pixel under {args.load:,.0f} ev/s background load ({len(latencies)} probes, "
        f"{missed} never shown within 15 s): p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p90 {percentile(latencies, 0.90) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms (goal p99 <= 1500 ms)"
    )
    print_hops(samples)


def print_hops(samples: list[Sample]) -> None:
    """Each hop's percentiles, and which hop was the largest in the slowest tenth."""
    split = [s.hops for s in sorted(samples, key=lambda s: s.latency) if s.hops is not None]
    if not split:
        print("hops: no probe's point reached the bench's socket with its times")
        return
    print(f"hops of {len(split)} probes (ms):")
    for index, name in enumerate(HOPS):
        values = [hops[index] for hops in split]
        p50, p90, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.9, 0.99))
        print(
            f"  {name:<16} p50 {p50:6.0f}  p90 {p90:6.0f}  p99 {p99:6.0f}"
            f"  max {max(values) * 1000:6.0f}"
        )
    slowest = split[-max(1, len(split) // 10) :]  # ordered by latency
    largest = Counter(HOPS[max(range(4), key=lambda i: hops[i])] for hops in slowest)
    print(
        f"slowest {len(slowest)} probes (from {sum(slowest[0]) * 1000:.0f} ms), largest hop: "
        + ", ".join(f"{name} {largest[name]}" for name in HOPS)
    )


if __name__ == "__main__":
    asyncio.run(main())
