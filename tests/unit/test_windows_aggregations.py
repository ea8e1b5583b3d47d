"""Window assignment and every aggregation, against brute-force references."""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.aggregations import AGGREGATORS, FLOAT_MAX, overflowed, p95
from streams.windows import WindowSpec


@pytest.mark.parametrize(
    ("spec", "ts", "starts"),
    [
        (WindowSpec(60, 60, 0), 0.0, [0.0]),
        (WindowSpec(60, 60, 0), 59.999, [0.0]),
        (WindowSpec(60, 60, 0), 60.0, [60.0]),
        (WindowSpec(3600, 300, 0), 7200.5, [3900.0 + 300 * i for i in range(12)]),
        (WindowSpec(600, 300, 0), 299.0, [-300.0, 0.0]),
    ],
)
def test_window_starts(spec: WindowSpec, ts: float, starts: list[float]) -> None:
    assert spec.starts(ts) == starts


@settings(max_examples=300)
@given(
    size_hops=st.sampled_from([(60, 60), (300, 60), (3600, 300), (86400, 3600), (900, 900)]),
    ts=st.floats(min_value=0, max_value=2e9, allow_nan=False),
)
def test_every_window_of_an_event_contains_it_and_no_other_does(
    size_hops: tuple[int, int], ts: float
) -> None:
    size, hop = size_hops
    spec = WindowSpec(size, hop, 120)
    starts = spec.starts(ts)
    assert len(starts) == size // hop
    assert all(start <= ts < start + size for start in starts)
    assert starts[0] - hop + size <= ts  # the window before the first does not hold ts


def _reference(aggregation: str, values: list[tuple[float, float]], seconds: float) -> float | None:
    nums = [v for _ts, v in values]
    if not nums:
        return 0.0 if aggregation in ("count", "sum", "rate_per_min", "distinct_count") else None
    if aggregation == "count":
        return float(len(nums))
    if aggregation == "sum":
        return math.fsum(nums)
    if aggregation == "avg":
        return math.fsum(nums) / len(nums)
    if aggregation == "min":
        return min(nums)
    if aggregation == "max":
        return max(nums)
    if aggregation == "last":
        latest = max(ts for ts, _v in values)
        return max(v for ts, v in values if ts == latest)
    if aggregation == "rate_per_min":
        return len(nums) * 60.0 / seconds
    if aggregation == "p95":
        ordered = sorted(nums)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]
    if aggregation == "distinct_count":
        return float(len({str(v) for v in nums}))
    raise AssertionError(aggregation)


values_strategy = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1e6, allow_nan=False),
        st.one_of(st.integers(-50, 50).map(float), st.floats(-1e6, 1e6, allow_nan=False)),
    ),
    max_size=60,
)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATORS))
@settings(max_examples=150, deadline=None)
@given(values=values_strategy, split=st.integers(0, 60), seed=st.integers(0, 1000))
def test_aggregation_matches_brute_force_whatever_the_split(
    aggregation: str, values: list[tuple[float, float]], split: int, seed: int
) -> None:
    """Adding values in any order to two partials and merging equals the reference; a merge
    leaves both its arguments as they were (stage 2 merges the panes' held states)."""
    agg = AGGREGATORS[aggregation]
    shuffled = list(values)
    random.Random(seed).shuffle(shuffled)
    left, right = agg.initialize(), agg.initialize()
    for ts, value in shuffled[:split]:
        left = agg.add(left, value, ts)
    for ts, value in shuffled[split:]:
        right = agg.add(right, value, ts)
    held = copy.deepcopy((left, right))
    got = agg.result(agg.merge(left, right), 300.0)
    assert (left, right) == held
    expected = _reference(aggregation, values, 300.0)
    if expected is None or got is None:
        assert (got is None or got == 0.0) and (expected is None or expected == 0.0)
    else:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_p95_is_nearest_rank() -> None:
    assert p95([float(i) for i in range(1, 101)]) == 95.0
    assert p95([7.0]) == 7.0
    assert p95([]) is None


