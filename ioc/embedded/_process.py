"""Child processes that die with their parent and can be found again from a pid file.

Each embedded service runs in its own process group (so a terminal's Ctrl-C reaches
only `ioc`, which then stops the services in order) with a parent-death signal (so a
SIGKILLed `ioc` does not leave them running). The pid file in the state directory
covers what the death signal cannot: a service left over from a crash on another
kernel or a parent thread that exited; it is cleaned on the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "PidRecord",
    "find_free_port",
    "kill_stale",
    "port_is_free",
    "read_pid_file",
    "spawn",
    "stop_process_group",
    "tail",
    "write_pid_file",
]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_libc_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


@dataclass(frozen=True)
class PidRecord:
    """What identifies a process we started, even after its parent is gone."""

    pid: int
    create_time: float
    name: str

    def alive(self) -> bool:
        """True when that very process (not a later one with a reused pid) still runs."""
        try:
            proc = psutil.Process(self.pid)
            same = abs(proc.create_time() - self.create_time) < 1.0
            return same and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    death_signal: int,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv in a new process group, output to log_path, signalled when we die.

    Must be called from a thread that lives as long as the child (the main thread):
    Linux sends the death signal when the spawning *thread* exits.
    """
    parent = os.getpid()

    def _die_with_parent() -> None:  # runs in the child between fork and exec
        if _libc_prctl is not None:
            _libc_prctl(_PR_SET_PDEATHSIG, death_signal)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    with log_path.open("wb") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
            user=user,
            # Drop root's groups too: a folder's group bits would otherwise apply to us.
            group=user,
            extra_groups=[] if user is not None else None,
            env=env,
            close_fds=True,
            preexec_fn=_die_with_parent,  # only prctl and getppid: no locks taken
        )


def write_pid_file(path: Path, pid: int, name: str) -> PidRecord:
    """Record a started process so a later start can recognise it."""
    record = PidRecord(pid=pid, create_time=psutil.Process(pid).create_time(), name=name)
    path.write_text(json.dumps(record.__dict__))
    return record


def read_pid_file(path: Path) -> PidRecord | None:
    """The record in path, or None when there is none or it is unreadable."""
    try:
        raw = json.loads(path.read_text())
        return PidRecord(
            pid=int(raw["pid"]), create_time=float(raw["create_time"]), name=raw["name"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def kill_stale(path: Path, *, first_signal: int, timeout: float) -> int | None:
    """Stop the process group recorded in path if it still runs; return its pid if it did."""
    record = read_pid_file(path)
    path.unlink(missing_ok=True)
    if record is None or not record.alive():
        return None
    log.warning("stopping a stale %s (pid %d) left by an earlier run", record.name, record.pid)
    _signal_group(record.pid, first_signal)
    if not _wait_gone(record, timeout):
        _signal_group(record.pid, signal.SIGKILL)
        _wait_gone(record, 5.0)
    return record.pid


def stop_process_group(proc: subprocess.Popen[bytes], *, first_signal: int, timeout: float) -> None:
    """Signal proc's group, wait up to timeout, then SIGKILL the group; reap proc."""
    if proc.poll() is None:
        _signal_group(proc.pid, first_signal)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "pid %d ignored signal %d for %.0f s; killing it", proc.pid, first_signal, timeout
            )
    # Kill whatever is left in the group (the leader or helpers it forked).
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5.0)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(record: PidRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not record.alive():
            return True
        time.sleep(0.05)
    return not record.alive()


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (we could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves bind: connections of a just-stopped server linger in
        # TIME_WAIT for a minute and must not make its port look taken (a listener still does).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (another process may still take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
