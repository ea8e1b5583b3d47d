"""The `api_keys` table (migration 0001): create, list, revoke, look up; every call bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from foundation.auth.api_keys import ApiKeyRecord, KeyId, NewApiKey, generate_key
from foundation.errors import DatabaseError, DatabaseUnreachableError
from foundation.probes import redact_url

__all__ = ["KeyStore", "open_pool"]

_ID_ATTEMPTS = 3


async def open_pool(
    url: str,
    *,
    timeout: float,
    max_size: int = 4,
    name: str = "ioc-keys",
    options: str | None = None,
) -> AsyncConnectionPool:
    """A small pool of autocommit connections; fails fast when the database does not answer.

    `options` are server settings for every connection (libpq `options`, e.g. `-c …`).
    """
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(int(timeout), 1)}
    if options:
        kwargs["options"] = options
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        timeout=timeout,
        kwargs=kwargs,
        name=name,
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except PoolTimeout as exc:
        await pool.close()
        raise DatabaseUnreachableError(
            f"cannot connect to {redact_url(url)} within {timeout:g} s"
        ) from exc
    return pool


class KeyStore:
    """API keys in PostgreSQL; psycopg errors and timeouts become DatabaseError."""

    def __init__(self, *, pool: AsyncConnectionPool, timeout: float = 5.0) -> None:
        self._pool = pool
        self._timeout = timeout

    async def check_schema(self) -> None:
        """Fail with a clear message when `ioc db migrate` has not created the table."""
        async with self._connection() as conn:
            await conn.execute("SELECT 1 FROM api_keys LIMIT 0")

    async def create(self, *, source: str, sector: str) -> tuple[NewApiKey, ApiKeyRecord]:
        """Store a new key for source; the caller shows `NewApiKey.token` once."""
        for _attempt in range(_ID_ATTEMPTS):
            new = generate_key()
            try:
                async with self._connection() as conn:
                    cursor = await conn.execute(
                        "INSERT INTO api_keys (key_id, source, sector, secret_hash)"
                        " VALUES (%s, %s, %s, %s)"
                        " RETURNING key_id, source, sector, secret_hash, created_at, revoked_at",
                        (new.key_id, source, sector, new.secret_hash),
                    )
                    row = await cursor.fetchone()
            except DatabaseError as exc:
                if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                    continue  # a 48-bit id collided; draw another
                raise
            if row is None:
                raise DatabaseError("INSERT … RETURNING gave no row")
            return new, _record(row)
        raise DatabaseError(f"no free key id after {_ID_ATTEMPTS} attempts")

    async def lookup(self, key_id: KeyId) -> ApiKeyRecord | None:
        """The key with this id (revoked or not), or None."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT key_id, source, sector, secret_hash, created_at, revoked_at"
                " FROM api_keys WHERE key_id = %s",
                (key_id,),
            )
            row = await cursor.fetchone()
        return None if row is None else _record(row)

    async def list(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                "SELECT key_id, source, sector, secret_hash, created_at, revoked_at"
                " FROM api_keys ORDER BY created_at, key_id"
            )
            rows = await cursor.fetchall()
        return [_record(row) for row in rows]

    async def revoke(self, key_id: KeyId) -> ApiKeyRecord | None:
        """Mark the key revoked (idempotent: the first revoke time stays); None if unknown."""
        async with self._connection() as conn:
            cursor = await conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                " WHERE key_id = %s"
                " RETURNING key_id, source, sector, secret_hash, created_at, revoked_at",
                (key_id,),
            )
            row = await cursor.fetchone()
        return None if row is None else _record(row)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        try:
            async with asyncio.timeout(self._timeout), self._pool.connection() as conn:
                yield conn
        except TimeoutError as exc:
            raise DatabaseError(f"the key store did not answer within {self._timeout:g} s") from exc
        except PoolTimeout as exc:
            raise DatabaseError(f"no database connection free within {self._timeout:g} s") from exc
        except psycopg.errors.UndefinedTable as exc:
            raise DatabaseError("table api_keys is missing: run `ioc db migrate`") from exc
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseError(f"key store query failed: {first}") from exc


def _record(row: tuple[Any, ...]) -> ApiKeyRecord:
    key_id, source, sector, secret_hash, created_at, revoked_at = row
    created: datetime | None = created_at
    revoked: datetime | None = revoked_at
    return ApiKeyRecord(KeyId(key_id), source, sector, secret_hash, created, revoked)
