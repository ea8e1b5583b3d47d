"""Mergeable aggregators for KPI windows: initialize / add / merge / result.

A partial state is a small JSON-ready value, so it can be checkpointed and sent
between workers: stage 1 aggregates the events of one source partition, stage 2
merges the partials of every partition into the series' value.

Every state and result of finite inputs is finite (JSON has no Infinity, and one bad
value must never blank a screen): an average is kept as a running mean with its count,
which stays between the smallest and the largest value; a sum saturates at the largest
float, and a result there is reported as an overflow (`overflowed`).
"""

from __future__ import annotations

import bisect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AGGREGATORS", "FLOAT_MAX", "Aggregator", "overflowed", "p95"]

State = Any
FLOAT_MAX = sys.float_info.max


def overflowed(value: float | None) -> bool:
    """A result at the edge of the float range: a saturated sum (or a value that large)."""
    return value is not None and abs(value) >= FLOAT_MAX


def _saturating_sum(a: float, b: float) -> float:
    total = a + b
    return total if math.isfinite(total) else math.copysign(FLOAT_MAX, total)


@dataclass(frozen=True, slots=True)
class Aggregator:
    """How one aggregation starts, takes a value, merges two partials and reads out."""

    initialize: Callable[[], State]
    add: Callable[[State, Any, float], State]
    merge: Callable[[State, State], State]
    result: Callable[[State, float], float | None]  # (state, window seconds) -> value


def _count_add(state: int, _value: Any, _ts: float) -> int:
    return state + 1


def _sum_add(state: float, value: Any, _ts: float) -> float:
    return _saturating_sum(state, float(value))


def _weighted_mean(mean_a: float, count_a: int, mean_b: float, count_b: int) -> float:
    """The mean of two means; never overflows for finite means (it lies between them)."""
    share_b = count_b / (count_a + count_b)
    mean = mean_a + (mean_b - mean_a) * share_b
    if not math.isfinite(mean):  # mean_b - mean_a overflowed: weigh each side on its own
        mean = mean_a * (1.0 - share_b) + mean_b * share_b
    return min(max(mean, min(mean_a, mean_b)), max(mean_a, mean_b))


def _avg_add(state: list[float], value: Any, _ts: float) -> list[float]:
    # [mean, count], changed in place: stage 1 holds one state per pane.
    count = int(state[1])
    state[0] = float(value) if count == 0 else _weighted_mean(state[0], count, float(value), 1)
    state[1] = count + 1
    return state


def _avg_merge(a: list[float], b: list[float]) -> list[float]:
    count_a, count_b = int(a[1]), int(b[1])
    if count_b == 0:
        return [a[0], count_a]
    if count_a == 0:
        return [b[0], count_b]
    return [_weighted_mean(a[0], count_a, b[0], count_b), count_a + count_b]


def _avg_result(state: list[float], _seconds: float) -> float | None:
    return float(state[0]) if state[1] else None


def _min_add(state: float | None, value: Any, _ts: float) -> float:
    return value if state is None or value < state else state


def _max_add(state: float | None, value: Any, _ts: float) -> float:
    return value if state is None or value > state else state


def _min_merge(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max_merge(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _last_add(state: list[float] | None, value: Any, ts: float) -> list[float]:
    # The latest event time wins; equal times keep the larger value (deterministic merge).
    if state is None or ts > state[0] or (ts == state[0] and value > state[1]):
        return [ts, value]
    return state


def _last_merge(a: list[float] | None, b: list[float] | None) -> list[float] | None:
    if a is None:
        return b
    if b is None:
        return a
    return _last_add(a, b[1], b[0])


def _p95_add(state: list[float], value: Any, _ts: float) -> list[float]:
    bisect.insort(state, value)
    return state


def _p95_merge(a: list[float], b: list[float]) -> list[float]:
    return sorted(a + b)


def p95(sorted_values: list[float]) -> float | None:
    """Nearest-rank 95th percentile: the smallest value ≥ 95 % of the values."""
    if not sorted_values:
        return None
    rank = math.ceil(0.95 * len(sorted_values))
    return sorted_values[rank - 1]


def _distinct_add(state: list[str], value: Any, _ts: float) -> list[str]:
    key = str(value)
    position = bisect.bisect_left(state, key)
    if position == len(state) or state[position] != key:
        state.insert(position, key)
    return state


def _distinct_merge(a: list[str], b: list[str]) -> list[str]:
    return sorted(set(a) | set(b))


def _number(state: float | None, _seconds: float) -> float | None:
    return None if state is None else float(state)


AGGREGATORS: dict[str, Aggregator] = {
    "count": Aggregator(lambda: 0, _count_add, lambda a, b: a + b, _number),
    "sum": Aggregator(lambda: 0.0, _sum_add, _saturating_sum, _number),
    "avg": Aggregator(lambda: [0.0, 0], _avg_add, _avg_merge, _avg_result),
    "min": Aggregator(lambda: None, _min_add, _min_merge, _number),
    "max": Aggregator(lambda: None, _max_add, _max_merge, _number),
    "last": Aggregator(
        lambda: None, _last_add, _last_merge, lambda s, _w: None if s is None else s[1]
    ),
    "rate_per_min": Aggregator(
        lambda: 0, _count_add, lambda a, b: a + b, lambda s, seconds: s * 60.0 / seconds
    ),
    "p95": Aggregator(list, _p95_add, _p95_merge, lambda s, _w: p95(s)),
    "distinct_count": Aggregator(list, _distinct_add, _distinct_merge, lambda s, _w: float(len(s))),
}
