"""The delivery log in PostgreSQL (`notification_deliveries`): outbox, claims, attempts.

The consumer records every delivery of a batch of transitions (pending or held) in one
transaction *before* it commits the Kafka offsets; a re-read transition hits the unique key
(`idempotency_key, recipient, channel`) and adds nothing. The dispatcher *claims* due rows
with `SELECT … FOR UPDATE SKIP LOCKED` and keeps them locked while it sends, so two
notifiers never send the same row, and a notifier killed mid-send leaves them pending for
the next one. A row marked sent is never selected again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

from alerts.notifier.grouping import PendingDelivery
from alerts.routing import PlannedDelivery, Target, needs_history
from foundation.contract.alerts import AlertTransition
from foundation.errors import DatabaseError

__all__ = [
    "Claim",
    "ClaimedDelivery",
    "DeliveryStore",
    "PostgresDeliveryStore",
    "Recorded",
    "digest_id",
]

Planner = Callable[[AlertTransition, list[Target]], list[PlannedDelivery]]


@dataclass(frozen=True, slots=True)
class Recorded:
    """A delivery row this batch added (for metrics): its channel and status."""

    channel: str
    status: str
    hold_reason: str | None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A pending row, locked for sending."""

    id: int
    idempotency_key: str
    recipient: str
    channel: str
    address: str
    attempts: int
    payload: dict[str, Any]


def digest_id(rows: Sequence[ClaimedDelivery]) -> str:
    """A stable id of the message carrying these rows (the same on every retry)."""
    keys = sorted(f"{r.idempotency_key}|{r.recipient}|{r.channel}" for r in rows)
    return "d-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]


class Claim(Protocol):
    """Locked rows being sent; exactly one outcome is recorded before the claim ends."""

    rows: list[ClaimedDelivery]

    async def sent(self, digest: str, *, at: float) -> None: ...

    async def retry(self, error: str, *, at: float, due_at: float) -> None: ...

    async def failed(self, error: str, *, at: float) -> None: ...

    async def held(self, reason: str, *, at: float) -> None: ...


class DeliveryStore(Protocol):
    """What the notifier needs from the delivery log."""

    async def record(
        self,
        transitions: Sequence[AlertTransition],
        plan: Planner,
        *,
        now: float,
        group_wait: float,
    ) -> list[Recorded]: ...

    async def pending(self) -> list[PendingDelivery]: ...

    def claim(self, ids: Sequence[int]) -> AbstractAsyncContextManager[Claim]: ...

    async def recent_sends(self, since: float) -> list[tuple[tuple[str, str], float]]: ...


_INSERT = """
INSERT INTO notification_deliveries (
    idempotency_key, recipient, channel, address, fingerprint, seq, transition, severity,
    sector, escalation_level, status, hold_reason, payload, created_at, due_at
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s))
ON CONFLICT (idempotency_key, recipient, channel) DO NOTHING
RETURNING id
"""

# Who was told of this alert in its current episode (since its last fire/refire): they hear
# of its resolution or acknowledgement. Held and failed deliveries never reached anyone.
_NOTIFIED_BEFORE = """
SELECT DISTINCT recipient, channel, address
FROM notification_deliveries
WHERE fingerprint = %(fp)s AND seq < %(seq)s AND status IN ('sent', 'pending')
  AND seq >= COALESCE((
      SELECT max(seq) FROM notification_deliveries
      WHERE fingerprint = %(fp)s AND seq < %(seq)s AND transition IN ('fire', 'refire')), 0)
"""

_CLAIM = """
SELECT id, idempotency_key, recipient, channel, address, attempts, payload
FROM notification_deliveries
WHERE id = ANY(%s) AND status = 'pending'
ORDER BY id
FOR UPDATE SKIP LOCKED
"""


