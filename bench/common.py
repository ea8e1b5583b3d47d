"""Shared helpers of the benchmark scripts: simulator events, timing, the machine line."""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from foundation.contract.catalog import Catalog
from ioc.embedded import EmbeddedPostgres
from producers.simulators import Simulation

__all__ = ["add_shared_buffers", "best_of", "machine", "quiet_postgres", "simulated_events"]


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


def add_shared_buffers(parser: argparse.ArgumentParser) -> None:
    """`--shared-buffers` of the storage benches' PostgreSQL."""
    parser.add_argument(
        "--shared-buffers",
        default="128MB",
        help="the server's shared_buffers (128MB: PostgreSQL's default; ioc up: 16MiB)",
    )


def quiet_postgres(root: Path, shared_buffers: str) -> EmbeddedPostgres:
    """An embedded PostgreSQL with no TimescaleDB background jobs: nothing else runs while
    the storage benches time their work."""
    return EmbeddedPostgres(
        state_dir=root,
        server_settings={
            "timescaledb.max_background_workers": "0",
            "shared_buffers": shared_buffers,
        },
    )