finite_anywhere = st.floats(allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATORS))
@settings(max_examples=150, deadline=None)
@given(values=st.lists(finite_anywhere, max_size=20), split=st.integers(0, 20))
def test_finite_inputs_give_finite_json_states_and_results(
    aggregation: str, values: list[float], split: int
) -> None:
    """Whatever finite values come (1.79e308 included), states and results stay finite."""
    agg = AGGREGATORS[aggregation]
    left, right = agg.initialize(), agg.initialize()
    for i, value in enumerate(values):
        if i < split:
            left = agg.add(left, value, float(i))
        else:
            right = agg.add(right, value, float(i))
    merged = agg.merge(left, right)
    json.dumps([left, right, merged], allow_nan=False)  # raises on a non-finite number
    result = agg.result(merged, 300.0)
    assert result is None or math.isfinite(result)
    if aggregation == "avg" and values:
        assert result is not None and min(values) <= result <= max(values)


@pytest.mark.parametrize(
    ("aggregation", "values", "expected", "overflow"),
    [
        ("avg", [FLOAT_MAX, FLOAT_MAX], FLOAT_MAX, True),
        ("avg", [FLOAT_MAX, -FLOAT_MAX], 0.0, False),
        ("avg", [1e308, 1e308, 1e308, 1e308], 1e308, False),
        ("sum", [FLOAT_MAX, FLOAT_MAX], FLOAT_MAX, True),
        ("sum", [-FLOAT_MAX, -1e308], -FLOAT_MAX, True),
        ("sum", [1.0, 2.0], 3.0, False),
    ],
)
def test_huge_values_average_exactly_and_sums_saturate_as_overflow(
    aggregation: str, values: list[float], expected: float, overflow: bool
) -> None:
    """Two events of 1.7976931348623157e308 average to that value; their sum is an overflow."""
    agg = AGGREGATORS[aggregation]
    state = agg.initialize()
    for value in values:
        state = agg.add(state, value, 0.0)
    result = agg.result(state, 60.0)
    assert result == expected
    assert overflowed(result) is overflow


@pytest.mark.parametrize("aggregation", sorted(AGGREGATORS))
@settings(max_examples=100, deadline=None)
@given(values=st.lists(finite_anywhere, max_size=30))
def test_a_state_read_back_from_json_is_the_same_state(
    aggregation: str, values: list[float]
) -> None:
    """What a checkpoint or the partials topic carries loads back to the state it was."""
    agg = AGGREGATORS[aggregation]
    state = agg.initialize()
    for i, value in enumerate(values):
        state = agg.add(state, value, float(i))
    loaded = agg.load(json.loads(json.dumps(state, allow_nan=False)))
    assert loaded == state
    assert agg.result(loaded, 60.0) == agg.result(state, 60.0)


def test_a_p95_state_grows_with_distinct_values_not_with_events() -> None:
    """10,000 waiting times in whole minutes are 60 counted values, and the same p95."""
    agg = AGGREGATORS["p95"]
    state = agg.initialize()
    values = [float(random.Random(n).randrange(60)) for n in range(10_000)]
    for value in values:
        state = agg.add(state, value, 0.0)
    assert len(state[0]) == 60
    assert sum(state[1]) == 10_000
    assert len(json.dumps(state)) < 1_000
    assert agg.result(state, 60.0) == p95(sorted(values))


def test_a_p95_state_of_earlier_versions_loads_as_counted_values() -> None:
    """Checkpoints of earlier versions hold every value, sorted: they load as counts."""
    agg = AGGREGATORS["p95"]
    assert agg.load([1.0, 1.0, 3.0]) == [[1.0, 3.0], [2, 1]]
    assert agg.load([]) == agg.initialize()
    assert agg.result(agg.load([float(v) for v in range(1, 101)]), 60.0) == 95.0


