"""Mergeable aggregators for KPI windows: initialize / add / merge / result.

A partial state is a small JSON-ready value, so it can be checkpointed and sent
between workers: stage 1 aggregates the events of one source partition, stage 2
merges the partials of every partition into the series' value.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AGGREGATORS", "Aggregator", "p95"]

State = Any


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
    return state + float(value)


def _avg_add(state: list[float], value: Any, _ts: float) -> list[float]:
    state[0] += value
    state[1] += 1
    return state


def _avg_result(state: list[float], _seconds: float) -> float | None:
    return state[0] / state[1] if state[1] else None


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
    "sum": Aggregator(lambda: 0.0, _sum_add, lambda a, b: a + b, _number),
    "avg": Aggregator(
        lambda: [0.0, 0], _avg_add, lambda a, b: [a[0] + b[0], a[1] + b[1]], _avg_result
    ),
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
