"""Apply pending migrations to PostgreSQL: each once, in order, each in its own transaction.

A session-level advisory lock serialises concurrent migrators (two `ioc` processes starting
at once): the second waits, then finds nothing left to do.

Before the first migration with parts for one storage path, the database's path is chosen once
and recorded in `storage_path`: `timescaledb` when the server has TimescaleDB preloaded and
`CREATE EXTENSION timescaledb` succeeds (or is already done), else `plain-postgresql`, with a log
line saying why. The extension is created on a connection of its own: a server whose
installation has TimescaleDB's files but does not preload it ends that connection (FATAL), and
the migrator's own session (which holds the lock) must survive it.

The path never changes afterwards: the tables of the two paths differ (hypertables vs native
partitions), and converting one into the other is not something a migration does in passing.
A plain database on a server that has since gained TimescaleDB stays plain (said in the log
and in the report's notes); a TimescaleDB database on a server without TimescaleDB loaded is
refused, because writes would land in the hypertables' parent tables and reads would miss the
chunks.
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
    DatabaseEncodingError,
    DatabaseError,
    DatabaseUnreachableError,
    MigrationError,
    StoragePathError,
)
from foundation.probes import TimescaleState, read_timescale_state, redact_url

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
    timescaledb: TimescaleState | None = None
    notes: list[str] = field(default_factory=list)  # for the operator (also logged)


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
        _require_utf8(conn, url)
        await _lock(conn, lock_timeout)
        try:
            return await _apply_pending(
                conn, wanted, storage, url=url, connect_timeout=connect_timeout
            )
        finally:
            # Closing the session releases the lock anyway; a broken one must not mask the error.
            with contextlib.suppress(psycopg.Error):
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def _require_utf8(conn: psycopg.AsyncConnection[TupleRow], url: str) -> None:
    """Refuse a database not encoded in UTF8 before anything is created in it: in SQL_ASCII,
    for one, PostgreSQL takes any bytes and hands text back as bytes, so Vietnamese names and
    the history's JSON would break far from the cause."""
    encoding = conn.info.parameter_status("server_encoding")
    if encoding is not None and encoding != "UTF8":
        raise DatabaseEncodingError(
            f"{redact_url(url)} is encoded {encoding}, and"
            " ioc-stream needs a UTF8 database: create one with"
            " CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0"
        )


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
    conn: psycopg.AsyncConnection[TupleRow],
    wanted: list[Migration],
    storage: StorageChoice,
    *,
    url: str,
    connect_timeout: float,
) -> MigrationReport:
    try:
        timescale = await read_timescale_state(conn)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot read the server's extensions: {_first_line(exc)}") from exc
    # Before any DDL: with the extension created but not loaded, even CREATE TABLE IF NOT
    # EXISTS fails (TimescaleDB's event trigger needs its library).
    path = await _recorded_path(conn)
    if path is not None and storage not in ("auto", path):
        raise StoragePathError(
            f"IOC_STORAGE_PATH={storage}, but this database was set up for {path}; "
            "the path of a database never changes (use a new database, or unset it)"
        )
    notes: list[str] = []
    if path is not None:
        _check_recorded_path(path, timescale, notes, asked=storage)
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
    if path is None and any(m.path_specific for m in pending):
        path = await _choose_path(
            conn, storage, timescale, notes, url=url, connect_timeout=connect_timeout
        )
        timescale = await _reread_timescale_state(conn, timescale)
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
        timescaledb=timescale,
        notes=notes,
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


def _check_recorded_path(
    path: StoragePath, timescale: TimescaleState, notes: list[str], *, asked: StorageChoice
) -> None:
    """A database keeps its path: say so when the server could now offer the other one, and
    refuse a TimescaleDB database on a server that does not load TimescaleDB."""
    if path == "timescaledb" and not (timescale.preloaded and timescale.installed):
        missing = (
            "the extension is not created in it"
            if timescale.preloaded
            else "the server does not preload TimescaleDB (shared_preload_libraries)"
        )
        raise StoragePathError(
            f"this database was set up for the timescaledb storage path, but {missing}: "
            "its writes would bypass the hypertables; start PostgreSQL with "
            "shared_preload_libraries = 'timescaledb' (README: Storage paths)"
        )
    if path == "plain-postgresql" and timescale.usable and asked == "auto":
        _note(
            notes,
            f"this database was set up on the plain-postgresql storage path; TimescaleDB "
            f"{timescale.available or timescale.installed} is available on the server now, "
            "but a database keeps the path it was set up with (README: a database that "
            "changes path)",
        )


async def _choose_path(
    conn: psycopg.AsyncConnection[TupleRow],
    storage: StorageChoice,
    timescale: TimescaleState,
    notes: list[str],
    *,
    url: str,
    connect_timeout: float,
) -> StoragePath:
    """Decide this database's storage path once (we hold the migration lock) and record it."""
    path: StoragePath = "plain-postgresql"
    if storage != "plain-postgresql":
        reason = await _timescale_unavailable(timescale, url=url, connect_timeout=connect_timeout)
        if reason is None:
            path = "timescaledb"
        elif storage == "timescaledb":
            raise StoragePathError(f"IOC_STORAGE_PATH=timescaledb, but {reason}")
        elif timescale.available is None:
            log.info("%s: plain PostgreSQL storage path", reason)
        else:
            _note(notes, f"{reason}: this database takes the plain-postgresql storage path")
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


async def _timescale_unavailable(
    timescale: TimescaleState, *, url: str, connect_timeout: float
) -> str | None:
    """Why this database cannot take the TimescaleDB path, or None once the extension exists."""
    if timescale.available is None and timescale.installed is None:
        return "TimescaleDB is not installed on this server"
    if not timescale.preloaded:
        return (
            f"TimescaleDB {timescale.available or timescale.installed} is installed on this "
            "server but not preloaded (shared_preload_libraries does not name timescaledb)"
        )
    if timescale.installed is not None:
        return None
    try:
        async with asyncio.timeout(connect_timeout * 3):
            side = await psycopg.AsyncConnection.connect(
                url, connect_timeout=max(int(connect_timeout), 1), autocommit=True
            )
            async with side:
                await side.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except (TimeoutError, psycopg.Error) as exc:
        return f"CREATE EXTENSION timescaledb failed: {_first_line(exc)}"
    return None


async def _reread_timescale_state(
    conn: psycopg.AsyncConnection[TupleRow], before: TimescaleState
) -> TimescaleState:
    try:
        return await read_timescale_state(conn)
    except psycopg.Error:
        return before


def _note(notes: list[str], text: str) -> None:
    log.warning("%s", text)
    notes.append(text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
