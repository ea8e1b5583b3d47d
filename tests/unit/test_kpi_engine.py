"""KPI windows end to end in the pure core: panes, merging, provisional/final, grace, revisions."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.contract.catalog import Catalog
from foundation.contract.envelope import Event
from foundation.contract.kpi import KpiPoint
from streams.kpi_engine import PROVISIONAL_BURST, PanePartial, PartitionPanes, SeriesBook
from streams.kpi_plan import KpiPlan


def _kpi(kpi_id: str, aggregation: str, window: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "id": kpi_id, "name_vi": kpi_id, "name_en": kpi_id, "event_type": "visit",
        "aggregation": aggregation, "unit": "ca", "window": window, **extra,
    }  # fmt: skip


CATALOG = Catalog.model_validate(
    {
        "version": 1,
        "province": {"id": "p", "name_vi": "P", "name_en": "P"},
        "districts": [{"code": c, "name_vi": c, "name_en": c} for c in ("d1", "d2")],
        "sectors": [
            {
                "id": "health",
                "name_vi": "Y tế",
                "name_en": "Health",
                "sources": [
                    {"id": f"s{i}", "name_vi": "S", "name_en": "S", "cadence": "1m"}
                    for i in range(3)
                ],
                "event_types": [{"id": "visit", "name_vi": "V", "name_en": "V", "unit": "ca"}],
                "kpis": [
                    _kpi("visits", "count", {"size": "60s", "grace": "30s"}),
                    _kpi("mean", "avg", {"size": "120s", "hop": "60s", "grace": "30s"}),
                    _kpi(
                        "p95_by_district",
                        "p95",
                        {"size": "60s", "grace": "30s"},
                        group_by=["district"],
                    ),
                ],
            }
        ],
    }
)
PLAN = KpiPlan(CATALOG)
T0 = 1_000_020.0  # a window boundary (divisible by 60) minus nothing: 1_000_020 = 16667 * 60


def event(n: int, ts: float, value: float = 1.0, source: str = "s0", district: str = "d1") -> Event:
    return Event(f"e{n}", source, "health", "visit", ts, value, None, district, None)


class Pipeline:
    """Stage 1 per partition feeding one stage-2 book, with an explicit clock."""

    def __init__(self) -> None:
        self.partitions = {p: PartitionPanes(PLAN, f"ioc.events.health:{p}") for p in range(3)}
        self.book = SeriesBook(PLAN)
        self.offsets: defaultdict[int, int] = defaultdict(int)

    def feed(self, partition: int, events: list[Event], now: float) -> list[Event]:
        late = self.partitions[partition].add(events, offset=self.offsets[partition], now=now)
        self.offsets[partition] += 1
        return late

    def tick(self, now: float) -> list[KpiPoint]:
        for stage1 in self.partitions.values():
            for partial in stage1.drain(now):
                self.book.apply(partial, now=now)
        return self.book.due(now)


def of(points: list[KpiPoint], series: str) -> list[KpiPoint]:
    return [p for p in points if p.series == series]


def test_a_change_now_and_then_is_published_at_once() -> None:
    """A series that changes now and then (a probe, a department's hourly figure) shows each
    change at once: the bucket lets a few provisional points through back to back."""
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 1)], now=T0 + 1)
    (first,) = of(pipe.tick(T0 + 1), "health.visits|*")
    assert (first.value, first.count, first.final, first.revision) == (1.0, 1, False, 0)
    pipe.feed(0, [event(2, T0 + 1.2)], now=T0 + 1.2)
    (second,) = of(pipe.tick(T0 + 1.3), "health.visits|*")
    assert (second.value, second.revision, second.final) == (2.0, 1, False)


def test_a_busy_series_is_coalesced_to_one_provisional_point_a_second() -> None:
    """Ten changes a second for 20 s: after the burst, one point a second (the newest value),
    none lost at the end, and never more than the rate plus the burst."""
    pipe = Pipeline()
    emitted: list[tuple[float, KpiPoint]] = []
    for n in range(200):
        now = T0 + 1 + n / 10
        pipe.feed(0, [event(n, now)], now=now)
        emitted += [(now, p) for p in of(pipe.tick(now), "health.visits|*")]
    assert len(emitted) <= 20 + PROVISIONAL_BURST
    steady = [t for t, _ in emitted if t >= T0 + 11]
    assert 9 <= len(steady) <= 11, "one a second once the burst is spent"
    assert all(not p.final for _, p in emitted)
    assert [p.revision for _, p in emitted] == list(range(len(emitted)))
    (last,) = of(pipe.tick(T0 + 23), "health.visits|*")
    assert last.count == 200, "the newest value still comes when the bucket refills"


def test_the_final_point_comes_by_timer_without_new_events() -> None:
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 5), event(2, T0 + 6)], now=T0 + 6)
    pipe.tick(T0 + 6)
    assert of(pipe.tick(T0 + 59.9), "health.visits|*") == []
    (final,) = of(pipe.tick(T0 + 60), "health.visits|*")
    assert (final.value, final.final, final.revision) == (2.0, True, 1)
    assert of(pipe.tick(T0 + 70), "health.visits|*") == []


def test_a_late_event_within_grace_revises_the_final_point() -> None:
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 5)], now=T0 + 5)
    pipe.tick(T0 + 5)
    (final,) = of(pipe.tick(T0 + 60), "health.visits|*")
    assert pipe.feed(1, [event(2, T0 + 30, source="s1")], now=T0 + 75) == []
    (revised,) = of(pipe.tick(T0 + 75), "health.visits|*")
    assert (revised.value, revised.final, revised.revision) == (2.0, True, final.revision + 1)


def test_an_event_beyond_grace_is_too_late_and_changes_nothing() -> None:
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 5)], now=T0 + 5)
    pipe.tick(T0 + 5)
    pipe.tick(T0 + 60)
    late = event(2, T0 + 10)
    # The hopping window [T0, T0+120) still accepts it, so it is not too late for every KPI…
    assert pipe.feed(0, [late], now=T0 + 95) == []
    assert of(pipe.tick(T0 + 95), "health.visits|*") == []
    # …but past every window's grace it is.
    assert pipe.feed(0, [event(3, T0 + 10)], now=T0 + 151) == [event(3, T0 + 10)]


def test_a_replayed_partial_is_not_counted_twice_and_partitions_merge() -> None:
    book = SeriesBook(PLAN)
    partial = PanePartial("health.visits|*", "health.visits", T0, 5, 5, "p0", 10, T0)
    assert book.apply(partial, now=T0 + 1)
    assert not book.apply(partial, now=T0 + 1)
    assert not book.apply(
        PanePartial("health.visits|*", "health.visits", T0, 3, 3, "p0", 9, T0), now=T0 + 1
    )
    assert book.apply(
        PanePartial("health.visits|*", "health.visits", T0, 4, 4, "p1", 2, T0), now=T0 + 1
    )
    (point,) = of(book.due(T0 + 1), "health.visits|*")
    assert (point.value, point.count) == (9.0, 9)


def test_group_by_district_makes_one_series_per_district() -> None:
    pipe = Pipeline()
    pipe.feed(
        0, [event(1, T0 + 1, 10, district="d1"), event(2, T0 + 2, 20, district="d2")], now=T0 + 2
    )
    points = pipe.tick(T0 + 2)
    assert {p.series: p.value for p in points if p.kpi == "health.p95_by_district"} == {
        "health.p95_by_district|d1": 10.0,
        "health.p95_by_district|d2": 20.0,
    }


def test_snapshots_resume_exactly_and_revisions_only_grow() -> None:
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 1)], now=T0 + 1)
    pipe.tick(T0 + 1)
    pipe.feed(0, [event(2, T0 + 2)], now=T0 + 2)
    stage1 = pipe.partitions[0].snapshot()
    stage2 = pipe.book.snapshot()
    emitted = of(pipe.tick(T0 + 3), "health.visits|*")  # emitted, then the process "dies"

    restored = Pipeline()
    restored.partitions[0].restore(stage1)
    restored.book.restore(stage2, now=T0 + 4, taken_at=T0 + 2)
    assert restored.partitions[0].next_offset == 2
    (again,) = of(restored.tick(T0 + 4), "health.visits|*")
    assert again.value == 2.0
    assert again.revision > emitted[0].revision


def _brute_force(events: list[Event]) -> dict[tuple[str, float], float | None]:
    windows: dict[tuple[str, float], list[Event]] = defaultdict(list)
    for e in events:
        start = math.floor(e.occurred_at / 60) * 60.0
        windows[("health.visits|*", start)].append(e)
        for hop_start in (start - 60, start):
            windows[("health.mean|*", hop_start)].append(e)
    out: dict[tuple[str, float], float | None] = {}
    for (series, window_start), members in windows.items():
        if series.startswith("health.visits"):
            out[(series, window_start)] = float(len(members))
        else:
            out[(series, window_start)] = math.fsum(e.value or 0 for e in members) / len(members)
    return out


@settings(max_examples=60, deadline=None)
@given(
    stamps=st.lists(
        st.floats(min_value=0, max_value=600, allow_nan=False), min_size=1, max_size=80
    ),
    seed=st.integers(0, 10_000),
)
def test_final_values_equal_a_recomputation_whatever_the_partitioning(
    stamps: list[float], seed: int
) -> None:
    """Events spread over partitions and records, in any order, give the brute-force finals."""
    rng = random.Random(seed)
    events = [event(n, T0 + ts, value=float(rng.randint(0, 100))) for n, ts in enumerate(stamps)]
    pipe = Pipeline()
    shuffled = list(events)
    rng.shuffle(shuffled)
    while shuffled:  # every event arrives (at T0) before any window closes
        size = rng.randint(1, 10)
        pipe.feed(rng.randrange(3), shuffled[:size], now=T0)
        shuffled = shuffled[size:]
    finals: dict[tuple[str, float], Any] = {}
    for tick in range(0, 800, 7):
        for point in pipe.tick(T0 + tick):
            if point.final and point.kpi in ("health.visits", "health.mean"):
                finals[(point.series, point.window_start)] = point.value
    expected = _brute_force(events)
    assert finals.keys() == expected.keys()
    for key, value in expected.items():
        assert finals[key] == pytest.approx(value)


def test_hopping_windows_publish_only_the_current_window_while_open() -> None:
    """Of the overlapping open windows, only the one ending first gets provisional points."""
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 70, value=4.0)], now=T0 + 70)  # in [T0, T0+120) and [T0+60, T0+180)
    points = [p for p in pipe.tick(T0 + 70) if p.kpi == "health.mean"]
    assert [(p.window_start, p.final) for p in points] == [(T0, False)]
    # When the current window ends it publishes its final; the next one becomes current.
    pipe.feed(0, [event(2, T0 + 121, value=8.0)], now=T0 + 121)
    later = [p for p in pipe.tick(T0 + 121) if p.kpi == "health.mean"]
    assert sorted((p.window_start, p.final, p.value) for p in later) == [
        (T0, True, 4.0),
        (T0 + 60, False, 6.0),
    ]


def test_a_snapshot_with_never_published_windows_is_strict_json() -> None:
    """Hopping windows that never published (not current) must not put -Infinity in JSON."""
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 70)], now=T0 + 70)
    pipe.tick(T0 + 70)  # publishes [T0, T0+120) only; [T0+60, T0+180) stays unpublished
    snapshot = json.loads(json.dumps(pipe.book.snapshot(), allow_nan=False))
    restored = SeriesBook(PLAN)
    restored.restore(snapshot, now=T0 + 71, taken_at=T0 + 70)
    assert json.dumps(restored.snapshot(), allow_nan=False)


P95 = "health.p95_by_district"


def _partial_json(**changes: Any) -> dict[str, Any]:
    partial = PanePartial(f"{P95}|d1", P95, T0, [[10.0, 20.0], [3, 1]], 4, "p0", 7, T0)
    return {**partial.to_json(), **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"pane": "soon"},
        {"pane": 10**400},
        {"count": -1},
        {"count": 1.5},
        {"offset": True},
        {"newest": None},
        {"generation": "1"},
        {"series": 5},
        {"series": "no-bar"},
        {"partition": ["p0"]},
    ],
)
def test_a_partial_with_a_bad_field_is_refused_when_read(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        PanePartial.from_json(_partial_json(**changes))


@pytest.mark.parametrize(
    "changes",
    [
        {"state": [[20.0, 10.0], [1, 1]]},  # a p95 state not ascending
        {"state": 4},  # a count's state
        {"series": "health.visits|*"},  # a series of another KPI
        {"count": 5},  # the state holds 4 values
        {"state": [[], []]},  # no values, count 4: it would show as a blank
        {"count": 0, "state": [[], []]},
        {"pane": T0 + 7},  # off the KPI's 60 s hops: a made-up window
        {"pane": 2.0**59},  # in the future: `pane + hop` rounds back to the pane there
        {"pane": 1e300},
        {"newest": T0 + 10**6},  # taken in the future
        {"series": f"{P95}|nowhere"},  # a district the catalog does not have
    ],
)
def test_stage_two_refuses_a_partial_not_of_its_kpi_and_changes_nothing(
    changes: dict[str, Any],
) -> None:
    """Any JSON may come on the partials topic: what cannot be one of the KPI's partials is a
    ValueError, and the book (here holding a good partial) is left as it was."""
    book = SeriesBook(PLAN)
    assert book.apply(PanePartial.from_json(_partial_json(partition="p1")), now=T0 + 1)
    before = book.snapshot()
    with pytest.raises(ValueError, match=r"\S"):
        book.apply(PanePartial.from_json(_partial_json(**changes)), now=T0 + 1)
    assert book.snapshot() == before
    (point,) = book.due(T0 + 1)
    assert (point.value, point.count) == (20.0, 4)


def test_a_hopping_kpis_partial_far_in_the_future_is_refused_not_looped_on() -> None:
    """2**59 s: adding the 60 s hop gives the same float, so walking the window's panes by
    adding the hop never ended."""
    book = SeriesBook(PLAN)
    partial = PanePartial("health.mean|*", "health.mean", 2.0**59, [1.0, 1], 1, "p0", 0, T0)
    with pytest.raises(ValueError, match="a pane in the future"):
        book.apply(partial, now=T0 + 1)


def test_a_partial_off_its_kpis_hops_is_refused() -> None:
    """Stage 1 makes panes on the hops only: another time would publish a made-up window."""
    book = SeriesBook(PLAN)
    partial = PanePartial("health.mean|*", "health.mean", T0 + 7, [1.0, 1], 1, "p0", 0, T0)
    with pytest.raises(ValueError, match="off the hops"):
        book.apply(partial, now=T0 + 1)


@pytest.mark.parametrize(
    ("stage", "path", "value"),
    [
        (1, ["next_offset"], math.inf),  # JSON's Infinity: int() raised OverflowError
        (1, ["panes", 0, 1], math.nan),
        (1, ["panes", 0, 1], T0 + 7),
        (1, ["panes", 0, 4], 10**400),
        (2, ["windows", 0, 1], math.inf),
        (2, ["windows", 0, 0], math.nan),  # a window starting at NaN was published
        (2, ["panes", 0, 0], 2.0**59),
        (2, ["panes", 0, 3], -1),
    ],
    ids=[
        "offset-infinity",
        "pane-nan",
        "pane-off-hop",
        "newest-1e400",
        "revision-infinity",
        "window-nan",
        "pane-2**59",
        "offset-negative",
    ],
)
def test_a_snapshot_with_a_number_that_cannot_be_is_refused(
    stage: int, path: list[Any], value: Any
) -> None:
    """Checkpoints are read back from JSON, which holds Infinity, NaN and 1e400 too."""
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 1, 10.0)], now=T0 + 1)
    pipe.tick(T0 + 1)
    snapshot: Any = json.loads(
        json.dumps(pipe.partitions[0].snapshot() if stage == 1 else pipe.book.snapshot())
    )
    target = snapshot if stage == 1 else snapshot[f"{P95}|d1"]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    fresh = Pipeline()
    with pytest.raises(ValueError, match=r"\S"):
        if stage == 1:
            fresh.partitions[0].restore(json.loads(json.dumps(snapshot)))
        else:
            fresh.book.restore(json.loads(json.dumps(snapshot)), now=T0 + 2, taken_at=T0 + 1)


def test_a_p95_partial_of_an_earlier_version_is_read_as_counted_values() -> None:
    """Every value, sorted (before counted states), still merges with a counted partial."""
    book = SeriesBook(PLAN)
    assert book.apply(PanePartial.from_json(_partial_json(state=[5.0, 30.0], count=2)), now=T0 + 1)
    assert book.apply(PanePartial.from_json(_partial_json(partition="p1")), now=T0 + 1)
    (point,) = book.due(T0 + 1)
    assert (point.value, point.count) == (30.0, 6)


def test_a_stage_one_snapshot_of_an_earlier_version_resumes_with_counted_values() -> None:
    """A checkpoint written before counted p95 states resumes with the same values."""
    stage1 = PartitionPanes(PLAN, "p0")
    stage1.restore(
        {
            "next_offset": 3,
            "panes": [[f"{P95}|d1", T0, [1.0, 2.0, 2.0], 3, T0, P95]],
            "dirty": [[f"{P95}|d1", T0]],
        }
    )
    stage1.add([event(9, T0 + 5, 2.0)], offset=3, now=T0 + 5)
    (partial,) = [p for p in stage1.drain(T0 + 5) if p.kpi == P95]
    assert (partial.state, partial.count, partial.offset) == ([[1.0, 2.0], [1, 3]], 4, 4)


def test_a_snapshot_with_an_unreadable_state_restores_nothing() -> None:
    """All or nothing: a stage left half-restored would count the rest again on replay."""
    pipe = Pipeline()
    pipe.feed(0, [event(1, T0 + 1, 10.0), event(2, T0 + 1, 5.0, district="d2")], now=T0 + 1)
    pipe.tick(T0 + 1)
    stage1 = json.loads(json.dumps(pipe.partitions[0].snapshot()))
    stage2 = json.loads(json.dumps(pipe.book.snapshot()))
    stage1["panes"][-1][2] = "broken"
    stage2[f"{P95}|d2"]["panes"][0][4] = {"broken": True}
    held = Pipeline()  # holding state of its own, which a failed restore must leave as it was
    held.feed(0, [event(3, T0 + 1, 7.0)], now=T0 + 1)
    held.tick(T0 + 1)
    stage1_before, stage2_before = held.partitions[0].snapshot(), held.book.snapshot()
    with pytest.raises(ValueError, match=r"\S"):
        held.partitions[0].restore(stage1)
    with pytest.raises(ValueError, match=r"\S"):
        held.book.restore(stage2, now=T0 + 2, taken_at=T0 + 1)
    assert held.partitions[0].snapshot() == stage1_before
    assert held.book.snapshot() == stage2_before


def test_panes_of_a_kpi_the_catalog_no_longer_has_are_left_out_on_restore() -> None:
    stage1 = PartitionPanes(PLAN, "p0")
    stage1.restore(
        {
            "next_offset": 1,
            "panes": [
                ["health.gone|*", T0, 3, 3, T0, "health.gone"],
                ["health.visits|*", T0, 2, 2, T0, "health.visits"],
            ],
            "dirty": [["health.gone|*", T0], ["health.visits|*", T0]],
        }
    )
    assert [(p.series, p.state) for p in stage1.drain(T0 + 1)] == [("health.visits|*", 2)]
