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
import itertools
import math
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AGGREGATORS", "FLOAT_MAX", "Aggregator", "as_count", "as_finite", "overflowed", "p95"]

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
    # A state read back (a checkpoint, the partials topic) as a live one, or ValueError: any
    # bytes may arrive there, and a state of the wrong shape must not reach `merge`.
    load: Callable[[Any], State]
    # Whether a loaded state can be that of `count` values (count ≥ 1).
    holds: Callable[[State, int], bool]


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


def _p95_add(state: list[list[Any]], value: Any, _ts: float) -> list[list[Any]]:
    # [distinct values ascending, their counts], changed in place: the window's exact multiset
    # in memory (and partials) that grows with its distinct values, not with its events.
    values, counts = state
    number = float(value) + 0.0  # -0.0 counts as 0.0, whichever comes first
    position = bisect.bisect_left(values, number)
    if position < len(values) and values[position] == number:
        counts[position] += 1
    else:
        values.insert(position, number)
        counts.insert(position, 1)
    return state


def _p95_merge(a: list[list[Any]], b: list[list[Any]]) -> list[list[Any]]:
    if not b[0]:
        return [list(a[0]), list(a[1])]
    if not a[0]:
        return [list(b[0]), list(b[1])]
    merged: dict[float, int] = dict(zip(a[0], a[1], strict=True))
    for value, count in zip(b[0], b[1], strict=True):
        merged[value] = merged.get(value, 0) + count
    values = sorted(merged)
    return [values, [merged[value] for value in values]]


def _p95_result(state: list[list[Any]], _seconds: float) -> float | None:
    """Nearest rank over the counted values: the same value as `p95` of every value."""
    values, counts = state
    rank = math.ceil(0.95 * sum(counts))
    seen = 0
    for value, count in zip(values, counts, strict=True):
        seen += count
        if seen >= rank:
            return float(value)
    return None


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


# ---- states read back ----------------------------------------------------------------------
# Messages name a bad value's type, never its text: a state may be megabytes, or nested deep.


def as_finite(raw: Any) -> float:
    """A JSON number read back as a finite float, or ValueError."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"a {type(raw).__name__} where a number belongs")
    try:
        number = float(raw)
    except OverflowError as exc:  # an int beyond the float range
        raise ValueError("a number beyond the float range") from exc
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def as_count(raw: Any) -> int:
    """A JSON number read back as a whole number from 0 to 2**53 (sums of them stay exact
    and fit PostgreSQL's bigint), or ValueError."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 2**53:
        raise ValueError(f"a {type(raw).__name__} where a count belongs")
    return raw


def _pair(raw: Any) -> list[Any]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise ValueError(f"a {type(raw).__name__} where a pair belongs")
    return raw


def _load_optional(raw: Any) -> float | None:
    return None if raw is None else as_finite(raw)


def _load_avg(raw: Any) -> list[float]:
    mean, count = _pair(raw)
    return [as_finite(mean), as_count(count)]


def _load_last(raw: Any) -> list[float] | None:
    if raw is None:
        return None
    ts, value = _pair(raw)
    return [as_finite(ts), as_finite(value)]


def _load_p95(raw: Any) -> list[list[Any]]:
    if not isinstance(raw, list):
        raise ValueError(f"a {type(raw).__name__} where a p95 state belongs")
    if len(raw) == 2 and isinstance(raw[0], list) and isinstance(raw[1], list):
        values = [as_finite(value) + 0.0 for value in raw[0]]
        counts = [as_count(count) for count in raw[1]]
        if len(values) != len(counts) or not all(map(operator.lt, values, values[1:])):
            raise ValueError("p95 values not ascending, or not one count each")
        if 0 in counts:
            raise ValueError("a p95 value counted 0 times")
        return [values, counts]
    # Before counted states (stage checkpoints of earlier versions): every value, sorted.
    runs = itertools.groupby(sorted(as_finite(value) + 0.0 for value in raw))
    counted = [(value, sum(1 for _ in run)) for value, run in runs]
    return [[value for value, _ in counted], [count for _, count in counted]]


def _load_distinct(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(key, str) for key in raw):
        raise ValueError(f"a {type(raw).__name__} where a distinct-count state belongs")
    if all(map(operator.lt, raw, raw[1:])):  # as written: ascending, each once
        return list(raw)
    return sorted(set(raw))


# ---- whether a state read back holds the count its partial claims --------------------------
# A partial's count and state travel side by side: a pane with values but no state would
# reach a screen as a blank.


def _holds_count(state: int, count: int) -> bool:
    return state == count


def _holds_some(state: Any, _count: int) -> bool:
    return state is not None


def _holds_any(_state: Any, _count: int) -> bool:
    return True


def _holds_avg(state: list[Any], count: int) -> bool:
    return bool(state[1] == count)


def _holds_p95(state: list[list[Any]], count: int) -> bool:
    return bool(sum(state[1]) == count)


def _holds_distinct(state: list[str], count: int) -> bool:
    return 1 <= len(state) <= count


AGGREGATORS: dict[str, Aggregator] = {
    "count": Aggregator(lambda: 0, _count_add, lambda a, b: a + b, _number, as_count, _holds_count),
    "sum": Aggregator(lambda: 0.0, _sum_add, _saturating_sum, _number, as_finite, _holds_any),
    "avg": Aggregator(lambda: [0.0, 0], _avg_add, _avg_merge, _avg_result, _load_avg, _holds_avg),
    "min": Aggregator(lambda: None, _min_add, _min_merge, _number, _load_optional, _holds_some),
    "max": Aggregator(lambda: None, _max_add, _max_merge, _number, _load_optional, _holds_some),
    "last": Aggregator(
        lambda: None,
        _last_add,
        _last_merge,
        lambda s, _w: None if s is None else s[1],
        _load_last,
        _holds_some,
    ),
    "rate_per_min": Aggregator(
        lambda: 0,
        _count_add,
        lambda a, b: a + b,
        lambda s, seconds: s * 60.0 / seconds,
        as_count,
        _holds_count,
    ),
    "p95": Aggregator(lambda: [[], []], _p95_add, _p95_merge, _p95_result, _load_p95, _holds_p95),
    "distinct_count": Aggregator(
        list,
        _distinct_add,
        _distinct_merge,
        lambda s, _w: float(len(s)),
        _load_distinct,
        _holds_distinct,
    ),
}
