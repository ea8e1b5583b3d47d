"""Where the broker and the database are: configured ones, or the embedded runtime.

`ioc up` owns the embedded runtime (`Runtime`): it locks the state directory, starts
the services it must, and writes `runtime.json` so that other `ioc` commands
(`status`, `topics create`, …) can find them (`resolve_endpoints`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import psutil

from foundation.errors import (
    BrokerUnreachableError,
    DatabaseUnreachableError,
    NotRunningError,
    StateDirError,
    StateDirLockedError,
)
from foundation.kafka_client import kafka_client_options
from foundation.probes import probe_kafka, probe_postgres
from foundation.settings import Settings
from foundation.state_dir import ensure_state_dir
from ioc.embedded import EmbeddedBroker, EmbeddedPostgres

__all__ = [
    "Endpoints",
    "Runtime",
    "gateway_address",
    "public_base_url",
    "read_runtime_file",
    "resolve_bootstrap_servers",
    "resolve_database_url",
]

Mode = Literal["embedded", "external"]
RUNTIME_FILE = "runtime.json"
LOCK_FILE = "ioc.lock"


@dataclass(frozen=True)
class Endpoints:
    """The addresses every component connects to, and who provides them."""

    bootstrap_servers: str
    database_url: str
    broker_mode: Mode
    database_mode: Mode
    broker_version: str | None = None
    broker_pid: int | None = None
    postgres_pid: int | None = None
    owner_pid: int | None = None
    gateway_address: str | None = None  # host:port of the gateway `ioc up` runs, if it runs one


def read_runtime_file(state_dir: Path) -> Endpoints | None:
    """The endpoints a live `ioc up` published in state_dir, or None."""
    try:
        raw = json.loads((state_dir / RUNTIME_FILE).read_text())
        endpoints = Endpoints(**raw)
    except (OSError, ValueError, TypeError):
        return None
    if endpoints.owner_pid is None or not psutil.pid_exists(endpoints.owner_pid):
        return None
    return endpoints


def resolve_bootstrap_servers(settings: Settings) -> str:
    """The configured Kafka, else the broker of a running `ioc up`, else an error."""
    if settings.kafka_bootstrap_servers:
        return settings.kafka_bootstrap_servers
    running = read_runtime_file(settings.state_dir)
    if running is None:
        raise NotRunningError(_not_running(settings, "KAFKA_BOOTSTRAP_SERVERS"))
    return running.bootstrap_servers


def gateway_address(settings: Settings) -> tuple[str, int]:
    """Where the gateway listens: IOC_GATEWAY_HOST/PORT when set here, else the gateway of a
    running `ioc up` in the state directory, else the default address."""
    host, port = settings.gateway_host, settings.gateway_port
    running = read_runtime_file(settings.state_dir)
    if running is not None and running.gateway_address:
        ran_host, _sep, ran_port = running.gateway_address.rpartition(":")
        with contextlib.suppress(ValueError):
            # Each part set in this shell wins over the recorded one.
            if "gateway_host" not in settings.model_fields_set:
                host = ran_host
            if "gateway_port" not in settings.model_fields_set:
                port = int(ran_port)
    return host, port


def public_base_url(settings: Settings) -> str:
    """The gateway as people reach it: IOC_PUBLIC_URL, else `gateway_address`."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host, port = gateway_address(settings)
    return f"http://{host}:{port}"


def resolve_database_url(settings: Settings) -> str:
    """The configured database, else the PostgreSQL of a running `ioc up`, else an error."""
    if settings.database_url:
        return settings.database_url
    running = read_runtime_file(settings.state_dir)
    if running is None:
        raise NotRunningError(_not_running(settings, "DATABASE_URL"))
    return running.database_url


def _not_running(settings: Settings, variable: str) -> str:
    return (
        f"{variable} is not set and no embedded runtime runs in {settings.state_dir}; "
        "start one with `ioc up` or set the variable"
    )


