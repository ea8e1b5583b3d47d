"""Ask a Kafka broker and a PostgreSQL server whether they answer, and what they are."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.admin import ApiVersionRequest

__all__ = [
    "ServiceStatus",
    "TimescaleState",
    "probe_kafka",
    "probe_postgres",
    "read_timescale_state",
    "redact_url",
]

log = logging.getLogger(__name__)

# Kafka API keys whose highest supported version hints at the broker's release.
_PRODUCE, _FETCH = 0, 1


@dataclass
class ServiceStatus:
    """What `ioc status` says about one service."""

    service: str
    mode: str
    address: str
    reachable: bool = False
    version: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TimescaleState:
    """TimescaleDB on a server and in one of its databases."""

    available: str | None  # the version the server's installation offers, None: not installed
    installed: str | None  # the version created in this database (CREATE EXTENSION), or None
    preloaded: bool  # the server runs with shared_preload_libraries naming timescaledb

    @property
    def usable(self) -> bool:
        """CREATE EXTENSION can work (or has worked): installed and preloaded."""
        return self.preloaded and (self.available is not None or self.installed is not None)


async def read_timescale_state(conn: psycopg.AsyncConnection[Any]) -> TimescaleState:
    """What the server and this database have of TimescaleDB (any role may ask).

    Preloaded is read from a setting that TimescaleDB's loader defines when, and only when,
    it is preloaded (`shared_preload_libraries` itself is readable by superusers only).
    """
    cur = await conn.execute(
        "SELECT (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),"
        " current_setting('timescaledb.disable_load', true) IS NOT NULL"
    )
    row = await cur.fetchone()
    if row is None:
        return TimescaleState(None, None, preloaded=False)
    return TimescaleState(row[0], row[1], preloaded=bool(row[2]))


@contextlib.contextmanager
def _quiet(logger_name: str) -> Any:
    """Silence a library logger while we probe; an unreachable broker is our message to give."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def probe_kafka(
    bootstrap_servers: str,
    *,
    timeout: float,
    mode: str = "external",
    kafka_options: dict[str, Any] | None = None,
) -> ServiceStatus:
    """Bootstrap metadata from the broker and read its API versions."""
    status = ServiceStatus(service="broker", mode=mode, address=bootstrap_servers)
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=max(int(timeout * 1000), 1000),
        **(kafka_options or {}),
    )
    with _quiet("aiokafka"):
        try:
            async with asyncio.timeout(timeout):
                await client.bootstrap()
                brokers = sorted(b.nodeId for b in client.cluster.brokers())
                status.details["brokers"] = len(brokers)
                if brokers:
                    response = await client.send(brokers[0], ApiVersionRequest())
                    versions = {key: high for key, _low, high in response.api_versions}
                    status.version = (
                        f"Kafka protocol (Produce v{versions.get(_PRODUCE, '?')}, "
                        f"Fetch v{versions.get(_FETCH, '?')})"
                    )
                status.reachable = True
        except TimeoutError:
            status.error = f"no answer from {bootstrap_servers} within {timeout:g} s"
        except (KafkaConnectionError, OSError):
            status.error = f"no Kafka broker answers at {bootstrap_servers}"
        except KafkaError as exc:
            status.error = f"Kafka at {bootstrap_servers} failed: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await client.close()
    return status


async def probe_postgres(url: str, *, timeout: float, mode: str = "external") -> ServiceStatus:
    """Connect, read the server version and whether TimescaleDB is available/installed."""
    status = ServiceStatus(service="database", mode=mode, address=redact_url(url))
    try:
        async with asyncio.timeout(timeout):
            conn = await psycopg.AsyncConnection.connect(
                url, connect_timeout=max(int(timeout), 1), autocommit=True
            )
            async with conn:
                cur = await conn.execute("SELECT current_setting('server_version')")
                row = await cur.fetchone()
                status.version = f"PostgreSQL {row[0]}" if row else None
                timescale = await read_timescale_state(conn)
                status.details["timescaledb_available"] = timescale.available is not None
                status.details["timescaledb_available_version"] = timescale.available
                status.details["timescaledb_preloaded"] = timescale.preloaded
                status.details["timescaledb_version"] = timescale.installed
                # The path the migrations chose for this database (None before they ran).
                cur = await conn.execute("SELECT to_regclass('storage_path') IS NOT NULL")
                row = await cur.fetchone()
                recorded = None
                if row and row[0]:
                    cur = await conn.execute("SELECT path FROM storage_path")
                    row = await cur.fetchone()
                    recorded = row[0] if row else None
                status.details["storage_path_recorded"] = recorded
                status.reachable = True
    except TimeoutError:
        status.error = f"no answer from {redact_url(url)} within {timeout:g} s"
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        status.error = f"cannot connect to {redact_url(url)}: {first_line}"
    return status


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs and status output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
