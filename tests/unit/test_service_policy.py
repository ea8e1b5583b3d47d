"""Service decisions (pure): when the broker is rolled, drain arithmetic, hung services; and
the intake pause files."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.health import DependencyDown
from foundation.intake import (
    IntakeAck,
    IntakePause,
    clear_pause,
    control_dir,
    read_ack,
    read_pause,
    write_ack,
    write_pause,
)
from ioc.service_policy import (
    CpuMeter,
    RollPolicy,
    behind,
    consumers_of,
    cpu_rate,
    describe_behind,
    hung,
)

MiB = 2**20


@pytest.mark.parametrize(
    ("rss", "now", "last_abort", "due"),
    [
        (100 * MiB, 10.0, None, False),  # far below 80 % of 1 GiB
        (819 * MiB, 10.0, None, False),
        (820 * MiB, 10.0, None, True),  # 80 % of 1024 MiB is 819.2 MiB
        (900 * MiB, 10.0, 5.0, False),  # a roll was cancelled 5 s ago: wait a minute
        (900 * MiB, 70.0, 5.0, True),  # …and try again after it
        (1024 * MiB, 10.0, 5.0, False),  # at the limit itself: a short wait (no loop)…
        (1024 * MiB, 21.0, 5.0, True),  # …of 15 s
        (None, 10.0, None, False),  # no sample
    ],
)
def test_memory_rolls_at_the_fraction_of_the_limit(
    rss: int | None, now: float, last_abort: float | None, due: bool
) -> None:
    policy = RollPolicy(memory_limit=1024 * MiB, roll_at=0.8)
    reason = policy.reason(rss=rss, now=now, last_roll=0.0, last_abort=last_abort)
    assert (reason is not None) == due
    if due:
        assert reason is not None and reason.startswith("memory")


def test_timed_rolls_and_no_limit() -> None:
    """interval > 0 rolls every interval; memory_limit 0 never rolls for memory."""
    policy = RollPolicy(memory_limit=0, interval=3600.0)
    assert policy.reason(rss=10**12, now=3599.0, last_roll=0.0, last_abort=None) is None
    assert policy.reason(rss=10**12, now=3600.0, last_roll=0.0, last_abort=None) == (
        "timer (3600 s)"
    )
    assert not policy.forced(10**12)


@pytest.mark.parametrize(
    ("cpu", "floor", "now", "last_roll", "due"),
    [
        (0.59, 0.1, 900.0, 0.0, False),  # under 60 % of a core
        (0.60, 0.1, 900.0, 0.0, True),
        (1.30, 0.1, 900.0, 0.0, True),
        (1.30, 0.1, 599.0, 0.0, False),  # a young broker that is busy is left alone…
        (1.30, 0.1, 1200.0, 700.0, False),  # …also after a roll
        (None, None, 900.0, 0.0, False),  # not a minute of samples yet
        (0.95, 0.69, 900.0, 0.0, False),  # busy from its first minute: load, not age
        (1.40, 0.69, 900.0, 0.0, True),  # …until it has doubled
        (0.80, None, 900.0, 0.0, False),  # no lowest minute known
    ],
)
def test_cpu_rolls_an_aged_broker_whose_cpu_grew_past_the_limit(
    cpu: float | None, floor: float | None, now: float, last_roll: float, due: bool
) -> None:
    """The broker's cost grows with what it holds: that growth, not a heavy load, rolls it."""
    policy = RollPolicy(memory_limit=1024 * MiB, cpu_limit=0.6)
    reason = policy.reason(
        rss=10 * MiB, now=now, last_roll=last_roll, last_abort=None, cpu=cpu, cpu_floor=floor
    )
    assert (reason is not None) == due
    if due:
        assert reason is not None and reason.startswith("CPU")
    assert (
        RollPolicy(memory_limit=0).reason(
            rss=None, now=10**6, last_roll=0.0, last_abort=None, cpu=5.0, cpu_floor=0.1
        )
        is None
    )  # cpu_limit 0: never for CPU


def test_cpu_rate_over_the_window() -> None:
    """Cores over the last window; None until the samples span most of it."""
    samples = [(float(t), 0.5 * t) for t in range(0, 125, 5)]  # half a core throughout
    assert cpu_rate(samples, window=60.0) == pytest.approx(0.5)
    assert cpu_rate(samples[:8], window=60.0) is None  # 35 s of samples
    assert cpu_rate([], window=60.0) is None
    rising = [(float(t), 0.01 * t * t) for t in range(0, 125, 5)]  # faster and faster
    assert cpu_rate(rising, window=60.0) == pytest.approx((144 - 36) / 60)


