"""Where the stream worker keeps its partition state: one row per partition, offset inside.

Why not Faust tables: on the embedded broker a table's recovery reads its changelog up to
`end_offsets`, which is wrong there (FACTS.md: the tail of the changelog is lost), and the
broker keeps every changelog record in memory forever. A row per partition holding the
state *and* the offset it covers is exact on any broker, and small.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "MemoryCheckpointStore",
    "PostgresCheckpointStore",
    "load_with_retries",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A partition's state as of `next_offset` (the first record it does not include).

    The state is kept serialised: a checkpoint is taken (`of`) before any await, so that
    the live state, which goes on changing while the checkpoint is written, cannot leak
    into it. JSON has no NaN or Infinity: a state that holds one is refused when taken.
    """

    consumer: str
    topic: str
    partition: int
    next_offset: int
    state_json: str
    taken_at: float

    @classmethod
    def of(
        cls,
        consumer: str,
        tp: tuple[str, int],
        next_offset: int,
        state: dict[str, Any],
        taken_at: float,
    ) -> Checkpoint:
        text = json.dumps(state, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return cls(consumer, tp[0], tp[1], next_offset, text, taken_at)

    def state(self) -> dict[str, Any]:
        state = json.loads(self.state_json)
        if not isinstance(state, dict):
            raise ValueError("a checkpoint's state is a JSON object")
        return state


class CheckpointStore(Protocol):
    """Loads and saves partition checkpoints."""

    async def load(
        self, consumer: str, partitions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], Checkpoint]: ...

    async def save(self, checkpoints: list[Checkpoint]) -> None: ...


# A restore waits this long for the database (restarted by `ioc up`, say) before it fails.
LOAD_PATIENCE = 30.0


async def load_with_retries(
    store: CheckpointStore,
    consumer: str,
    partitions: list[tuple[str, int]],
    *,
    patience: float = LOAD_PATIENCE,
) -> dict[tuple[str, int], Checkpoint]:
    """`store.load`, tried again (0.5 s, 1 s, 2 s … apart) while the database does not answer,
    for `patience` seconds: a worker assigned partitions during a short outage waits for it
    instead of crashing. Records of those partitions wait meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = 0.5
    while True:
        try:
            return await store.load(consumer, partitions)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning(
                "cannot read the checkpoints of %s (%s: %s); trying again in %.1f s",
                consumer, type(exc).__name__, exc, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class MemoryCheckpointStore:
    """In-memory store for pure tests."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int], Checkpoint] = {}

    async def load(
        self, consumer: str, partitions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], Checkpoint]:
        return {
            (topic, partition): self.rows[(consumer, topic, partition)]
            for topic, partition in partitions
            if (consumer, topic, partition) in self.rows
        }

    async def save(self, checkpoints: list[Checkpoint]) -> None:
        for cp in checkpoints:
            self.rows[(cp.consumer, cp.topic, cp.partition)] = cp


class PostgresCheckpointStore:
    """Checkpoints in the `worker_checkpoints` table; reconnects after a failure."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._url = url
        self._timeout = timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, connect_timeout=max(int(self._timeout), 1), autocommit=False
            )
        return self._conn

    async def load(
        self, consumer: str, partitions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], Checkpoint]:
        if not partitions:
            return {}
        async with self._lock, asyncio.timeout(self._timeout):
            conn = await self._connection()
            try:
                cur = await conn.execute(
                    "SELECT topic, partition, next_offset, state::text,"
                    " extract(epoch FROM taken_at)"
                    " FROM worker_checkpoints WHERE consumer = %s"
                    " AND (topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[]))",
                    (consumer, [t for t, _ in partitions], [p for _, p in partitions]),
                )
                rows = await cur.fetchall()
                await conn.commit()
            except psycopg.Error:
                await self._reset()
                raise
        return {
            (topic, partition): Checkpoint(
                consumer, topic, partition, int(offset), state, float(taken)
            )
            for topic, partition, offset, state, taken in rows
        }

    async def save(self, checkpoints: list[Checkpoint]) -> None:
        if not checkpoints:
            return
        started = time.monotonic()
        async with self._lock, asyncio.timeout(self._timeout):
            conn = await self._connection()
            try:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO worker_checkpoints"
                        " (consumer, topic, partition, next_offset, state, taken_at)"
                        " VALUES (%s, %s, %s, %s, %s, to_timestamp(%s))"
                        " ON CONFLICT (consumer, topic, partition) DO UPDATE SET"
                        " next_offset = EXCLUDED.next_offset, state = EXCLUDED.state,"
                        " taken_at = EXCLUDED.taken_at",
                        [
                            (
                                cp.consumer,
                                cp.topic,
                                cp.partition,
                                cp.next_offset,
                                cp.state_json,
                                cp.taken_at,
                            )
                            for cp in checkpoints
                        ],
                    )
                await conn.commit()
            except psycopg.Error:
                await self._reset()
                raise
        log.debug(
            "saved %d checkpoints in %.1f ms", len(checkpoints), (time.monotonic() - started) * 1000
        )

    async def _reset(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._reset()