class Runtime:
    """Starts what is not configured, checks what is, and stops what it started."""

    def __init__(self, settings: Settings, *, gateway: bool = False) -> None:
        """`gateway`: the caller runs a gateway on the settings' address (recorded for the
        commands of other shells: `ioc tokens create --url`, `ioc status`)."""
        self._settings = settings
        self._gateway = gateway
        self._state_dir = settings.state_dir
        self._lock: IO[str] | None = None
        self._broker: EmbeddedBroker | None = None
        self._postgres: EmbeddedPostgres | None = None
        self._endpoints: Endpoints | None = None

    @property
    def broker(self) -> EmbeddedBroker | None:
        """The embedded broker, when this runtime runs one."""
        return self._broker

    @property
    def postgres(self) -> EmbeddedPostgres | None:
        """The embedded PostgreSQL, when this runtime runs one."""
        return self._postgres

    @property
    def endpoints(self) -> Endpoints | None:
        return self._endpoints

    async def restart_broker(self) -> None:
        """A fresh embedded broker on the same address (empty); runtime.json gets its pid."""
        if self._broker is None:
            return
        await self._broker.restart()
        self._republish()

    async def restart_postgres(self) -> None:
        """The embedded PostgreSQL again on its data directory and address."""
        if self._postgres is None:
            return
        await self._postgres.restart()
        self._republish()

    def _republish(self) -> None:
        if self._endpoints is None:
            return
        self._endpoints = replace(
            self._endpoints,
            broker_pid=self._broker.pid if self._broker else None,
            postgres_pid=self._postgres.pid if self._postgres else None,
        )
        self._write_runtime_file(self._endpoints)

    def _write_runtime_file(self, endpoints: Endpoints) -> None:
        runtime_file = self._state_dir / RUNTIME_FILE
        tmp = runtime_file.with_name(f".{RUNTIME_FILE}.tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(asdict(endpoints), indent=2))
        tmp.replace(runtime_file)  # readers never see half a file

    async def __aenter__(self) -> Endpoints:
        try:
            return await self._start()
        except BaseException:
            self.stop()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _start(self) -> Endpoints:
        settings = self._settings
        self._state_dir = ensure_state_dir(settings.state_dir)
        self._take_lock()
        timeout = settings.connect_timeout
        if settings.kafka_bootstrap_servers:
            bootstrap = settings.kafka_bootstrap_servers
            status = await probe_kafka(
                bootstrap, timeout=timeout, kafka_options=kafka_client_options(settings)
            )
            if not status.reachable:
                raise BrokerUnreachableError(f"KAFKA_BOOTSTRAP_SERVERS: {status.error}")
            broker_version = status.version
        else:
            self._broker = EmbeddedBroker(state_dir=self._state_dir, port=settings.broker_port)
            await self._broker.start()
            bootstrap, broker_version = self._broker.bootstrap_servers, self._broker.version
        if settings.database_url:
            database_url = settings.database_url
            db_status = await probe_postgres(database_url, timeout=timeout)
            if not db_status.reachable:
                raise DatabaseUnreachableError(f"DATABASE_URL: {db_status.error}")
        else:
            # TimescaleDB is preloaded when the installation has it, unless the plain path is
            # asked for (a database keeps the path it was set up with either way).
            self._postgres = EmbeddedPostgres(
                state_dir=self._state_dir,
                port=settings.postgres_port,
                timescaledb=settings.storage_path != "plain-postgresql",
                server_settings={"shared_buffers": f"{settings.postgres_shared_buffers // 1024}kB"},
            )
            await self._postgres.start()
            database_url = self._postgres.url()
        endpoints = Endpoints(
            bootstrap_servers=bootstrap,
            database_url=database_url,
            broker_mode="embedded" if self._broker else "external",
            database_mode="embedded" if self._postgres else "external",
            broker_version=broker_version,
            broker_pid=self._broker.pid if self._broker else None,
            postgres_pid=self._postgres.pid if self._postgres else None,
            owner_pid=os.getpid(),
            gateway_address=(
                f"{settings.gateway_host}:{settings.gateway_port}"
                if self._gateway and settings.gateway_port
                else None
            ),
        )
        self._write_runtime_file(endpoints)
        self._endpoints = endpoints
        return endpoints

    def _take_lock(self) -> None:
        lock_path = self._state_dir / LOCK_FILE
        handle = lock_path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StateDirLockedError(
                    f"another `ioc up` (pid {owner}) runs in {self._state_dir}; "
                    "stop it, or set IOC_STATE_DIR to another directory"
                ) from exc
            raise StateDirError(f"cannot lock {lock_path}: {exc.strerror}") from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def stop(self) -> None:
        """Stop PostgreSQL first (it may still flush), then the broker; release the lock."""
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self._state_dir / RUNTIME_FILE).unlink(missing_ok=True)
            self._lock.close()
            self._lock = None
