"""The simulators of `ioc up` in one process: a failing sector restarts alone, with backoff."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from foundation.contract.catalog import load_catalog
from ioc.simulators import SectorSimulators, read_status_file
from ioc.supervisor import Backoff
from producers.simulators import Emission, Simulation

CATALOG = load_catalog()


async def test_a_failing_sector_restarts_alone_and_the_others_go_on(tmp_path: Path) -> None:
    """health's simulation raises twice; traffic and environment publish all along."""
    sectors = ["health", "traffic", "environment"]
    starts: dict[str, list[float]] = {s: [] for s in sectors}
    published: list[Emission] = []

    def simulation(sector: str, start: float) -> Simulation:
        starts[sector].append(time.monotonic())
        if sector == "health" and len(starts[sector]) <= 2:
            raise RuntimeError("a bug in the health profile")
        return Simulation(CATALOG, sectors=[sector], rate=400.0, seed=7, start=start)

    health_published = asyncio.Event()

    async def publish(emission: Emission) -> None:
        published.append(emission)
        if emission.sector == "health":
            health_published.set()

    status = tmp_path / "simulators.json"
    simulators = SectorSimulators(
        sectors,
        simulation=simulation,
        publish=publish,
        status_file=status,
        backoff=Backoff(base=0.1, cap=1.0),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(simulators.run(stop))
    await asyncio.wait_for(health_published.wait(), 20)
    rows = read_status_file(status, pid=json.loads(status.read_text())["pid"])
    stop.set()
    await asyncio.wait_for(running, 10)

    health, traffic, environment = simulators.runs
    assert (health.restarts, traffic.restarts, environment.restarts) == (2, 0, 0)
    assert health.last_error == "RuntimeError: a bug in the health profile"
    # 0.1 s, then 0.2 s: the supervisor's doubling backoff
    gaps = [b - a for a, b in zip(starts["health"], starts["health"][1:], strict=False)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19
    assert {e.sector for e in published} == set(sectors)
    assert traffic.events > 0 and health.events > 0
    assert [r["name"] for r in rows] == ["sim-health", "sim-traffic", "sim-environment"]
    final = json.loads(status.read_text())["sectors"]
    assert {r["state"] for r in final} == {"stopped"}


async def test_each_sector_gets_its_own_simulation_and_events_keep_their_sector() -> None:
    """Every emission of a sector's task comes from that sector's simulation."""
    made: list[str] = []
    published: list[Emission] = []

    def simulation(sector: str, start: float) -> Simulation:
        made.append(sector)
        return Simulation(CATALOG, sectors=[sector], rate=300.0, seed=3, start=start - 2)

    both = asyncio.Event()

    async def publish(emission: Emission) -> None:
        published.append(emission)
        if len({e.sector for e in published}) == 2:
            both.set()

    simulators = SectorSimulators(["finance", "tourism"], simulation=simulation, publish=publish)
    stop = asyncio.Event()
    running = asyncio.create_task(simulators.run(stop))
    await asyncio.wait_for(both.wait(), 10)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert sorted(made) == ["finance", "tourism"]
    finance, tourism = simulators.runs
    assert finance.events == sum(e.sector == "finance" for e in published) > 0
    assert tourism.events == sum(e.sector == "tourism" for e in published) > 0
    assert read_status_file(Path("/nonexistent"), pid=1) == []
