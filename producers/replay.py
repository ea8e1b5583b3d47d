"""Re-publish a JSONL file of events in event-time order, paced by the recorded gaps.

Two passes, so a large file is never held in memory as objects: the first reads each
line once and keeps, per event line, its event time, byte offset and line number in
compact arrays (24 bytes); after sorting, the second pass reads the events back one at
a time by seeking. A line that is not a JSON object is counted as rejected `bad_json`
with its line number and skipped, never a traceback.
"""

from __future__ import annotations

import json
import math
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

from producers.tally import DeliveryTally, Report

__all__ = [
    "BadLine",
    "EventSink",
    "Pacer",
    "ProgressBar",
    "ReplayIndex",
    "index_file",
    "read_events",
    "render_progress",
    "replay",
]

KEPT_BAD_LINES: Final = 1000  # line numbers remembered for the summary; all are counted
UNTIMED: Final = -math.inf  # sort key of events whose occurred_at cannot be read: first


class EventSink(Protocol):
    """Where replayed events go (producers.sdk.Publisher is one)."""

    def publish(self, event: Mapping[str, Any]) -> Awaitable[Awaitable[Report]]: ...


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not a JSON object."""

    line: int
    detail: str


@dataclass
class ReplayIndex:
    """Where each event of a file is and when it happened; the bad lines found."""

    path: Path
    times: array[float] = field(default_factory=lambda: array("d"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lines: array[int] = field(default_factory=lambda: array("q"))
    bad_lines: list[BadLine] = field(default_factory=list)  # the first KEPT_BAD_LINES
    bad_count: int = 0
    sorted_already: bool = True

    def __len__(self) -> int:
        return len(self.times)

    def order(self) -> Sequence[int]:
        """Positions in event-time order (file order among equal times)."""
        if self.sorted_already:  # the common case (simulator output): no sort, no list
            return range(len(self.times))
        return sorted(range(len(self.times)), key=self.times.__getitem__)

    def time_span(self) -> tuple[float, float] | None:
        """First and last readable event time, or None when no event has one."""
        first = min((t for t in self.times if math.isfinite(t)), default=None)
        return None if first is None else (first, max(self.times))

    def _bad(self, line: int, detail: str) -> None:
        self.bad_count += 1
        if len(self.bad_lines) < KEPT_BAD_LINES:
            self.bad_lines.append(BadLine(line, detail))


def index_file(path: Path) -> ReplayIndex:
    """First pass: time and offset of every event line; raises OSError if unreadable."""
    index = ReplayIndex(path)
    previous = UNTIMED
    offset = 0
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            here, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            obj, problem = _decode(raw)
            if obj is None:
                index._bad(number, problem)
                continue
            event_time = _event_time(obj)
            if event_time < previous:
                index.sorted_already = False
            previous = event_time
            index.times.append(event_time)
            index.offsets.append(here)
            index.lines.append(number)
    return index


def read_events(index: ReplayIndex) -> Iterator[tuple[int, float, dict[str, Any]]]:
    """Second pass: (line number, event time, event) in event-time order."""
    with index.path.open("rb") as lines:
        for position in index.order():
            lines.seek(index.offsets[position])
            obj, _problem = _decode(lines.readline())
            if obj is not None:  # None only if the file changed under us
                yield index.lines[position], index.times[position], obj


class Pacer:
    """Waits so events go out at their recorded gaps divided by `speed` (0: no waiting).

    Times are kept against one origin, not gap by gap, so sleeping late never accumulates.
    With `max_gap`, an idle stretch longer than that (after dividing by speed) is cut short.
    """

    def __init__(
        self,
        *,
        speed: float,
        max_gap: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        if speed < 0 or not math.isfinite(speed):
            raise ValueError("speed must be 0 (no waiting) or a positive factor")
        self._speed = speed
        self._max_gap = max_gap
        self._clock = clock
        self._sleep = sleep
        self._origin: tuple[float, float] | None = None  # (event time, clock time)
        self._last = UNTIMED

    async def wait(self, event_time: float) -> None:
        if self._speed == 0 or not math.isfinite(event_time):
            return
        if self._origin is None:
            self._origin = (event_time, self._clock())
            self._last = event_time
            return
        origin_event, origin_clock = self._origin
        gap = event_time - self._last
        if self._max_gap is not None and gap / self._speed > self._max_gap:
            origin_event += gap - self._max_gap * self._speed
            self._origin = (origin_event, origin_clock)
        self._last = event_time
        delay = origin_clock + (event_time - origin_event) / self._speed - self._clock()
        if delay > 0:
            await self._sleep(delay)


async def replay(
    index: ReplayIndex,
    sink: EventSink,
    *,
    pacer: Pacer,
    tally: DeliveryTally,
    progress: Callable[[int], None] | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> int:
    """Publish the indexed events in time order; returns how many were handed to the sink."""
    for _ in range(index.bad_count):
        tally.reject("bad_json")
    sent = 0
    for _line, event_time, event in read_events(index):
        if stopped():
            break
        await pacer.wait(event_time)
        if stopped():
            break
        tally.track(await sink.publish(event))
        sent += 1
        if progress is not None:
            progress(sent)
    return sent


def render_progress(done: int, total: int, *, elapsed: float, rejected: int) -> str:
    """`[#####.....]  50% 5,000/10,000 events · 1,200 ev/s · rejected 3`."""
    width = 30
    share = done / total if total else 1.0
    filled = min(width, int(width * share))
    rate = done / elapsed if elapsed > 0 else 0.0
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {done:,}/{total:,} events"
        f" · {rate:,.0f} ev/s · rejected {rejected:,}"
    )


class ProgressBar:
    """One line on a terminal, updated in place; a line every few seconds elsewhere."""

    def __init__(
        self, total: int, *, stream: TextIO, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._total = total
        self._stream = stream
        self._clock = clock
        self._tty = stream.isatty()
        self._interval = 0.2 if self._tty else 5.0
        self._started = clock()
        self._next = self._started

    def update(self, done: int, rejected: int, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now < self._next:
            return
        self._next = now + self._interval
        line = render_progress(done, self._total, elapsed=now - self._started, rejected=rejected)
        self._stream.write(f"\r{line}\x1b[K" if self._tty else f"{line}\n")
        self._stream.flush()

    def close(self, done: int, rejected: int) -> None:
        self.update(done, rejected, force=True)
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


def _decode(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return None, str(exc)[:200]
    if type(obj) is not dict:
        return None, f"a JSON {type(obj).__name__}, not an object"
    return obj, ""


def _event_time(obj: dict[str, Any]) -> float:
    stamp = obj.get("occurred_at")
    if type(stamp) is not str:
        return UNTIMED
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return UNTIMED
    return parsed.timestamp() if parsed.tzinfo is not None else UNTIMED
