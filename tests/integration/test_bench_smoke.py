"""The storage benchmarks still run against the current schema (tiny sizes; no figures are
judged here: benchmarks print figures, tests never time anything)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True, text=True, timeout=240, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_writer_bench_runs() -> None:
    out = run("writer.py", "--events", "2000", "--batch", "500", "--rounds", "1")
    assert "ratio: writer/raw-copy = " in out and "rounds: 1 (medians printed)" in out


def test_history_bench_runs() -> None:
    out = run("history.py", "--days", "3", "--series", "1", "--rounds", "1")
    assert "history 1h buckets, 3 days (plain-postgresql)" in out
