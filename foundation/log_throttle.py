"""Rate-limited logging for what outsiders can trigger (poison records, refused tokens).

A hostile sender must not be able to fill the log: the first occurrence of each key is
logged at once, later ones at most once per `interval` seconds, with the number left out
since the last line.

    throttle = LogThrottle(log, interval=60.0)
    throttle.warning("poison:ioc.kpi", "skipped a poison record of %s: %s", topic, reason)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LogThrottle"]


class LogThrottle:
    """Logs each key's first message, then at most one per interval (with a count)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 60.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._max_keys = max_keys
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `key` was logged within the interval; True if logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if last is None and len(self._last) >= self._max_keys:
            # Keys come from a bounded set in practice; if not, forget the oldest.
            oldest = min(self._last, key=self._last.__getitem__)
            del self._last[oldest]
            self._suppressed.pop(oldest, None)
        self._last[key] = now
        left_out = self._suppressed.pop(key, 0)
        if left_out:
            message += " (%d more like it in the last %.0f s not logged)"
            args = (*args, left_out, now - last if last is not None else 0.0)
        self._logger.log(level, message, *args)
        return True

    def info(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.INFO, key, message, *args)

    def warning(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)
