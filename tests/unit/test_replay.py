"""File replay: event-time order, pacing math (injected clock), bad lines counted."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from producers.replay import (
    Pacer,
    ProgressBar,
    index_file,
    read_events,
    render_progress,
    replay,
)
from producers.tally import DeliveryTally


def event(n: int, second: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "source": "his-bvdk-tinh",
        "sector": "health",
        "type": "er_admission",
        "occurred_at": f"2026-11-23T02:00:{second:02d}.000Z",
        **extra,
    }


def write_lines(path: Path, lines: list[bytes | dict[str, Any]]) -> Path:
    with path.open("wb") as out:
        for line in lines:
            out.write(line if isinstance(line, bytes) else json.dumps(line).encode())
            out.write(b"\n")
    return path


class FakeClock:
    """A clock that only moves when the pacer sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@dataclass(frozen=True)
class FakeReport:
    status: str
    reason: str | None = None


class FakeSink:
    """Records published events; refuses those of type `bad`, like the SDK would."""

    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []

    async def publish(self, event: Mapping[str, Any]) -> asyncio.Future[FakeReport]:
        self.events.append(event)
        future: asyncio.Future[FakeReport] = asyncio.get_running_loop().create_future()
        if event.get("type") == "bad":
            future.set_result(FakeReport("rejected", "unknown_type"))
        else:
            future.set_result(FakeReport("delivered"))
        return future


def test_events_come_back_in_event_time_order_ties_in_file_order(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "f.jsonl", [event(1, 30), event(2, 10), event(3, 20), event(4, 10)]
    )
    index = index_file(path)
    assert not index.sorted_already
    assert [e["event_id"] for _, _, e in read_events(index)] == ["e2", "e4", "e3", "e1"]
    assert [line for line, _, _ in read_events(index)] == [2, 4, 3, 1]


def test_a_sorted_file_is_read_in_file_order(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "f.jsonl", [event(1, 1), event(2, 2), event(3, 2)])
    index = index_file(path)
    assert index.sorted_already
    assert [e["event_id"] for _, _, e in read_events(index)] == ["e1", "e2", "e3"]


def test_offsets_in_rfc3339_are_compared_as_instants(tmp_path: Path) -> None:
    later = event(1, 0) | {"occurred_at": "2026-11-23T09:00:05+07:00"}  # 02:00:05Z
    path = write_lines(tmp_path / "f.jsonl", [later, event(2, 3)])
    assert [e["event_id"] for _, _, e in read_events(index_file(path))] == ["e2", "e1"]


def test_bad_lines_are_counted_with_their_line_numbers(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "f.jsonl",
        [
            event(1, 1),
            b"{not json",
            b"[1, 2]",
            b'"a string"',
            b"",  # blank lines are skipped, not bad
            b"\xc3\x28{}",
            event(2, 2),
        ],
    )
    index = index_file(path)
    assert len(index) == 2
    assert index.bad_count == 4
    assert [bad.line for bad in index.bad_lines] == [2, 3, 4, 6]
    assert "not an object" in index.bad_lines[1].detail


def test_events_without_a_readable_time_go_first(tmp_path: Path) -> None:
    """They cannot be placed in time; the SDK rejects them with their reason code."""
    untimed = event(1, 0) | {"occurred_at": "yesterday"}
    path = write_lines(tmp_path / "f.jsonl", [event(2, 5), untimed, event(3, 1)])
    index = index_file(path)
    assert [e["event_id"] for _, _, e in read_events(index)] == ["e1", "e3", "e2"]
    assert index.time_span() is not None