class PostgresDeliveryStore:
    """The delivery log over a small connection pool; every call has a timeout."""

    def __init__(self, url: str, *, timeout: float, pool_size: int = 4) -> None:
        self._timeout = timeout
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            check=AsyncConnectionPool.check_connection,
        )

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
        except Exception as exc:  # PoolTimeout and friends; say which database
            raise DatabaseError(f"notifier: cannot open database connections: {exc}") from exc

    async def close(self) -> None:
        await self._pool.close(timeout=self._timeout)

    async def record(
        self,
        transitions: Sequence[AlertTransition],
        plan: Planner,
        *,
        now: float,
        group_wait: float,
    ) -> list[Recorded]:
        added: list[Recorded] = []
        async with (
            asyncio.timeout(self._timeout * 3),
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            for t in transitions:
                before: list[Target] = []
                if needs_history(t):
                    cur = await conn.execute(_NOTIFIED_BEFORE, {"fp": t.fingerprint, "seq": t.seq})
                    before = [Target(r, c, a) for r, c, a in await cur.fetchall()]
                payload = json.dumps(t.to_json(), ensure_ascii=False, allow_nan=False)
                for delivery in plan(t, before):
                    target = delivery.target
                    cur = await conn.execute(
                        _INSERT,
                        (
                            t.idempotency_key,
                            target.recipient,
                            target.channel,
                            target.address,
                            t.fingerprint,
                            t.seq,
                            t.transition,
                            t.severity,
                            t.sector,
                            t.escalation_level,
                            delivery.status,
                            delivery.hold_reason,
                            payload,
                            now,
                            now + group_wait,
                        ),
                    )
                    if await cur.fetchone() is not None:
                        added.append(
                            Recorded(target.channel, delivery.status, delivery.hold_reason)
                        )
        return added

    async def pending(self) -> list[PendingDelivery]:
        async with asyncio.timeout(self._timeout), self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, recipient, channel, address, extract(epoch FROM due_at)::float8"
                " FROM notification_deliveries WHERE status = 'pending'"
            )
            return [PendingDelivery(*row) for row in await cur.fetchall()]

    @asynccontextmanager
    async def claim(self, ids: Sequence[int]) -> AsyncIterator[_PostgresClaim]:
        async with self._pool.connection() as conn, conn.transaction():
            async with asyncio.timeout(self._timeout):
                cur = await conn.execute(_CLAIM, (list(ids),))
                rows = [ClaimedDelivery(*row) for row in await cur.fetchall()]
            yield _PostgresClaim(conn, rows, self._timeout)

    async def recent_sends(self, since: float) -> list[tuple[tuple[str, str], float]]:
        """One (recipient, channel) and time per message sent since `since`."""
        async with asyncio.timeout(self._timeout), self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT recipient, channel, max(extract(epoch FROM sent_at))::float8"
                " FROM notification_deliveries"
                " WHERE status = 'sent' AND sent_at > to_timestamp(%s)"
                " GROUP BY recipient, channel, digest_id",
                (since,),
            )
            return [((r, c), at) for r, c, at in await cur.fetchall()]


class _PostgresClaim:
    def __init__(
        self, conn: psycopg.AsyncConnection[Any], rows: list[ClaimedDelivery], timeout: float
    ) -> None:
        self._conn = conn
        self.rows = rows
        self._timeout = timeout
        self._ids = [r.id for r in rows]

    async def _update(self, assignments: str, params: dict[str, Any]) -> None:
        async with asyncio.timeout(self._timeout):
            await self._conn.execute(
                f"UPDATE notification_deliveries SET {assignments} WHERE id = ANY(%(ids)s)",  # noqa: S608 - fixed fragments
                {"ids": self._ids, **params},
            )

    _ATTEMPT = (
        "attempts = attempts + 1, last_attempt_at = to_timestamp(%(at)s),"
        " first_attempt_at = COALESCE(first_attempt_at, to_timestamp(%(at)s))"
    )

    async def sent(self, digest: str, *, at: float) -> None:
        await self._update(
            f"status = 'sent', digest_id = %(digest)s, sent_at = to_timestamp(%(at)s),"
            f" {self._ATTEMPT}",
            {"digest": digest, "at": at},
        )

    async def retry(self, error: str, *, at: float, due_at: float) -> None:
        await self._update(
            f"last_error = %(error)s, due_at = to_timestamp(%(due)s), {self._ATTEMPT}",
            {"error": error, "at": at, "due": due_at},
        )

    async def failed(self, error: str, *, at: float) -> None:
        await self._update(
            f"status = 'failed', last_error = %(error)s, {self._ATTEMPT}",
            {"error": error, "at": at},
        )

    async def held(self, reason: str, *, at: float) -> None:
        await self._update(
            "status = 'held', hold_reason = %(reason)s, last_attempt_at = to_timestamp(%(at)s)",
            {"reason": reason, "at": at},
        )


def is_database_error(exc: BaseException) -> bool:
    """Errors the notifier survives by retrying later (the database restarts, times out…)."""
    return isinstance(exc, psycopg.Error | TimeoutError | DatabaseError) or type(
        exc
    ).__module__.startswith("psycopg_pool")
