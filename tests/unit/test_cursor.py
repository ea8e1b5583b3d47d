"""The partition cursor: restore, skip-covered, gaps, held tokens, checkpoints, revoke."""

from __future__ import annotations

import asyncio

import pytest

from streams.cursor import Admission, Cursors, LostRecords, PartitionCursor


def test_without_a_checkpoint_every_record_is_taken_and_no_gap_is_reported() -> None:
    cursor: PartitionCursor[str] = PartitionCursor("t", 0)
    cursor.restore(None)
    assert cursor.admit(500) == (Admission.TAKE, None)  # the earliest record left: no claim
    cursor.taken(500, "a")
    assert cursor.next_offset == 501


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        ([3, 4], [(Admission.TAKE, None), (Admission.TAKE, None)]),
        ([1, 2, 3], [(Admission.COVERED, None), (Admission.COVERED, None), (Admission.TAKE, None)]),
        ([7, 8], [(Admission.TAKE, LostRecords("t", 0, 3, 6)), (Admission.TAKE, None)]),
    ],
)
def test_after_a_restore_covered_records_are_skipped_and_a_first_gap_is_lost_records(
    offsets: list[int], expected: list[tuple[Admission, LostRecords | None]]
) -> None:
    cursor: PartitionCursor[int] = PartitionCursor("t", 0)
    cursor.restore(3)
    got = []
    for offset in offsets:
        admission = cursor.admit(offset)
        got.append(admission)
        if admission[0] is Admission.TAKE:
            cursor.taken(offset, offset)
    assert got == expected


def test_tokens_are_released_in_order_up_to_what_a_checkpoint_covers() -> None:
    cursor: PartitionCursor[int] = PartitionCursor("t", 0)
    cursor.restore(None)
    for offset in range(5):
        cursor.taken(offset, offset)
    version = cursor.version
    cursor.taken(5, 5)  # after the snapshot
    assert cursor.checkpointed(5, version) == [0, 1, 2, 3, 4]
    assert cursor.changed  # record 5 is not in that checkpoint
    assert cursor.checkpointed(6, cursor.version) == [5]
    assert not cursor.changed


def test_a_timers_change_keeps_the_cursor_changed_until_a_checkpoint_holds_it() -> None:
    cursor: PartitionCursor[int] = PartitionCursor("t", 0)
    cursor.restore(10)
    assert not cursor.changed
    cursor.mark_changed()
    version = cursor.version
    cursor.mark_changed()  # during the checkpoint's save
    assert cursor.checkpointed(10, version) == []
    assert cursor.changed


def test_a_revoke_drops_held_tokens_unacknowledged() -> None:
    cursor: PartitionCursor[int] = PartitionCursor("t", 0)
    cursor.restore(None)
    cursor.taken(0, 0)
    assert cursor.revoke() == 1
    assert cursor.held == 0


async def test_a_record_waits_for_its_partition_to_be_opened_and_restored() -> None:
    cursors: Cursors[int] = Cursors()
    waiting = asyncio.create_task(cursors.ready(("t", 0)))
    await asyncio.sleep(0)
    assert not waiting.done()
    (cursor,) = cursors.open([("t", 0)])
    await asyncio.sleep(0)
    assert not waiting.done()  # opened, not yet restored
    cursor.restore(4)
    assert await asyncio.wait_for(waiting, 1) is cursor


async def test_a_partition_that_is_never_assigned_is_not_waited_for_forever() -> None:
    cursors: Cursors[int] = Cursors()
    assert await cursors.ready(("t", 9), wait=0.05) is None


async def test_a_partition_revoked_while_restoring_is_not_handed_out() -> None:
    cursors: Cursors[int] = Cursors()
    (cursor,) = cursors.open([("t", 0)])
    waiting = asyncio.create_task(cursors.ready(("t", 0)))
    await asyncio.sleep(0)
    cursors.close([("t", 0)])
    cursor.restore(0)
    assert await asyncio.wait_for(waiting, 1) is None
