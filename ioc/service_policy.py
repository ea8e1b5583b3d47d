"""What `ioc up` does with its services, decided without I/O: rolls, drains, hung services.

The embedded broker keeps every record in memory (no retention). A roll replaces it with a
fresh one under a new epoch after every reader has consumed what it holds: see
`ioc/services.py` for the steps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from foundation.health import DependencyDown

__all__ = [
    "CONSUMERS",
    "INTAKE",
    "CpuMeter",
    "RollPolicy",
    "TopicPartition",
    "behind",
    "consumers_of",
    "cpu_rate",
    "describe_behind",
    "hung",
    "is_simulator",
]

TopicPartition = tuple[str, int]

# The children of `ioc up` that read Kafka: after a new epoch their positions mean nothing
# (offsets of topics that are gone, cached metadata), so they are stopped before the broker
# is replaced and started again once it has its topics and its epoch record.
CONSUMERS = ("worker", "writer", "notifier", "gateway")
# The ingest API keeps running: it answers 503 `paused` and closes its producer meanwhile.
INTAKE = "ingest-api"


def is_simulator(name: str) -> bool:
    """`sim-<sector>` (one per sector) or a single simulator process."""
    return name.startswith("sim")


def consumers_of(names: Iterable[str]) -> list[str]:
    """The Kafka readers and the simulators among these children (held during a roll)."""
    return [n for n in names if n in CONSUMERS or is_simulator(n)]


@dataclass(frozen=True, slots=True)
class RollPolicy:
    """Roll when the broker's RSS passes `roll_at` of `memory_limit`, when its CPU over the
    last `cpu_window` s passes `cpu_limit` cores in an epoch at least `cpu_min_age` s old, or
    every `interval` s.

    The CPU rule is there because the embedded broker's cost per fetch grows with the record
    batches it holds: at a steady rate its CPU climbs with its age, long before its memory
    nears the limit. A roll cures only that growth, so the rule also asks for it: the CPU
    must be at least `cpu_growth` times the epoch's lowest minute after start-up (`CpuMeter`).
    A load that is simply heavy (a broker busy from its first minute, as at 2,000 ev/s) does
    not roll again and again, and neither does a young broker (`cpu_min_age`).
    """

    memory_limit: int  # bytes; 0: never roll for memory
    roll_at: float = 0.8
    interval: float = 0.0  # seconds; 0: no timed rolls
    cpu_limit: float = 0.0  # cores; 0: never roll for CPU
    cpu_window: float = 60.0  # seconds the CPU is averaged over
    cpu_min_age: float = 600.0  # seconds since the last roll before the CPU rule applies
    cpu_growth: float = 2.0  # times the epoch's lowest minute, before the CPU rule applies
    retry_after: float = 60.0  # seconds after an aborted roll (a drain that timed out)
    forced_retry_after: float = 15.0  # the same at the memory limit itself

    def reason(
        self,
        *,
        rss: int | None,
        now: float,
        last_roll: float,
        last_abort: float | None,
        cpu: float | None = None,
        cpu_floor: float | None = None,
    ) -> str | None:
        """Why a roll is due now, or None; `cpu_floor`: the epoch's lowest minute so far."""
        if last_abort is not None:
            # After a cancelled roll: a minute's pause, or at the limit a short one (never a
            # loop that pauses intake again and again).
            wait = self.forced_retry_after if self.forced(rss) else self.retry_after
            if now - last_abort < wait:
                return None
        if self.memory_limit and rss is not None and rss >= self.roll_at * self.memory_limit:
            return (
                f"memory {rss / 2**20:.0f} MiB ≥ {self.roll_at:.0%} of "
                f"{self.memory_limit / 2**20:.0f} MiB"
            )
        if (
            self.cpu_limit
            and cpu is not None
            and cpu >= self.cpu_limit
            and now - last_roll >= self.cpu_min_age
            and cpu_floor is not None
            and cpu >= self.cpu_growth * cpu_floor
        ):
            return (
                f"CPU {cpu:.0%} of a core ≥ {self.cpu_limit:.0%} over {self.cpu_window:g} s"
                f" ({cpu / max(cpu_floor, 1e-9):.1f}× its lowest minute)"
            )
        if self.interval and now - last_roll >= self.interval:
            return f"timer ({self.interval:g} s)"
        return None

    def forced(self, rss: int | None) -> bool:
        """At the limit itself: roll even if the drain does not finish (losing its rest)."""
        return bool(self.memory_limit) and rss is not None and rss >= self.memory_limit


def cpu_rate(samples: Iterable[tuple[float, float]], *, window: float) -> float | None:
    """Cores used over the last `window` s, from (time, CPU seconds) samples of one process.

    None until the samples span most of the window (a young process is not judged).
    """
    rows = sorted(samples)
    if not rows:
        return None
    now = rows[-1][0]
    inside = [row for row in rows if row[0] >= now - window]
    first, last = inside[0], inside[-1]
    span = last[0] - first[0]
    if span < 0.8 * window:
        return None
    return max(0.0, last[1] - first[1]) / span


class CpuMeter:
    """One process's cores over the last `window` s, and its lowest such minute (`floor`).

    `sample(pid, now, cpu_seconds)` takes a reading; a new pid (a roll, a restart) starts
    over. The floor counts only windows that end `settle` s or more after the process's first
    reading: its first minute is start-up (idle, then load arriving), not its steady cost.
    """

    def __init__(self, *, window: float, every: float, settle: float) -> None:
        self.window = window
        self.settle = settle
        self._samples: deque[tuple[float, float]] = deque(maxlen=int(window / every) + 2)
        self._pid: int | None = None
        self._since = 0.0
        self.rate: float | None = None
        self.floor: float | None = None

    def sample(self, pid: int | None, now: float, used: float | None) -> float | None:
        """Take a reading of `used` CPU seconds; the cores over the window (also `rate`)."""
        if pid != self._pid:
            self._samples.clear()
            self._pid, self._since, self.floor = pid, now, None
        if used is None:
            self.rate = None
            return None
        self._samples.append((now, used))
        self.rate = cpu_rate(self._samples, window=self.window)
        if self.rate is not None and now - self._since >= self.settle:
            self.floor = self.rate if self.floor is None else min(self.floor, self.rate)
        return self.rate


def hung(down: Iterable[DependencyDown], *, now: float, after: float) -> list[DependencyDown]:
    """The dependencies that have answered no probe for `after` seconds (0: never hung)."""
    if after <= 0:
        return []
    return [d for d in down if now - d.since >= after]


def behind(
    high: Mapping[TopicPartition, int], done: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Records not yet consumed per partition: high watermark minus position (0 if none)."""
    return {tp: hw - done.get(tp, 0) for tp, hw in sorted(high.items()) if hw > done.get(tp, 0)}


def describe_behind(lag: Mapping[TopicPartition, int], *, limit: int = 6) -> str:
    """`ioc.kpi[2] 14, ioc.events.health[0] 3 …` for a log line."""
    items = sorted(lag.items(), key=lambda item: -item[1])
    text = ", ".join(f"{topic}[{partition}] {n}" for (topic, partition), n in items[:limit])
    more = len(items) - limit
    return text + (f" and {more} more" if more > 0 else "")
