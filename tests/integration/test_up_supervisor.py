"""`ioc up` supervises the components: a crashed child is restarted, SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.plugins.services import CliResult, IocProcess, wait_until

pytestmark = pytest.mark.integration

StartIoc = Callable[..., IocProcess]


def _children(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        raw = json.loads((state_dir / "children.json").read_text())
    except (OSError, ValueError):
        return {}
    return {row["name"]: row for row in raw["children"]}


def test_a_killed_component_is_restarted_and_sigterm_stops_everything(
    ioc_process: StartIoc, ioc_cli: Callable[..., CliResult], state_dir: Path
) -> None:
    """SIGKILL the worker: it comes back; SIGTERM `ioc up`: no child is left running."""
    env = {
        "IOC_STATE_DIR": str(state_dir),
        "IOC_WORKER_METRICS_PORT": "0",
        "IOC_WORKER_SESSION_TIMEOUT": "3",
    }
    up = ioc_process("up", "--only", "worker,sim-health,sim-traffic", "--rate", "110", env=env)
    up.wait_for_output("ready:", timeout=90)
    assert "2 in one process: sim-health, sim-traffic" in up.output(), up.output()
    assert set(_children(state_dir)) == {"worker", "simulators"}  # one process for both

    def simulating() -> bool:
        rows = json.loads(ioc_cli("status", "--json", env=env).stdout)["components"]
        (simulators,) = [row for row in rows if row["name"] == "simulators"]
        return [(s["name"], s["state"], s["events"] > 0) for s in simulators["sectors"]] == [
            ("sim-health", "running", True), ("sim-traffic", "running", True)
        ]  # fmt: skip

    wait_until(simulating, 60, "both sectors' simulators to publish")
    status = ioc_cli("status", env=env)
    assert "sim-health" in status.stdout and "worker" in status.stdout, status.stdout
    first = _children(state_dir)["worker"]
    assert first["state"] == "running" and first["pid"]
    os.kill(first["pid"], signal.SIGKILL)

    def restarted() -> bool:
        row = _children(state_dir).get("worker", {})
        return row.get("restarts") == 1 and row.get("state") == "running"

    wait_until(restarted, 60, "the worker to be restarted")
    second = _children(state_dir)["worker"]
    assert second["pid"] != first["pid"] and second["last_exit"] == -signal.SIGKILL
    pids = [row["pid"] for row in _children(state_dir).values()]
    processes = [psutil.Process(pid) for pid in pids]

    up.proc.send_signal(signal.SIGTERM)
    # The contract is "within 10 s"; the wait is longer only so a loaded CI box is not flaky.
    assert up.proc.wait(30) == 0, up.output()
    assert not [p.pid for p in processes if p.is_running() and p.status() != "zombie"]
    assert all(row["state"] == "stopped" for row in _children(state_dir).values())
    assert (state_dir / "logs" / "worker.log.1").exists()  # the crashed run's log is kept
