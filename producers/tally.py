"""Count what happened to published events, holding only the reports still in flight."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from typing import Any, Protocol

__all__ = ["DeliveryTally", "Report"]


class Report(Protocol):
    """What a delivery report tells (producers.sdk.DeliveryReport has it)."""

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str | None: ...


class DeliveryTally:
    """Delivered, rejected by reason, failed by reason, raw records sent."""

    def __init__(self) -> None:
        self.delivered = 0
        self.raw = 0
        self.rejected: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._in_flight: set[asyncio.Future[Any]] = set()

    @property
    def done(self) -> int:
        return self.delivered + self.raw + self.rejected.total() + self.failed.total()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def count(self, report: Report) -> None:
        if report.status == "delivered":
            self.delivered += 1
        elif report.status == "rejected":
            self.rejected[report.reason or "rejected"] += 1
        else:
            self.failed[report.reason or report.status] += 1

    def reject(self, reason: str) -> None:
        """Count an event refused before it reached a publisher (e.g. a bad line)."""
        self.rejected[reason] += 1

    def track(self, report: Awaitable[Report]) -> None:
        """Count the report when it resolves."""
        future = asyncio.ensure_future(report)
        self._in_flight.add(future)
        future.add_done_callback(self._resolved)

    def track_raw(self, sent: Awaitable[Any]) -> None:
        """Count a raw record (no report: it bypassed validation) when the broker acks it."""
        future = asyncio.ensure_future(sent)
        self._in_flight.add(future)
        future.add_done_callback(self._raw_resolved)

    async def drain(self) -> None:
        """Wait until every tracked report resolved."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    def summary(self) -> str:
        """`delivered N · rejected N (reason N, …) · failed N`, raw records when any."""
        parts = [f"delivered {self.delivered:,}"]
        parts.append(f"rejected {self.rejected.total():,}{_reasons(self.rejected)}")
        parts.append(f"failed {self.failed.total():,}{_reasons(self.failed)}")
        if self.raw:
            parts.append(f"raw records {self.raw:,}")
        return " · ".join(parts)

    def _resolved(self, future: asyncio.Future[Any]) -> None:
        self._in_flight.discard(future)
        if future.cancelled():
            self.failed["cancelled"] += 1
        elif future.exception() is not None:
            self.failed[type(future.exception()).__name__] += 1
        else:
            self.count(future.result())

    def _raw_resolved(self, future: asyncio.Future[Any]) -> None:
        self._in_flight.discard(future)
        if future.cancelled():
            self.failed["cancelled"] += 1
        elif future.exception() is not None:
            self.failed["send_failed"] += 1
        else:
            self.raw += 1


def _reasons(counts: Counter[str]) -> str:
    if not counts:
        return ""
    return " (" + ", ".join(f"{reason} {n:,}" for reason, n in counts.most_common()) + ")"
