"""Per-recipient rate limit: at most `limit` messages in any `period` seconds (pure)."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable

__all__ = ["RateLimiter"]


class RateLimiter:
    """A sliding window of send times per key (a recipient and channel); clock injected."""

    def __init__(self, *, limit: int, period: float) -> None:
        if limit < 1 or period <= 0:
            raise ValueError("limit must be ≥ 1 and period > 0")
        self.limit = limit
        self.period = period
        self._sent: dict[Hashable, deque[float]] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        """Whether one more message to key may go out at `now`."""
        times = self._sent.get(key)
        if times is None:
            return True
        while times and times[0] <= now - self.period:
            times.popleft()
        if not times:
            del self._sent[key]
            return True
        return len(times) < self.limit

    def record(self, key: Hashable, at: float) -> None:
        """A message to key went out at `at`."""
        times = self._sent.setdefault(key, deque())
        times.append(at)
        if len(times) > 1 and times[-2] > at:  # seeded out of order: keep it sorted
            self._sent[key] = deque(sorted(times))

    def seed(self, sends: Iterable[tuple[Hashable, float]]) -> None:
        """Messages sent before a restart (from the delivery log), so a restart resets nothing."""
        for key, at in sorted(sends, key=lambda s: s[1]):
            self.record(key, at)
