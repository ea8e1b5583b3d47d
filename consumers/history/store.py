"""The history's database side: a small read pool and bounded queries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from consumers.history.queries import Query
from foundation.auth.key_store import open_pool
from foundation.errors import DatabaseError

__all__ = ["HistoryStore", "open_read_pool"]


async def open_read_pool(
    url: str, *, timeout: float, statement_timeout: float, max_size: int = 4
) -> AsyncConnectionPool:
    """Autocommit, read-only connections whose statements the server stops after
    statement_timeout seconds; fails fast when the database does not answer."""
    return await open_pool(
        url,
        timeout=timeout,
        max_size=max_size,
        name="ioc-history",
        options=(
            f"-c statement_timeout={int(statement_timeout * 1000)}"
            " -c default_transaction_read_only=on"
        ),
    )


class HistoryStore:
    """Runs history queries; psycopg errors and timeouts become DatabaseError."""

    def __init__(self, *, pool: AsyncConnectionPool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout

    async def fetch(self, query: Query) -> list[Sequence[Any]]:
        """Every row of query, within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.connection() as conn:
                    cursor = await conn.execute(query.sql.encode(), query.params)
                    return list(await cursor.fetchall())
        except TimeoutError as exc:
            raise DatabaseError(f"query did not finish within {self._timeout:g} s") from exc
        except PoolTimeout as exc:
            raise DatabaseError("no database connection free") from exc
        except psycopg.Error as exc:
            raise DatabaseError(f"query failed: {exc}".strip()) from exc

    async def check_schema(self) -> None:
        """Fail with a clear message when the storage tables do not exist yet."""
        try:
            await self.fetch(
                Query("SELECT 1 FROM kpi_points, alert_transitions, dead_letters LIMIT 0")
            )
        except DatabaseError as exc:
            raise DatabaseError(
                f"the history needs the storage tables (run `ioc db migrate`): {exc}"
            ) from exc
