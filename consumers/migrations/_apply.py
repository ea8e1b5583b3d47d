"""Apply pending migrations to PostgreSQL: each once, in order, each in its own transaction.

A session-level advisory lock serialises concurrent migrators (two `ioc` processes starting
at once): the second waits, then finds nothing left to do.

Before the first migration with parts for one storage path, the database's path is chosen once
and recorded in `storage_path`: `timescaledb` when `CREATE EXTENSION timescaledb` succeeds (or
is already done), else `plain-postgresql`. It never changes afterwards: the tables of the two
paths differ (hypertables vs native partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Literal

import psycopg
from psycopg.rows import TupleRow

from consumers.migrations._files import (
    AppliedMigration,
    Migration,
    StoragePath,
    load_migrations,
    pending_migrations,
)
from foundation.errors import (
    DatabaseError,
    DatabaseUnreachableError,
    MigrationError,
    StoragePathError,
)
from foundation.probes import redact_url

__all__ = ["MIGRATION_LOCK_KEY", "MigrationReport", "StorageChoice", "migrate"]

# What the operator asks for (IOC_STORAGE_PATH); "auto" takes TimescaleDB when it can.
StorageChoice = Literal["auto", "plain-postgresql", "timescaledb"]

log = logging.getLogger(__name__)

# Fixed advisory-lock key of ioc-stream's migrator ("ioc" + "mig" in ASCII).
MIGRATION_LOCK_KEY = 0x696F63_6D6967

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

_CREATE_STORAGE_PATH = """
CREATE TABLE IF NOT EXISTS storage_path (
    singleton boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    path      text        NOT NULL CHECK (path IN ('plain-postgresql', 'timescaledb')),
    chosen_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class MigrationReport:
    """What one run did: newly applied migrations, and how many were already there."""

    applied: list[Migration] = field(default_factory=list)
    already_applied: int = 0
    unknown_versions: list[int] = field(default_factory=list)
    storage_path: StoragePath | None = None  # None: no migration needed a path yet


async def migrate(
    url: str,
    *,
    connect_timeout: float,
    lock_timeout: float = 120.0,
    migrations: list[Migration] | None = None,
    storage: StorageChoice = "auto",
) -> MigrationReport:
    """Apply every pending migration to the database at url."""
    wanted = load_migrations() if migrations is None else migrations
    try:
        async with asyncio.timeout(connect_timeout):
            conn = await psycopg.AsyncConnection.connect(
                url, connect_timeout=max(int(connect_timeout), 1), autocommit=True
            )
    except (TimeoutError, psycopg.Error) as exc:
        raise DatabaseUnreachableError(
            f"cannot connect to {redact_url(url)}: {_first_line(exc)}"
        ) from exc
    async with conn:
        await _lock(conn, lock_timeout)
        try:
            return await _apply_pending(conn, wanted, storage)
        finally:
            # Closing the session releases the lock anyway; a broken one must not mask the error.
            with contextlib.suppress(psycopg.Error):
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


async def _lock(conn: psycopg.AsyncConnection[TupleRow], timeout: float) -> None:
    try:
        await conn.execute(
            "SELECT set_config('lock_timeout', %s, false)", (f"{int(timeout * 1000)}ms",)
        )
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute("RESET lock_timeout")
    except psycopg.errors.LockNotAvailable as exc:
        raise MigrationError(
            f"another process has held the migration lock for over {timeout:g} s"
        ) from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot take the migration lock: {_first_line(exc)}") from exc


async def _apply_pending(
    conn: psycopg.AsyncConnection[TupleRow], wanted: list[Migration], storage: StorageChoice
) -> MigrationReport:
    try:
        await conn.execute(_CREATE_TABLE)
        cursor = await conn.execute("SELECT version, name, checksum FROM schema_migrations")
        rows = await cursor.fetchall()
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot read schema_migrations: {_first_line(exc)}") from exc
    applied = {v: AppliedMigration(v, n, c) for v, n, c in rows}
    known = {m.version for m in wanted}
    unknown = sorted(v for v in applied if v not in known)
    if unknown:
        # A newer release migrated this database; running older code against it is allowed.
        log.warning("database has migrations this release does not know: %s", unknown)
    pending = pending_migrations(wanted, applied)
    path = await _recorded_path(conn)
    if path is not None and storage not in ("auto", path):
        raise StoragePathError(
            f"IOC_STORAGE_PATH={storage}, but this database was set up for {path}; "
            "the path of a database never changes (use a new database, or unset it)"
        )
    if path is None and any(m.path_specific for m in pending):
        path = await _choose_path(conn, storage)
    done: list[Migration] = []
    for migration in pending:
        # path is set whenever a path-specific migration is pending; others run whole.
        sql = migration.sql_for(path) if path is not None else migration.sql
        try:
            async with conn.transaction():
                await conn.execute(sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        except psycopg.Error as exc:
            raise MigrationError(
                f"migration {migration.label} failed and was rolled back: {_first_line(exc)}"
                + (f" (applied before it: {', '.join(m.label for m in done)})" if done else "")
            ) from exc
        log.info("applied migration %s", migration.label)
        done.append(migration)
    return MigrationReport(
        applied=done,
        already_applied=len(wanted) - len(done),
        unknown_versions=unknown,
        storage_path=path,
    )


async def _recorded_path(conn: psycopg.AsyncConnection[TupleRow]) -> StoragePath | None:
    try:
        cursor = await conn.execute("SELECT to_regclass('storage_path') IS NOT NULL")
        exists = await cursor.fetchone()
        if not exists or not exists[0]:
            return None
        cursor = await conn.execute("SELECT path FROM storage_path")
        row = await cursor.fetchone()
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot read storage_path: {_first_line(exc)}") from exc
    if row is None:
        return None
    return "timescaledb" if row[0] == "timescaledb" else "plain-postgresql"


async def _choose_path(
    conn: psycopg.AsyncConnection[TupleRow], storage: StorageChoice
) -> StoragePath:
    """Decide this database's storage path once (we hold the migration lock) and record it."""
    path: StoragePath = "plain-postgresql"
    if storage != "plain-postgresql":
        try:
            async with conn.transaction():
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            path = "timescaledb"
        except psycopg.Error as exc:
            if storage == "timescaledb":
                raise StoragePathError(
                    f"IOC_STORAGE_PATH=timescaledb, but CREATE EXTENSION timescaledb failed: "
                    f"{_first_line(exc)}"
                ) from exc
            log.info("TimescaleDB is not available (%s): plain PostgreSQL path", _first_line(exc))
    try:
        async with conn.transaction():
            await conn.execute(_CREATE_STORAGE_PATH)
            await conn.execute(
                "INSERT INTO storage_path (path) VALUES (%s) ON CONFLICT DO NOTHING", (path,)
            )
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot record the storage path: {_first_line(exc)}") from exc
    log.info("storage path: %s", path)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
