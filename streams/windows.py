"""Event-time windows: which windows an event falls in, and when a window is done.

A window [start, end) is *open* until `end` (wall clock), then *closed*: its point is
final, and a late event within `grace` revises it; after `end + grace` it is gone and a
later event for it is `too_late`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["WindowSpec"]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Tumbling when hop == size, hopping (overlapping) when hop < size; all in seconds."""

    size: float
    hop: float
    grace: float

    def starts(self, ts: float) -> list[float]:
        """Starts of every window that contains event time ts, oldest first."""
        last = math.floor(ts / self.hop) * self.hop
        count = round(self.size / self.hop)
        first = last - (count - 1) * self.hop
        return [first + i * self.hop for i in range(count) if first + i * self.hop + self.size > ts]

    def end(self, start: float) -> float:
        return start + self.size

    def expires(self, start: float) -> float:
        """Wall-clock time after which the window accepts nothing more."""
        return start + self.size + self.grace
