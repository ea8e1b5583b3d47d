"""What `ioc up` does with its services, decided without I/O: rolls, drains, hung services.

The embedded broker keeps every record in memory (no retention). A roll replaces it with a
fresh one under a new epoch after every reader has consumed what it holds: see
`ioc/services.py` for the steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from foundation.health import DependencyDown

__all__ = [
    "CONSUMERS",
    "INTAKE",
    "RollPolicy",
    "TopicPartition",
    "behind",
    "consumers_of",
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
    """Roll when the broker's RSS passes `roll_at` of `memory_limit`, or every `interval` s."""

    memory_limit: int  # bytes; 0: never roll for memory
    roll_at: float = 0.8
    interval: float = 0.0  # seconds; 0: no timed rolls
    retry_after: float = 60.0  # seconds after an aborted roll (a drain that timed out)
    forced_retry_after: float = 15.0  # the same at the memory limit itself

    def reason(
        self, *, rss: int | None, now: float, last_roll: float, last_abort: float | None
    ) -> str | None:
        """Why a roll is due now, or None."""
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
        if self.interval and now - last_roll >= self.interval:
            return f"timer ({self.interval:g} s)"
        return None

    def forced(self, rss: int | None) -> bool:
        """At the limit itself: roll even if the drain does not finish (losing its rest)."""
        return bool(self.memory_limit) and rss is not None and rss >= self.memory_limit


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