def test_forced_only_at_the_limit() -> None:
    policy = RollPolicy(memory_limit=1000, roll_at=0.5)
    assert not policy.forced(999) and policy.forced(1000) and not policy.forced(None)


def test_behind_counts_what_is_left_per_partition() -> None:
    """High watermark minus position; a partition nobody read counts whole; none ahead."""
    high = {("a", 0): 10, ("a", 1): 5, ("b", 0): 0, ("b", 1): 7}
    done = {("a", 0): 10, ("a", 1): 2, ("b", 1): 9}
    assert behind(high, done) == {("a", 1): 3}
    assert behind({("c", 0): 4}, {}) == {("c", 0): 4}
    assert "a[1] 3" in describe_behind(behind(high, done))


def test_describe_behind_lists_the_largest_first_and_counts_the_rest() -> None:
    lag = {("t", p): p + 1 for p in range(8)}
    text = describe_behind(lag, limit=2)
    assert text == "t[7] 8, t[6] 7 and 6 more"


def test_the_readers_and_simulators_are_held_the_ingest_api_is_not() -> None:
    names = ["worker", "writer", "notifier", "gateway", "ingest-api", "sim-health", "simulators"]
    assert consumers_of(names) == [
        "worker", "writer", "notifier", "gateway", "sim-health", "simulators",
    ]  # fmt: skip


def test_pause_and_ack_files_round_trip(tmp_path: Path) -> None:
    """The pause `ioc up` writes is what the ingest API reads; its ack likewise."""
    assert read_pause(tmp_path) is None
    pause = IntakePause(token="t1", reason="roll", since=12.5, retry_after=5)
    write_pause(tmp_path, pause)
    assert read_pause(tmp_path) == pause
    write_ack(tmp_path, IntakeAck(token="t1", pid=42, in_flight=0, at=13.0))
    assert read_ack(tmp_path, 42) == IntakeAck(token="t1", pid=42, in_flight=0, at=13.0)
    assert read_ack(tmp_path, 43) is None
    clear_pause(tmp_path)
    assert read_pause(tmp_path) is None
    clear_pause(tmp_path)  # twice is fine


@pytest.mark.parametrize("text", ["", "[1]", '{"token": "x"}', '{"token": "x", "reason": "r", '
                                  '"since": "soon", "retry_after": 1}'])  # fmt: skip
def test_a_damaged_pause_file_is_no_pause(tmp_path: Path, text: str) -> None:
    folder = control_dir(tmp_path)
    folder.mkdir()
    (folder / "intake-pause.json").write_text(text)
    assert read_pause(tmp_path) is None


@pytest.mark.parametrize(
    ("after", "now", "expected"),
    [(60.0, 100.0, []), (60.0, 170.0, ["broker"]), (60.0, 200.0, ["broker", "database"]),
     (0.0, 10_000.0, [])],
)  # fmt: skip
def test_a_service_is_hung_after_answering_no_probe_for_a_while(
    after: float, now: float, expected: list[str]
) -> None:
    """Down since 100 (broker) and 130 (database); 0 switches the check off."""
    down = [DependencyDown("broker", 100.0, "timeout"), DependencyDown("database", 130.0, "x")]
    assert [d.dependency for d in hung(down, now=now, after=after)] == expected


def test_the_cpu_floor_leaves_out_start_up_and_starts_over_with_a_new_process() -> None:
    """The growth rule compares with the lowest steady minute, not the idle start."""
    meter = CpuMeter(window=60.0, every=5.0, settle=120.0)
    used = 0.0
    for t in range(0, 121, 5):  # idle for 30 s, then 0.9 of a core
        used += 0.0 if t <= 30 else 0.9 * 5
        meter.sample(7, float(t), used)
    assert meter.rate is not None and meter.rate > 0.6
    assert meter.floor is not None and meter.floor > 0.8  # not the half-idle first minute
    for t in range(125, 301, 5):  # the same load: no growth
        used += 0.9 * 5
        meter.sample(7, float(t), used)
    assert meter.floor == pytest.approx(0.9)
    assert meter.sample(8, 305.0, 1.0) is None  # a new broker: its own minutes, its own floor
    assert meter.floor is None and meter.rate is None
    assert meter.sample(8, 310.0, None) is None  # not readable
