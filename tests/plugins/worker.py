"""Fixtures for stream-worker tests: a short-window catalog, and real `ioc worker` processes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from foundation.contract.catalog import Catalog, load_catalog
from tests.plugins.services import _cli_env, run_sync

SHORT_CATALOG = """\
version: 1
province: {{id: test, name_vi: Tỉnh thử, name_en: Test province}}
stale_factor: 3
escalation:
  min_severity: critical
  levels:
    - {{level: 0, role: duty_officer, name_vi: Trực ban, name_en: Duty officer}}
    - {{level: 1, role: sector_vice_chairman, after: 3s, name_vi: Phó Chủ tịch,
       name_en: Vice-Chairman}}
    - {{level: 2, role: chairman, after: 600s, name_vi: Chủ tịch, name_en: Chairman}}
districts:
  - {{code: dong-xoai, name_vi: Đồng Xoài, name_en: Dong Xoai}}
  - {{code: binh-long, name_vi: Bình Long, name_en: Binh Long}}
sectors:
  - id: {sector}
    name_vi: Thử nghiệm
    name_en: Test
    sources:
      - {{id: {sector}-a, name_vi: Nguồn A, name_en: Source A, cadence: 1s}}
      - {{id: {sector}-b, name_vi: Nguồn B, name_en: Source B, cadence: 1s}}
      - {{id: {sector}-c, name_vi: Nguồn C, name_en: Source C, cadence: 1h}}
      - {{id: {sector}-d, name_vi: Nguồn D, name_en: Source D, cadence: 1h}}
    event_types:
      - {{id: reading, name_vi: Số đo, name_en: Reading, unit: u}}
    kpis:
      - {{id: n_short, name_vi: Số lượng, name_en: Count, event_type: reading, aggregation: count,
         unit: u, window: {{size: 5s, grace: 2s}}}}
      - {{id: n_long, name_vi: Số lượng, name_en: Count, event_type: reading, aggregation: count,
         unit: u, window: {{size: 60s, grace: 10m}}}}
      - {{id: total_by_district, name_vi: Tổng, name_en: Total, event_type: reading,
         aggregation: sum, unit: u, window: {{size: 60s, grace: 10m}}, group_by: [district]}}
      - {{id: mean_hopping, name_vi: Trung bình, name_en: Mean, event_type: reading,
         aggregation: avg, unit: u, window: {{size: 120s, hop: 60s, grace: 10m}}}}
      - {{id: p95_long, name_vi: Phân vị 95, name_en: 95th percentile, event_type: reading,
         aggregation: p95, unit: u, window: {{size: 60s, grace: 10m}}}}
    alerts:
      - {{id: burst_high, kind: threshold, kpi: n_short, op: above, raise: 30, clear: 10,
         severity: critical, message_vi: "Số bản ghi {{value:.0f}} vượt ngưỡng {{raise:.0f}}",
         message_en: "Count {{value:.0f}} above {{raise:.0f}}"}}
"""


@dataclass(frozen=True)
class ShortCatalog:
    """A one-sector catalog with short windows; its sector id is unique to the test."""

    path: Path
    catalog: Catalog
    sector: str

    @property
    def topic(self) -> str:
        return f"ioc.events.{self.sector}"


@pytest.fixture
def short_catalog(tmp_path: Path, kafka_bootstrap: str, contract_topics: list[str]) -> ShortCatalog:
    """Write the catalog and create its sector topic (4 partitions) on the session broker."""
    from ioc.topics import create_topics

    sector = f"t{uuid.uuid4().hex[:8]}"
    path = tmp_path / "catalog.yaml"
    path.write_text(SHORT_CATALOG.format(sector=sector), encoding="utf-8")
    catalog = load_catalog(path)
    run_sync(
        create_topics(
            kafka_bootstrap,
            [f"ioc.events.{sector}"],
            partitions=4,
            replication_factor=1,
            timeout=15,
        )
    )
    return ShortCatalog(path, catalog, sector)


class WorkerProcess:
    """A real `ioc worker` subprocess and its /metrics."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "worker"],
            env=_cli_env(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.metrics_url = ""
        self.group = env["IOC_WORKER_GROUP"]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float:
        """Sum of a metric's samples (0 when absent)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:  # noqa: S310 - loopback
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /metrics answers and the worker owns partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}):\n{self.output()[-3000:]}"
                )
            found = re.search(r"worker metrics: (http://\S+/metrics)", self.output())
            if found:
                self.metrics_url = found.group(1)
                try:
                    if self.metric('ioc_worker_owned_partitions{stage="events"}') > 0:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"worker not ready within {timeout} s:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def stream_workers(
    kafka_bootstrap: str, fresh_database: str, short_catalog: ShortCatalog, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start an `ioc worker` of this test's own group on the short catalog.

    Keyword arguments override its environment (IOC_WORKER_CHECKPOINT_INTERVAL="60", …).
    """
    group = f"g-{uuid.uuid4().hex[:8]}"
    started: list[WorkerProcess] = []
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": fresh_database,
        "IOC_CATALOG": str(short_catalog.path),
        "IOC_WORKER_GROUP": group,
        "IOC_WORKER_METRICS_PORT": "0",
        "IOC_WORKER_SESSION_TIMEOUT": "4",
        "IOC_WORKER_CHECKPOINT_INTERVAL": "0.5",
        "IOC_STATE_DIR": str(tmp_path / "state"),
    }

    def start(**overrides: str) -> WorkerProcess:
        worker = WorkerProcess({**env, **overrides}, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()
        worker._log.close()
