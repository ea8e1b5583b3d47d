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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ioc.embedded import spawn

__all__ = ["Backoff", "ChildSpec", "ChildStatus", "Streak", "Supervisor", "exit_cause"]

log = logging.getLogger(__name__)

# held: stopped by `ioc up` on purpose (a broker roll or restart) until released;
# waiting: exited while the broker or the database was down, restarted once they answer.
ChildState = Literal["starting", "running", "backoff", "waiting", "held", "stopped", "failed"]
CHILDREN_FILE = "children.json"


@dataclass(frozen=True, slots=True)
class Backoff:
    """When to restart a child that exited, by cause (pure).

    - A child that ran `early_exit` seconds or more was healthy: whatever ended it (a SIGKILL,
      the OOM killer, a crash on a bad day) is not a crash loop, so it restarts at once and
      its count starts again. Kills a minute apart no longer climb to the cap.
    - Exits within `early_exit` of the start are a crash loop when they have the same cause
      (the same exit code or signal) as the one before: base · 2^(n-1) seconds, capped.
      Another cause starts the count again at `base`.
    - An exit while the broker or the database is down is not the child's fault: the
      supervisor does not count it and restarts the child once they answer.
    """

    base: float = 1.0
    cap: float = 30.0
    early_exit: float = 10.0  # an exit sooner after the start than this may be a crash loop

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.cap, self.base * 2 ** (failures - 1)))

    def after_exit(self, streak: Streak, *, cause: str, ran_for: float) -> Streak:
        """The child's crash streak after it exited with `cause` having run `ran_for` s."""
        if ran_for >= self.early_exit:
            return Streak(cause, 0)
        if cause == streak.cause:
            return Streak(cause, streak.failures + 1)
        return Streak(cause, 1)


@dataclass(frozen=True, slots=True)
class Streak:
    """Consecutive early exits of one child with the same cause."""

    cause: str = ""
    failures: int = 0


def exit_cause(code: int) -> str:
    """`signal 9` for a child killed by a signal, `exit 1` for one that exited."""
    return f"signal {-code}" if code < 0 else f"exit {code}"


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
    streak: Streak = field(default_factory=Streak)
    held: bool = False
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
            "last_cause": self.streak.cause or None,
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
        dependencies_down: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`dependencies_down`: True while the broker or the database does not answer (then a
        child's exit is not counted against it, and it waits for them to restart)."""
        self._children = [ChildStatus(spec) for spec in specs]
        self._state_dir = state_dir
        self._log_dir = state_dir / "logs"
        self._env = env
        self._backoff = backoff or Backoff()
        self._poll = poll_interval
        self._on_change = on_change or (lambda _child: None)
        self._dependencies_down = dependencies_down or (lambda: False)
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
            if child.held or child.state == "stopped" or now < child.start_at:
                return
            if child.state == "waiting" and self._dependencies_down():
                return
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
        if child.held:  # stopped on purpose; `hold` does the bookkeeping
            return
        if self._dependencies_down():
            child.state = "waiting"
            child.start_at = now
            log.warning(
                "%s exited with %s after %.1f s while the broker or the database is down; "
                "restarting it once they answer (log: %s)",
                child.spec.name, code, ran_for, self.log_path(child.spec.name),
            )  # fmt: skip
            self._on_change(child)
            return
        child.streak = self._backoff.after_exit(
            child.streak, cause=exit_cause(code), ran_for=ran_for
        )
        delay = self._backoff.delay(child.streak.failures)
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
            child.streak = self._backoff.after_exit(child.streak, cause="spawn", ran_for=0.0)
            child.start_at = now + self._backoff.delay(child.streak.failures)
            child.state = "failed"
            return
        child.pid = child.proc.pid
        child.started_at = now
        child.state = "starting"
        log.info("started %s (pid %d)", child.spec.name, child.pid)
        self._on_change(child)

    async def hold(self, names: Iterable[str], *, timeout: float) -> list[str]:
        """Stop these children (SIGTERM, SIGKILL after timeout) and keep them down until
        `release`; returns the names held. For a broker roll or restart: no backoff, no log
        of a crash."""
        wanted = set(names)
        chosen = [c for c in self._children if c.spec.name in wanted and c.state != "stopped"]
        running = [(c, c.proc) for c in chosen if c.proc is not None]
        for child in chosen:
            child.held = True
        for _child, proc in running:
            _signal_group(proc.pid, signal.SIGTERM)

        def all_exited() -> bool:
            return all(proc.poll() is not None for _c, proc in running)

        await _poll_until(all_exited, timeout)
        for child, proc in running:
            if proc.poll() is None:
                log.warning("%s did not stop within %.0f s; killing it", child.spec.name, timeout)
            _signal_group(proc.pid, signal.SIGKILL)  # and whatever it forked
        await _poll_until(all_exited, 5.0)
        for child in chosen:
            child.proc = None
            child.pid = None
            child.state = "held"
            self._on_change(child)
        for child, proc in running:
            child.last_exit = proc.returncode
        self._write_children_file()
        return [c.spec.name for c in chosen]

    def release(self, names: Iterable[str]) -> None:
        """Start held children again now (their crash streak is not affected)."""
        wanted = set(names)
        now = self._clock()
        for child in self._children:
            if child.spec.name in wanted and child.held:
                child.held = False
                child.state = "backoff"
                child.start_at = now

    def running_pid(self, name: str) -> int | None:
        """The pid of the named child while it runs."""
        for child in self._children:
            if child.spec.name == name and child.proc is not None:
                return child.pid
        return None

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


async def _poll_until(done: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll done() until true or timeout (a child's exit gives no event to wait on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if done():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)


def _signal_group(pgid: int | None, sig: int) -> None:
    if pgid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
