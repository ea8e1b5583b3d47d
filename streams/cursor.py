"""Where a stateful stage stands on one partition: restore, skip-covered, checkpoint, revoke.

Pure: no Kafka, no Faust. Every stateful stage of the worker (the KPI stages and the alert
stage) holds one `PartitionCursor` per partition it owns, and the Faust adapter feeds it:

- **restore**: after an assignment, the partition's checkpoint says which offset the state
  needs next (`next_offset`); without a checkpoint the state is empty and every record counts.
- **admit**: each delivered record is covered (already in the state: skip it), wanted (take
  it), or the first record after a gap that the state needed (the broker no longer has those
  records, e.g. retention): the lost offsets are reported, never skipped silently.
- **hold / release**: a taken record's delivery token (the Faust event, to acknowledge) is
  held until a durable checkpoint covers it; then it is released in offset order, so that
  what Faust commits never runs ahead of what a checkpoint holds.
- **revoke**: a partition given up forgets its held tokens unacknowledged: its next owner
  resumes from the last durable checkpoint and replays the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

__all__ = ["ASSIGNMENT_WAIT", "Admission", "Cursors", "LostRecords", "PartitionCursor"]

Token = TypeVar("Token")
# How long a record of a partition without a cursor waits for its assignment to open one.
ASSIGNMENT_WAIT = 30.0


class Admission(Enum):
    """What to do with a delivered record."""

    COVERED = "covered"  # its effect is in the state already: acknowledge and skip it
    TAKE = "take"  # process it, then hold its token until a checkpoint covers it


@dataclass(frozen=True, slots=True)
class LostRecords:
    """Records the state needed that never came: offsets first…last (both included)."""

    topic: str
    partition: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class PartitionCursor(Generic[Token]):
    """One partition of a stateful stage: the next offset its state needs, and held tokens."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.next_offset: int | None = None  # None: no checkpoint, every record counts
        self.version = 0  # counts changes of the state: records taken, timers' changes
        self._saved_version = 0  # the version the last durable checkpoint holds
        self._restored = asyncio.Event()
        self._first_pending = True  # the first record after the restore may reveal a gap
        self._held: deque[tuple[int, Token]] = deque()

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def restored(self) -> bool:
        return self._restored.is_set()

    @property
    def changed(self) -> bool:
        """The state changed since the last durable checkpoint."""
        return self.version != self._saved_version

    def mark_changed(self) -> None:
        """The state changed without a record (a timer published something, say)."""
        self.version += 1

    def restore(self, next_offset: int | None) -> None:
        """The state is as of `next_offset` (None: empty, from the first record on)."""
        self.next_offset = next_offset
        self._first_pending = True
        self._restored.set()

    async def wait_restored(self) -> None:
        """Records delivered before the checkpoint is read wait for it."""
        await self._restored.wait()

    def admit(self, offset: int) -> tuple[Admission, LostRecords | None]:
        """Covered, or taken (with the records lost before it, for the first one)."""
        expected = self.next_offset
        if expected is not None and offset < expected:
            return Admission.COVERED, None
        lost = None
        if self._first_pending:
            self._first_pending = False
            if expected is not None and offset > expected:
                lost = LostRecords(self.topic, self.partition, expected, offset - 1)
        return Admission.TAKE, lost

    def taken(self, offset: int, token: Token) -> None:
        """The record at `offset` is in the state now; its token waits for a checkpoint."""
        self.next_offset = offset + 1
        self.version += 1
        self._held.append((offset, token))

    def checkpointed(self, next_offset: int, version: int) -> list[Token]:
        """A checkpoint of the state at `version`, as of `next_offset`, is durable: the
        tokens of the records it covers, in offset order."""
        released = []
        while self._held and self._held[0][0] < next_offset:
            released.append(self._held.popleft()[1])
        self._saved_version = max(self._saved_version, version)
        return released

    def revoke(self) -> int:
        """Given up: held tokens are dropped unacknowledged (their records come again to the
        next owner); returns how many."""
        dropped = len(self._held)
        self._held.clear()
        return dropped

    @property
    def held(self) -> int:
        return len(self._held)


class Cursors(Generic[Token]):
    """The cursors of one stage, by partition, and the wait for an assignment in progress.

    A record may be delivered before the assignment signal has opened its partition's
    cursor; it waits (bounded) for it instead of being dropped: dropped, it would look
    like a record the broker lost.
    """

    def __init__(self) -> None:
        self._cursors: dict[tuple[str, int], PartitionCursor[Token]] = {}
        self._opened = asyncio.Event()

    def __iter__(self) -> Iterator[PartitionCursor[Token]]:
        return iter(list(self._cursors.values()))

    def __len__(self) -> int:
        return len(self._cursors)

    def __contains__(self, tp: object) -> bool:
        return tp in self._cursors

    def get(self, tp: tuple[str, int]) -> PartitionCursor[Token] | None:
        return self._cursors.get(tp)

    def open(self, tps: Iterable[tuple[str, int]]) -> list[PartitionCursor[Token]]:
        """New cursors (not yet restored) for the partitions not held yet."""
        opened = []
        for topic, partition in sorted(tps):
            if (topic, partition) not in self._cursors:
                cursor: PartitionCursor[Token] = PartitionCursor(topic, partition)
                self._cursors[(topic, partition)] = cursor
                opened.append(cursor)
        self._opened.set()
        self._opened = asyncio.Event()
        return opened

    def close(self, tps: Iterable[tuple[str, int]]) -> list[PartitionCursor[Token]]:
        """Forget the partitions given up (their held tokens unacknowledged)."""
        closed = [c for c in (self._cursors.pop(tp, None) for tp in tps) if c is not None]
        for cursor in closed:
            cursor.revoke()
        return closed

    async def ready(
        self, tp: tuple[str, int], *, wait: float = ASSIGNMENT_WAIT
    ) -> PartitionCursor[Token] | None:
        """The restored cursor of `tp`, after waiting for an assignment in progress (None:
        the partition is not this stage's)."""
        cursor = self._cursors.get(tp)
        if cursor is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    while cursor is None:
                        await self._opened.wait()
                        cursor = self._cursors.get(tp)
        if cursor is not None and not cursor.restored:
            await cursor.wait_restored()
            if self._cursors.get(tp) is not cursor:  # revoked while restoring
                return None
        return cursor