@pytest.mark.parametrize(
    ("aggregation", "raw"),
    [
        ("count", "3"),
        ("count", -1),
        ("count", True),
        ("count", 2.5),
        ("rate_per_min", None),
        ("sum", "1"),
        ("sum", 10**400),
        ("sum", [1.0]),
        ("avg", [1.0]),
        ("avg", [1.0, -2]),
        ("avg", {"mean": 1.0, "count": 1}),
        ("min", "low"),
        ("max", [3.0]),
        ("last", [1.0]),
        ("last", ["t", 1.0]),
        ("p95", "values"),
        ("p95", [[2.0, 1.0], [1, 1]]),  # not ascending
        ("p95", [[1.0, 1.0], [1, 1]]),  # a value twice
        ("p95", [[1.0, 2.0], [1]]),  # not one count each
        ("p95", [[1.0], [0]]),  # counted 0 times
        ("p95", [[1.0], [-1]]),
        ("p95", [1.0, "2"]),  # an earlier version's list with text in it
        ("p95", [[1.0], ["1"]]),
        ("distinct_count", ["a", 1]),
        ("distinct_count", "ab"),
    ],
)
def test_a_state_of_the_wrong_shape_is_refused(aggregation: str, raw: Any) -> None:
    """Any JSON may arrive where a state is read back: the wrong shape is a ValueError, never a
    state that breaks `merge` or `result` later."""
    with pytest.raises(ValueError, match=r"\S"):
        AGGREGATORS[aggregation].load(raw)


def test_a_distinct_count_state_loads_sorted_and_unique() -> None:
    assert AGGREGATORS["distinct_count"].load(["b", "a", "b"]) == ["a", "b"]


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0]), finite_anywhere), min_size=1, max_size=60
    ),
    cuts=st.lists(st.integers(0, 60), max_size=4),
    earlier=st.booleans(),
)
def test_counted_p95_equals_sorting_every_value_over_partitions_and_json(
    values: list[float], cuts: list[int], earlier: bool
) -> None:
    """Values split over partitions, each state through JSON (or an earlier version's list of
    every value), merged in any order: the nearest rank of all values, and never -0.0."""
    agg = AGGREGATORS["p95"]
    bounds = sorted({0, len(values), *(min(c, len(values)) for c in cuts)})
    merged = agg.initialize()
    for first, last in itertools.pairwise(bounds):
        part = values[first:last]
        if earlier:
            raw: Any = sorted(part)
        else:
            state = agg.initialize()
            for value in part:
                state = agg.add(state, value, 0.0)
            raw = json.loads(json.dumps(state))
        merged = agg.merge(merged, agg.load(raw))
    result = agg.result(merged, 60.0)
    assert result == p95(sorted(values))
    assert result is not None
    assert math.copysign(1.0, result) == 1.0 or result != 0.0


def test_an_earlier_p95_state_loads_whatever_its_order() -> None:
    """Read as counts in one sort (an earlier version's list, or any list, may be large)."""
    state = AGGREGATORS["p95"].load([3.0, 1.0, 3.0, -0.0, 0.0])
    assert state == [[0.0, 1.0, 3.0], [2, 1, 2]]
    assert math.copysign(1.0, state[0][0]) == 1.0


@pytest.mark.parametrize(
    ("aggregation", "state", "count", "holds"),
    [
        ("count", 3, 3, True),
        ("count", 3, 4, False),
        ("avg", [2.0, 3], 3, True),
        ("avg", [2.0, 0], 3, False),
        ("min", None, 1, False),
        ("last", [1.0, 2.0], 5, True),
        ("p95", [[1.0, 2.0], [2, 1]], 3, True),
        ("p95", [[], []], 3, False),
        ("distinct_count", ["a"], 3, True),
        ("distinct_count", [], 3, False),
        ("distinct_count", ["a", "b"], 1, False),
    ],
)
def test_a_state_holds_the_count_its_partial_claims_or_not(
    aggregation: str, state: Any, count: int, holds: bool
) -> None:
    assert AGGREGATORS[aggregation].holds(state, count) is holds
