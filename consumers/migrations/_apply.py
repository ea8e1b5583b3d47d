"""Apply pending migrations to PostgreSQL: each once, in order, each in its own transaction.

A session-level advisory lock serialises concurrent migrators (two `ioc` processes starting
at once): the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import TupleRow

from consumers.migrations._files import (
    AppliedMigration,
    Migration,
    load_migrations,
    pending_migrations,
)
from ioc.errors import DatabaseError, DatabaseUnreachableError, MigrationError
from ioc.probes import redact_url

__all__ = ["MIGRATION_LOCK_KEY", "MigrationReport", "migrate"]

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


@dataclass(frozen=True)
class MigrationReport:
    """What one run did: newly applied migrations, and how many were already there."""

    applied: list[Migration] = field(default_factory=list)
    already_applied: int = 0
    unknown_versions: list[int] = field(default_factory=list)


async def migrate(
    url: str,
    *,
    connect_timeout: float,
    lock_timeout: float = 120.0,
    migrations: list[Migration] | None = None,
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
            return await _apply_pending(conn, wanted)
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
    conn: psycopg.AsyncConnection[TupleRow], wanted: list[Migration]
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
    done: list[Migration] = []
    for migration in pending_migrations(wanted, applied):
        try:
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
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
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
