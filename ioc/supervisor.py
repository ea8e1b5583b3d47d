"""The process supervisor of `ioc up`: start the components, restart a crashed one with backoff.

Each child is an `ioc <command>` process in its own process group, with a parent-death
signal (a SIGKILLed `ioc up` leaves nothing behind) and its output in `<state>/logs/<name>.log`.
The restart policy is pure (`Backoff`); the process layer polls, since a handful of children
exiting at most a few times a minute needs nothing smarter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ioc.embedded import spawn

__all__ = ["Backoff", "ChildSpec", "ChildStatus", "Supervisor"]

log = logging.getLogger(__name__)

ChildState = Literal["starting", "running", "backoff", "stopped", "failed"]
CHILDREN_FILE = "children.json"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before restart n (1-based): base · 2^(n-1), capped; a long healthy run resets n."""

    base: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0  # a child that ran this long crashed "for the first time" again

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.cap, self.base * 2 ** (failures - 1)))

    def failures_after_exit(self, failures: int, ran_for: float) -> int:
        return 1 if ran_for >= self.stable_after else failures + 1


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One component: a name for logs and the status table, and its `ioc` arguments.

    `members` names what one process runs for several (the simulators: `sim-<sector>`).
    """

    name: str
    args: tuple[str, ...]
    members: tuple[str, ...] = ()


@dataclass(slots=True)
class ChildStatus:
    spec: ChildSpec
    state: ChildState = "starting"
    pid: int | None = None
    restarts: int = 0
    failures: int = 0
    last_exit: int | None = None
    started_at: float = 0.0  # monotonic
    start_at: float = 0.0  # monotonic: when the next start is due
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def row(self) -> dict[str, object]:
        return {
            "name": self.spec.name,
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "members": list(self.spec.members),
        }


class Supervisor:
    """Runs the children until stopped; restarts any that exits, with backoff."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        state_dir: Path,
        env: dict[str, str] | None = None,  # None: inherit ours
        backoff: Backoff | None = None,
        poll_interval: float = 0.2,
        on_change: Callable[[ChildStatus], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._children = [ChildStatus(spec) for spec in specs]
        self._state_dir = state_dir
        self._log_dir = state_dir / "logs"
        self._env = env
        self._backoff = backoff or Backoff()
        self._poll = poll_interval
        self._on_change = on_change or (lambda _child: None)
        self._clock = clock

    @property
    def children(self) -> list[ChildStatus]:
        return list(self._children)

    def log_path(self, name: str) -> Path:
        return self._log_dir / f"{name}.log"

    async def run(self, stop: asyncio.Event) -> None:
        """Supervise until stop is set; the caller then calls `stop_all`."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        while not stop.is_set():
            now = self._clock()
            for child in self._children:
                self._step(child, now)
            self._write_children_file()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll)

    def _step(self, child: ChildStatus, now: float) -> None:
        if child.proc is None:
            if now >= child.start_at and child.state != "stopped":
                self._start(child, now)
            return
        code = child.proc.poll()
        if code is None:
            if child.state == "starting" and now - child.started_at >= 1.0:
                child.state = "running"
                self._on_change(child)
            return
        ran_for = now - child.started_at
        child.proc = None
        child.pid = None
        child.last_exit = code
        child.failures = self._backoff.failures_after_exit(child.failures, ran_for)
        delay = self._backoff.delay(child.failures)
        child.start_at = now + delay
        child.state = "backoff"
        log.warning(
            "%s exited with %s after %.1f s; restarting in %.0f s (log: %s)",
            child.spec.name,
            code,
            ran_for,
            delay,
            self.log_path(child.spec.name),
        )
        self._on_change(child)

    def _start(self, child: ChildStatus, now: float) -> None:
        argv = [sys.executable, "-m", "ioc", *child.spec.args]
        log_path = self.log_path(child.spec.name)
        if child.restarts or child.last_exit is not None:
            child.restarts += 1
            self._rotate(log_path)
        try:
            # From the loop's (main) thread: the death signal follows the spawning thread.
            child.proc = spawn(argv, log_path=log_path, death_signal=signal.SIGTERM, env=self._env)
        except OSError as exc:
            log.error("cannot start %s: %s", child.spec.name, exc)
            child.failures += 1
            child.start_at = now + self._backoff.delay(child.failures)
            child.state = "failed"
            return
        child.pid = child.proc.pid
        child.started_at = now
        child.state = "starting"
        log.info("started %s (pid %d)", child.spec.name, child.pid)
        self._on_change(child)

    @staticmethod
    def _rotate(log_path: Path) -> None:
        with contextlib.suppress(OSError):
            log_path.replace(log_path.with_suffix(".log.1"))

    def stop_all(self, *, timeout: float) -> None:
        """SIGTERM every child's group at once, wait up to timeout, then SIGKILL the rest."""
        running = [(c, c.proc) for c in self._children if c.proc is not None]
        for child in self._children:
            child.state = "stopped"
        for _child, proc in running:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = self._clock() + timeout
        for child, proc in running:
            remaining = max(0.0, deadline - self._clock())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", child.spec.name, timeout)
            _signal_group(proc.pid, signal.SIGKILL)  # and whatever it forked
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
            child.last_exit = proc.returncode
            child.proc = None
            child.pid = None
        self._write_children_file()

    def _write_children_file(self) -> None:
        rows = [child.row() for child in self._children]
        path = self._state_dir / CHILDREN_FILE
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"supervisor_pid": os.getpid(), "children": rows}))
            tmp.replace(path)


def _signal_group(pgid: int | None, sig: int) -> None:
    if pgid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
