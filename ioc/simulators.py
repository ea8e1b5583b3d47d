"""The sector simulators of `ioc up` in one process, each sector restarted alone when it fails.

Each sector's simulator is its own task with its own seed, share of the rate and scenarios
(what one `ioc simulate --sectors <sector>` process per sector did before, at ~55 MB of memory
each); they share one Kafka producer. A sector whose simulation raises is restarted after the
supervisor's backoff (1 s, 2 s, 4 s … 30 s; a run of a minute resets it) with a fresh
simulation, as the supervisor restarted its process; the other sectors go on. The state of
each sector is written to a status file that `ioc status` shows under the `simulators`
component.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ioc.supervisor import Backoff, Streak

if TYPE_CHECKING:
    from producers.simulators import Emission, Simulation

__all__ = ["SectorRun", "SectorSimulators", "read_status_file"]

log = logging.getLogger("ioc.simulate")

MAX_TICK_SECONDS = 0.25
STATUS_INTERVAL = 1.0
SectorState = Literal["starting", "running", "backoff", "silent", "stopped"]


@dataclass(slots=True)
class SectorRun:
    """One sector's simulator as `ioc status` shows it."""

    sector: str
    state: SectorState = "starting"
    restarts: int = 0
    streak: Streak = field(default_factory=Streak)
    events: int = 0
    last_error: str | None = None

    @property
    def name(self) -> str:
        return f"sim-{self.sector}"

    def row(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "restarts": self.restarts,
            "events": self.events,
            "last_error": self.last_error,
        }


class SectorSimulators:
    """Runs one task per sector until stopped; a failed sector restarts alone, with backoff."""

    def __init__(
        self,
        sectors: Sequence[str],
        *,
        simulation: Callable[[str, float], Simulation],  # (sector, start) → a fresh simulation
        publish: Callable[[Emission], Awaitable[None]],
        status_file: Path | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runs = [SectorRun(sector) for sector in sectors]
        self._simulation = simulation
        self._publish = publish
        self._status_file = status_file
        self._backoff = backoff or Backoff()
        self._clock = clock

    @property
    def events(self) -> int:
        return sum(run.events for run in self.runs)

    async def run(self, stop: asyncio.Event) -> None:
        """Until stop is set: a task per sector and the status file; all awaited at the end."""
        tasks = [asyncio.create_task(self._sector(run, stop), name=run.name) for run in self.runs]
        try:
            while not stop.is_set():
                self._write_status()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATUS_INTERVAL)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for run in self.runs:
                run.state = "stopped"
            self._write_status()

    async def _sector(self, run: SectorRun, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                simulation = self._simulation(run.sector, self._clock())
                run.state = "running"
                await self._feed(run, simulation, stop)
                return
            except Exception as exc:  # a sector's bug must not stop the others: restart it
                ran_for = time.monotonic() - started
                run.streak = self._backoff.after_exit(
                    run.streak, cause=type(exc).__name__, ran_for=ran_for
                )
                delay = self._backoff.delay(run.streak.failures)
                run.restarts += 1
                run.state = "backoff"
                run.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.exception(
                    "%s failed after %.1f s; restarting in %.0f s", run.name, ran_for, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _feed(self, run: SectorRun, simulation: Simulation, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for emission in simulation.until(self._clock()):
                await self._publish(emission)
                run.events += 1
            if simulation.next_at == math.inf:
                run.state = "silent"  # every source silenced for good (a `silent` scenario)
            delay = min(max(simulation.next_at - self._clock(), 0.0), MAX_TICK_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _write_status(self) -> None:
        if self._status_file is None:
            return
        report = {
            "pid": os.getpid(),
            "updated_at": self._clock(),
            "sectors": [run.row() for run in self.runs],
        }
        tmp = self._status_file.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(report))
            tmp.replace(self._status_file)


def read_status_file(path: Path, pid: int | None) -> list[dict[str, Any]]:
    """The sectors' rows of the simulators process `pid` (none when the file is another's)."""
    try:
        report = json.loads(path.read_text())
        if pid is None or int(report["pid"]) != pid:
            return []
        return [dict(row) for row in report["sectors"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
