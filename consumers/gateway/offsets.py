"""Where to start reading a partition for the last N seconds of records (pure).

The embedded broker answers `offsets_for_times` with offset 0 whatever the time (measured),
and its latest-offset answer is wrong (FACTS.md), so the gateway finds the first record at or
after a time itself: a binary search over offsets, reading one record per probe. Record
timestamps (producer create time) only roughly grow with the offset; the search may land a
little early or late, so the caller asks for a margin more than it needs, and the state's
dedupe makes reading a record twice harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["Probe", "first_offset_at"]

# probe(offset) -> (offset, timestamp_ms) of the first record at or after `offset`, or None.
Probe = Callable[[int], Awaitable[tuple[int, int] | None]]


async def first_offset_at(low: int, high: int, target_ms: int, probe: Probe) -> int:
    """The smallest offset in [low, high] whose record's timestamp is >= target_ms.

    `high` is the partition's high watermark (next offset to be written); returns `high`
    when every record is older than the target.
    """
    while low < high:
        middle = (low + high) // 2
        found = await probe(middle)
        if found is None:
            high = middle
            continue
        offset, timestamp = found
        if timestamp >= target_ms:
            high = middle
        else:
            low = offset + 1
    return low
