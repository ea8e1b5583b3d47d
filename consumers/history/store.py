"""The history's database side: a small read pool and bounded queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from consumers.history.queries import Query
from foundation.auth.key_store import open_pool
from foundation.errors import DatabaseError, HistoryQueryError
from foundation.log_throttle import LogThrottle

__all__ = ["HistoryStore", "open_read_pool"]

log = logging.getLogger(__name__)


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
    """Runs history queries; a failing database becomes DatabaseError (503), a value the
    database refuses becomes HistoryQueryError `bad_parameter` (400). Neither carries the
    database's own message (it is logged): answers must not show it."""

    def __init__(self, *, pool: AsyncConnectionPool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._log = LogThrottle(log)

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
        except (psycopg.DataError, UnicodeError) as exc:
            # The parameters are checked before (NUL, surrogates, time range): reaching here
            # is a gap in those checks, so it is logged, but it is still the request's value.
            self._log.warning("refused", "the database refused a history query's value: %s", exc)
            raise HistoryQueryError(
                "bad_parameter", "a parameter holds a value the database cannot take"
            ) from exc
        except psycopg.Error as exc:
            raise DatabaseError(f"query failed: {_first_line(exc)}") from exc

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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