def test_an_empty_file_has_no_time_span(tmp_path: Path) -> None:
    index = index_file(write_lines(tmp_path / "f.jsonl", []))
    assert len(index) == 0 and index.time_span() is None


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        index_file(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    ("speed", "max_gap", "sleeps"),
    [
        (1.0, None, [10.0, 0.0, 50.0]),
        (2.0, None, [5.0, 0.0, 25.0]),
        (10.0, None, [1.0, 0.0, 5.0]),
        (1.0, 20.0, [10.0, 0.0, 20.0]),
        (0.0, None, []),
    ],
)
async def test_pacer_waits_the_recorded_gaps_divided_by_speed(
    speed: float, max_gap: float | None, sleeps: list[float]
) -> None:
    clock = FakeClock()
    pacer = Pacer(speed=speed, max_gap=max_gap, clock=clock, sleep=clock.sleep)
    for event_time in (100.0, 110.0, 110.0, 160.0):
        await pacer.wait(event_time)
    assert [s for s in clock.sleeps if s > 0] == [s for s in sleeps if s > 0]


async def test_pacer_does_not_accumulate_time_spent_sending() -> None:
    """Due times are kept against one origin: slow sends shorten the next wait."""
    clock = FakeClock()
    pacer = Pacer(speed=1.0, clock=clock, sleep=clock.sleep)
    await pacer.wait(0.0)
    clock.now += 3.0  # sending took 3 s
    await pacer.wait(10.0)
    clock.now += 12.0  # sending took longer than the next gap
    await pacer.wait(20.0)
    assert clock.sleeps == [7.0]


def test_pacer_refuses_negative_speed() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="speed"):
        Pacer(speed=-1.0, clock=clock, sleep=clock.sleep)


async def test_replay_publishes_in_order_and_counts_every_outcome(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "f.jsonl",
        [event(1, 20), b"oops", event(2, 10, type="bad"), event(3, 30), b"[]"],
    )
    sink = FakeSink()
    tally = DeliveryTally()
    clock = FakeClock()
    seen: list[int] = []
    sent = await replay(
        index_file(path),
        sink,
        pacer=Pacer(speed=1.0, clock=clock, sleep=clock.sleep),
        tally=tally,
        progress=seen.append,
    )
    await tally.drain()
    assert sent == 3 and seen == [1, 2, 3]
    assert [e["event_id"] for e in sink.events] == ["e2", "e1", "e3"]
    assert clock.sleeps == [10.0, 10.0]
    assert tally.delivered == 2
    assert tally.rejected == {"bad_json": 2, "unknown_type": 1}
    assert "rejected 3 (bad_json 2, unknown_type 1)" in tally.summary()


async def test_replay_stops_when_asked(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "f.jsonl", [event(n, n) for n in range(10)])
    sink = FakeSink()
    clock = FakeClock()
    sent = await replay(
        index_file(path),
        sink,
        pacer=Pacer(speed=0, clock=clock, sleep=clock.sleep),
        tally=DeliveryTally(),
        stopped=lambda: len(sink.events) >= 4,
    )
    assert sent == 4


def test_progress_line_shows_bar_share_rate_and_rejections() -> None:
    line = render_progress(500, 1000, elapsed=2.0, rejected=3)
    assert line == (
        "[###############...............]  50% 500/1,000 events · 250 ev/s · rejected 3"
    )
    assert render_progress(0, 0, elapsed=0.0, rejected=0).startswith("[" + "#" * 30 + "] 100%")


def test_progress_bar_updates_in_place_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = FakeClock()
    out = Terminal()
    bar = ProgressBar(10, stream=out, clock=clock)
    bar.update(1, 0)
    bar.update(2, 0)  # too soon: not drawn
    clock.now += 1.0
    bar.update(5, 1)
    bar.close(10, 1)
    drawn = out.getvalue()
    assert drawn.count("\r") == 3 and drawn.endswith("\n") and drawn.count("\n") == 1
    assert "10/10 events" in drawn


def test_progress_bar_prints_lines_elsewhere() -> None:
    clock = FakeClock()
    out = io.StringIO()
    bar = ProgressBar(10, stream=out, clock=clock)
    bar.update(1, 0)
    clock.now += 1.0
    bar.update(5, 0)  # within 5 s of the last line: skipped
    bar.close(10, 0)
    assert "\r" not in out.getvalue() and out.getvalue().count("\n") == 2
