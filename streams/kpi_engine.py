"""KPI windows in two pure stages, so that workers can split the event partitions.

Stage 1 (`PartitionPanes`, one per source partition) folds events into *panes*: slices
of one hop of a series (a tumbling window is one pane; a 1 h window hopping every
5 min is 12). One update per event and KPI, whatever the overlap. It hands out the
cumulative state of each changed pane, tagged with its partition and offset.

Stage 2 (`SeriesBook`, keyed by series) keeps the latest pane state per partition
(the highest (generation, offset) wins, so a replayed partial never counts twice),
merges the panes of each window, and decides what to emit: provisional points at most
once per second, the final point when the window ends, revisions for late events within
grace, nothing after.

A broker epoch's generation orders partials and points across epochs: after the embedded
broker lost its topics, offsets start again at 0, and the state carried over from the
previous epoch's checkpoints goes on under the new, higher generation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from foundation.contract.envelope import MAX_FUTURE_SECONDS, Event
from foundation.contract.kpi import KpiPoint, series_key
from streams.aggregations import Aggregator, as_count, as_finite, overflowed
from streams.kpi_plan import KpiPlan, KpiSpec

__all__ = [
    "EMIT_INTERVAL",
    "FUTURE_SKEW",
    "PROVISIONAL_BURST",
    "PanePartial",
    "PartitionPanes",
    "SeriesBook",
]

EMIT_INTERVAL = 1.0  # seconds between two points of one window (coalescing)
# A series' provisional points: on average at most one per EMIT_INTERVAL (a token bucket), and
# after a quiet time up to PROVISIONAL_BURST at once: a series that changes now and then shows
# each change at once, a busy one is coalesced to one point a second.
PROVISIONAL_BURST = 3
# How far ahead of stage 2's clock a partial's pane and taking time may be: events may be up to
# MAX_FUTURE_SECONDS ahead of the clock that takes them, and workers' clocks differ a little.
FUTURE_SKEW = 2 * MAX_FUTURE_SECONDS


@dataclass(slots=True)
class PanePartial:
    """A source partition's cumulative contribution to one pane of one series."""

    series: str
    kpi: str
    pane: float
    state: Any
    count: int
    partition: str
    offset: int
    newest: float  # wall-clock time the newest event of the pane was taken in
    generation: int = 0  # of the broker epoch `offset` belongs to

    @property
    def ordering(self) -> tuple[int, int]:
        return (self.generation, self.offset)

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.series, "kpi": self.kpi, "pane": self.pane, "state": self.state,
            "count": self.count, "partition": self.partition, "offset": self.offset,
            "newest": self.newest, "generation": self.generation,
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PanePartial:
        """A partial read back from the partials topic, or ValueError (any bytes may come).
        Its state is loaded by `SeriesBook.apply`, which knows the KPI's aggregation."""
        if not isinstance(raw, dict):
            raise ValueError("a partial is not an object")
        series, kpi, partition = raw["series"], raw["kpi"], raw["partition"]
        if not all(isinstance(text, str) for text in (series, kpi, partition)):
            raise ValueError("a partial's series, kpi and partition are text")
        if "|" not in series:
            raise ValueError(f"not a series key: {series!r:.60}")
        return cls(
            series, kpi, as_finite(raw["pane"]), raw["state"], as_count(raw["count"]), partition,
            as_count(raw["offset"]), as_finite(raw["newest"]), as_count(raw.get("generation", 0)),
        )  # fmt: skip


