"""When to try a failed delivery again, and which failures are worth it (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Outcome", "RetryPolicy", "classify_http_status"]

Outcome = Literal["sent", "retry", "permanent"]


def classify_http_status(status: int) -> Outcome:
    """2xx sent; 408, 429 and 5xx are worth retrying; any other answer is permanent."""
    if 200 <= status < 300:
        return "sent"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "permanent"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff, capped, with optional jitter; `max_attempts` counts every try."""

    max_attempts: int = 8
    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.1  # ± this fraction of the delay, so many failures do not retry in step

    def delay(
        self, failures: int, *, spread: float = 0.5, retry_after: float | None = None
    ) -> float:
        """Seconds to wait after the `failures`-th failed attempt (1 = the first).

        `spread` in [0, 1] places the delay within the jitter band (0.5: no jitter); a
        server's `retry_after` is honoured when longer.
        """
        raw = min(self.cap, self.base * self.factor ** max(0, failures - 1))
        jittered = raw * (1 + self.jitter * (2 * min(1.0, max(0.0, spread)) - 1))
        return max(jittered, retry_after or 0.0)

    def gives_up(self, attempts: int) -> bool:
        """True when `attempts` tries were made and there may be no more."""
        return attempts >= self.max_attempts

    def schedule(self) -> list[float]:
        """The delays between the attempts, without jitter (for docs and tests)."""
        return [self.delay(n) for n in range(1, self.max_attempts)]
