"""Time `make demo` on a fresh clone until the wall shows a live value in all 11 tiles.

python bench/demo_startup.py          # clones this repository into a temp dir, runs, stops

Prints: the install time (venv + pip), `ioc up` to the wall URL, `ioc up` to 11 live tiles
(Debian chromium driven by Playwright), and how long Ctrl-C took to stop everything.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
ALL_TILES_LIVE = """() => { const t = [...document.querySelectorAll('.tile:not(.sources)')];
  return t.length === 11 && t.every(x => x.querySelector('.kpi[data-value]')); }"""


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    root = Path(tempfile.mkdtemp(prefix="ioc-demo-"))
    clone = root / "ioc-stream"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    log_path = root / "demo.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        demo = subprocess.Popen(
            ["make", "demo"], cwd=clone, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        up_at, url = _wait_for_url(log_path, demo, started)
        print(f"install (venv + pip): {up_at - started:.1f} s", file=sys.stderr)
        print(f"`ioc up` to the wall URL: {time.monotonic() - up_at:.1f} s", file=sys.stderr)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(url)
            page.wait_for_function(ALL_TILES_LIVE, timeout=300_000, polling=250)
            live = time.monotonic()
            browser.close()
        print(
            f"`ioc up` to 11 live tiles: {live - up_at:.1f} s (from `make demo`: "
            f"{live - started:.1f} s)",
            file=sys.stderr,
        )
    finally:
        stopping = time.monotonic()
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(30)
            print(f"Ctrl-C to all stopped: {time.monotonic() - stopping:.1f} s", file=sys.stderr)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            print("did not stop within 30 s", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_url(
    log_path: Path, demo: subprocess.Popen[bytes], started: float
) -> tuple[float, str]:
    up_at: float | None = None
    while time.monotonic() - started < 600:
        text = log_path.read_text(errors="replace")
        if up_at is None and "ioc up" in text:
            up_at = time.monotonic()
        found = re.search(r"^wall: (http\S+)", text, re.M)
        if found and up_at is not None:
            return up_at, found.group(1)
        if demo.poll() is not None:
            raise SystemExit(f"make demo exited:\n{text[-3000:]}")
        time.sleep(0.2)
    raise SystemExit("no wall URL within 10 minutes")


if __name__ == "__main__":
    main()
