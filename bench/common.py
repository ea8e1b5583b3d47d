"""Shared helpers of the benchmark scripts: simulator events, timing, the machine line."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

from foundation.contract.catalog import Catalog
from producers.simulators import Simulation

__all__ = ["best_of", "machine", "simulated_events"]


def simulated_events(
    catalog: Catalog, count: int, *, seed: int = 1, rate: float = 1000.0
) -> list[bytes]:
    """`count` valid events of all sectors from the simulators, encoded as one JSON object each."""
    start = time.time() - count / rate - 60
    simulation = Simulation(catalog, rate=rate, seed=seed, start=start)
    out: list[bytes] = []
    for emission in simulation.emissions():
        if emission.defect is None and emission.raw is None:
            out.append(emission.line())
        if len(out) >= count:
            break
    return out


def best_of(rounds: int, work: Callable[[], object]) -> float:
    """The shortest wall time of `rounds` runs of work (seconds)."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