class PartitionPanes:
    """Stage 1: the panes fed by one source partition."""

    def __init__(self, plan: KpiPlan, partition: str, *, generation: int = 0) -> None:
        self._plan = plan
        self.partition = partition
        self.generation = generation
        self.next_offset = 0
        # (series, pane) -> [state, count, newest arrival, kpi key]
        self._panes: dict[tuple[str, float], list[Any]] = {}
        self._dirty: set[tuple[str, float]] = set()

    def add(self, events: list[Event], *, offset: int, now: float) -> list[Event]:
        """Fold events of the record at `offset` in; return those too late for every KPI."""
        too_late: list[Event] = []
        panes = self._panes
        for event in events:
            specs = self._plan.specs_for(event)
            took = False
            late = False
            for spec in specs:
                value = spec.value_of(event)
                if value is None:
                    continue
                window = spec.window
                pane = math.floor(event.occurred_at / window.hop) * window.hop
                # The newest window holding this pane starts at the pane: past its expiry,
                # every window of the event is gone.
                if now >= pane + window.size + window.grace:
                    late = True
                    continue
                key = (series_key(spec.key, spec.group_of(event)), pane)
                slot = panes.get(key)
                if slot is None:
                    slot = panes[key] = [spec.aggregator.initialize(), 0, now, spec.key]
                slot[0] = spec.aggregator.add(slot[0], value, event.occurred_at)
                slot[1] += 1
                slot[2] = now
                self._dirty.add(key)
                took = True
            if late and not took:
                too_late.append(event)
        self.next_offset = offset + 1
        return too_late

    def drain(self, now: float) -> list[PanePartial]:
        """The cumulative state of every pane changed since the last drain; forget expired panes."""
        out = []
        for key in self._dirty:
            state, count, newest, kpi = self._panes[key]
            out.append(
                PanePartial(
                    key[0], kpi, key[1], state, count, self.partition, self.next_offset, newest,
                    self.generation,
                )
            )  # fmt: skip
        self._dirty.clear()
        for key in [k for k, slot in self._panes.items() if self._expired(slot[3], k[1], now)]:
            del self._panes[key]
        return out

    def _expired(self, kpi: str, pane: float, now: float) -> bool:
        window = self._plan.by_key[kpi].window
        return now >= pane + window.size + window.grace + EMIT_INTERVAL

    def mark_all_dirty(self) -> None:
        """Hand every pane on again (after a new broker epoch: stage 2 may have missed some)."""
        self._dirty = set(self._panes)

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to resume exactly here (JSON-ready; shares lists with the live
        state, so serialise it before the next change)."""
        return {
            "next_offset": self.next_offset,
            "panes": [[s, p, *slot] for (s, p), slot in self._panes.items()],
            "dirty": [[s, p] for s, p in self._dirty],
        }

    def restore(self, snapshot: Any) -> None:
        """Resume from a snapshot, all or nothing: ValueError (nothing changed) when a state in
        it cannot be loaded. Panes of KPIs or groups the catalog no longer has are left out."""
        plan = self._plan
        panes = {
            (s, _on_hop(spec, p)): [
                _loaded(spec.aggregator, state, count),
                count,
                as_finite(newest),
                kpi,
            ]
            for s, p, state, count, newest, kpi in snapshot["panes"]
            if (spec := plan.spec_of(s)) is not None and spec.key == kpi
        }
        dirty = {(s, as_finite(p)) for s, p in snapshot["dirty"]} & panes.keys()
        self.next_offset = as_count(snapshot["next_offset"])
        self._panes, self._dirty = panes, dirty


@dataclass(slots=True)
class _Window:
    revision: int = -1
    last_emit: float = -math.inf
    final_sent: bool = False
    dirty: bool = True


@dataclass(slots=True)
class _Series:
    spec: KpiSpec
    group: str
    # pane -> partition -> ((generation, offset), state, count, newest)
    panes: dict[float, dict[str, tuple[tuple[int, int], Any, int, float]]] = field(
        default_factory=dict
    )
    windows: dict[float, _Window] = field(default_factory=dict)
    credit: float = PROVISIONAL_BURST  # provisional points it may publish now
    credit_at: float = -math.inf  # when `credit` was last topped up

    def take_credit(self, now: float) -> bool:
        """Spend one provisional point if the token bucket holds one (it refills one a second)."""
        elapsed = now - self.credit_at
        if elapsed > 0:
            self.credit = min(PROVISIONAL_BURST, self.credit + elapsed / EMIT_INTERVAL)
            self.credit_at = now
        if self.credit < 1:
            return False
        self.credit -= 1
        return True


class SeriesBook:
    """Stage 2: merges pane partials of every partition and decides the KPI points."""

    def __init__(self, plan: KpiPlan, *, generation: int = 0) -> None:
        self._plan = plan
        self.generation = generation  # of the points it emits
        self._series: dict[str, _Series] = {}

    def apply(self, partial: PanePartial, *, now: float) -> bool:
        """Take a partial; False when it is stale (older offset) or its windows are gone.
        ValueError (nothing changed) when it cannot be one of its KPI's: a state of another
        aggregation or not holding its count, a pane off the KPI's hops or in the future."""
        spec = self._plan.by_key.get(partial.kpi)
        if spec is None:
            return False
        if self._plan.spec_of(partial.series) is not spec:
            raise ValueError(f"a series not of KPI {spec.key}, or of a group it does not have")
        window = spec.window
        if now >= partial.pane + window.size + window.grace:
            return False
        horizon = now + FUTURE_SKEW
        if partial.pane > horizon:
            raise ValueError("a pane in the future")
        _on_hop(spec, partial.pane)
        if partial.newest > horizon:
            raise ValueError("a partial taken in the future")
        series = self._series.get(partial.series)
        held = None if series is None else series.panes.get(partial.pane, {}).get(partial.partition)
        if held is not None and held[0] >= partial.ordering:
            return False
        state = _loaded(spec.aggregator, partial.state, partial.count)
        if series is None:
            group = partial.series.rsplit("|", 1)[1]
            series = self._series[partial.series] = _Series(spec, group)
        by_partition = series.panes.setdefault(partial.pane, {})
        by_partition[partial.partition] = (partial.ordering, state, partial.count, partial.newest)
        # Every window holding this pane changes.
        for start in window.starts(partial.pane):
            if now < window.expires(start):
                held_window = series.windows.get(start)
                if held_window is None:
                    series.windows[start] = _Window()
                else:
                    held_window.dirty = True
        return True

    def due(self, now: float) -> list[KpiPoint]:
        """Points to emit now; forgets windows (and panes) past their grace.

        Open windows: provisional points for the series' *current* window (the open one that
        ends first: with hopping windows, the one that covers the latest `size` of time), at
        most one per series and second on average (after a quiet time up to PROVISIONAL_BURST
        at once). A 1-day window hopping hourly has 24 open windows;
        publishing each every second would multiply the output 24-fold for no reader.
        Closed windows: the final point at once; late revisions at most once a second each.
        """
        points: list[KpiPoint] = []
        for key, series in self._series.items():
            window = series.spec.window
            current: float | None = None
            for start, state in list(series.windows.items()):
                end = window.end(start)
                if now < end:
                    if current is None or start < current:
                        current = start
                    continue
                expired = now >= end + window.grace
                owed_final = not state.final_sent
                may_emit = expired or now - state.last_emit >= EMIT_INTERVAL
                if owed_final or (state.dirty and may_emit):
                    points.append(self._emit(key, series, start, True, now))
                if expired:
                    del series.windows[start]
            if current is not None:
                state = series.windows[current]
                if state.dirty and series.take_credit(now):
                    points.append(self._emit(key, series, current, False, now))
            oldest = now - window.size - window.grace
            for pane in [p for p in series.panes if p < oldest]:
                del series.panes[pane]
        for key in [k for k, s in self._series.items() if not s.windows and not s.panes]:
            del self._series[key]
        return points

    def _emit(self, key: str, series: _Series, start: float, final: bool, now: float) -> KpiPoint:
        point = self._point(key, series, start, final, now)
        state = series.windows[start]
        state.revision += 1
        state.last_emit = now
        state.final_sent = final
        state.dirty = False
        return point

    def _point(self, key: str, series: _Series, start: float, final: bool, now: float) -> KpiPoint:
        spec = series.spec
        window = spec.window
        aggregator = spec.aggregator
        merged = aggregator.initialize()
        count = 0
        newest = 0.0
        for step in range(round(window.size / window.hop)):
            pane = start + step * window.hop
            for _offset, state, pane_count, pane_newest in series.panes.get(pane, {}).values():
                merged = aggregator.merge(merged, state)  # merges never change their arguments
                count += pane_count
                newest = max(newest, pane_newest)
        value = aggregator.result(merged, window.size) if count else None
        revision = series.windows[start].revision + 1
        return KpiPoint(
            key, spec.key, spec.sector, series.group, start, start + window.size, value, count,
            final, revision, now, newest, self.generation, overflowed(value),
        )  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        return {
            key: {
                "panes": [
                    [p, part, order[0], order[1], *rest]
                    for p, parts in s.panes.items()
                    for part, (order, *rest) in parts.items()
                ],
                "windows": [
                    # JSON has no -Infinity: a window never published is stored as null.
                    [w, st.revision, _finite_or_none(st.last_emit), st.final_sent, st.dirty]
                    for w, st in s.windows.items()
                ],
            }
            for key, s in self._series.items()
        }

    def restore(self, snapshot: Any, *, now: float, taken_at: float) -> None:
        """Resume from a snapshot taken at `taken_at`.

        Points may have been emitted after the snapshot and before a crash: per window at most
        one provisional point per EMIT_INTERVAL plus a burst, one final, late revisions one per
        interval. Revisions resume past that bound so that they only grow. All or nothing:
        ValueError (nothing changed) when a state in it cannot be loaded.
        """
        # + the burst a quiet series may spend at once, + 1 for the final.
        skip = math.ceil(max(0.0, now - taken_at) / EMIT_INTERVAL) + PROVISIONAL_BURST + 1
        restored: dict[str, _Series] = {}
        for key, raw in snapshot.items():
            spec = self._plan.spec_of(key)
            if spec is None:  # a KPI or group the catalog no longer has
                continue
            series = _Series(spec, key.rsplit("|", 1)[1])
            for pane, part, generation, offset, state, count, newest in raw["panes"]:
                series.panes.setdefault(_on_hop(spec, pane), {})[part] = (
                    (as_count(generation), as_count(offset)),
                    _loaded(spec.aggregator, state, count),
                    count,
                    as_finite(newest),
                )
            for start, revision, last_emit, final_sent, dirty in raw["windows"]:
                series.windows[_on_hop(spec, start)] = _Window(
                    _revision(revision) + skip,
                    -math.inf if last_emit is None else as_finite(last_emit),
                    bool(final_sent),
                    bool(dirty),
                )
            restored[key] = series
        self._series = restored


def _on_hop(spec: KpiSpec, raw: Any) -> float:
    """A pane or window start read back: a finite time on the KPI's hops, or ValueError (a
    made-up window would be published; a time where adding the hop changes nothing would loop)."""
    time = as_finite(raw)
    hop = spec.window.hop
    if abs(time) > 2.0**52 or round(time / hop) * hop != time:
        raise ValueError(f"a time off the hops of KPI {spec.key}")
    return time


def _revision(raw: Any) -> int:
    """A window's revision read back: -1 (never published) or a count."""
    return -1 if raw == -1 and type(raw) is int else as_count(raw)


def _loaded(aggregator: Aggregator, raw: Any, count: Any) -> Any:
    """A state read back, or ValueError when it cannot be that of `count` values."""
    state = aggregator.load(raw)
    values = as_count(count)
    if values < 1 or not aggregator.holds(state, values):
        raise ValueError(f"a state that does not hold its count of {values}")
    return state


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
