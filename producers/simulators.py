"""Sector simulators: plausible events from every source of the catalog, no Kafka involved.

One `SectorSimulator` per sector; a `Simulation` merges them in send-time order. Time is
injected: the caller says where the run starts and asks for what is due up to a time it
chooses (the CLI passes the wall clock, tests any number), so a seed and a clock give the
same events every time. Each (source, event type) stream has its own random generators,
which is why a scenario on one source leaves every other stream's events unchanged.

Scenarios bend the data so alerts and freshness can be shown:

- ``spike``: the input of a rate-of-change rule's KPI jumps (more events, or larger values);
- ``drift``: a threshold rule's input drifts slowly past its raise level, then stays there;
- ``silent``: a source (by default the one an absence rule watches) stops sending;
- ``late``: a share of events arrive with ``occurred_at`` minutes in the past;
- ``malformed``: a share of events break the contract (each with the reason code expected).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from foundation.contract.catalog import Catalog, EventType, Sector, Source
from producers._sim_defects import corrupt, defect_kinds
from producers._sim_profiles import (
    DISTRICT_WEIGHTS,
    GENERIC_TYPE,
    PROFILES,
    SectorProfile,
    TypeProfile,
    cycle_level,
)
from producers._sim_scenarios import (
    LATE_DELAY,
    LATE_SHARE,
    MALFORMED_SHARE,
    SCENARIO_KINDS,
    Effect,
    Scenario,
    ScenarioKind,
    attach,
)

__all__ = [
    "SCENARIO_KINDS",
    "Emission",
    "Scenario",
    "ScenarioKind",
    "SectorSimulator",
    "Simulation",
]

_STEP_SECONDS: Final = 300.0  # resolution of rate integration; daily cycles vary over hours
_MAX_STEPS: Final = 14 * 288  # two weeks of steps without an event: the stream has stopped


@dataclass(frozen=True, slots=True)
class Emission:
    """One simulated record: the event, when to send it, and the defect it carries if any."""

    at: float  # send time (epoch seconds); `occurred_at` differs for late events
    sector: str
    source: str
    event: dict[str, Any]
    raw: bytes | None = None  # bytes to send as-is (raw malformed mode), bypassing the SDK
    defect: str | None = None  # the reason code the contract must answer with

    def line(self) -> bytes:
        """The record as one JSONL line (without the newline)."""
        if self.raw is not None:
            return self.raw
        return json.dumps(self.event, ensure_ascii=False, separators=(",", ":")).encode()


_Level = Callable[[str, float], float]  # (daily shape, epoch seconds) → level


@dataclass(eq=False)
class _Stream:
    """Events of one event type from one source."""

    source: Source
    event_type: EventType
    profile: TypeProfile
    rate: float  # events/s at cycle level 1
    floor: float  # events/s it never drops below (keeps the source fresh)
    places: tuple[tuple[str, ...], list[float]] | None
    timing: random.Random
    values: random.Random
    chance: random.Random
    next_at: float = 0.0
    effects: list[Effect] = field(default_factory=list)

    def rate_at(self, t: float, level: _Level) -> float:
        rate = max(self.rate * level(self.profile.rate_cycle, t), self.floor)
        for effect in self.effects:
            if effect.on_rate and effect.active(t):
                rate *= 1.0 + (effect.factor - 1.0) * effect.ramp(t)
        return rate

    def value_at(self, t: float, level: _Level) -> float:
        profile = self.profile
        rng = self.values
        if profile.share is not None:
            share = profile.share
            for effect in self.effects:
                if effect.kind == "drift" and not effect.on_rate and effect.active(t):
                    share += effect.shift * effect.ramp(t)
            return 100.0 if rng.random() < share else 0.0
        if profile.dist == "lognormal":
            sigma = profile.sd
            value = profile.mean * math.exp(rng.gauss(0.0, sigma) - sigma * sigma / 2.0)
        else:
            value = rng.gauss(profile.mean, profile.sd)
        if profile.swing:
            value += profile.swing * (level(profile.value_cycle, t) - 1.0)
        for effect in self.effects:
            if effect.on_rate or not effect.active(t):
                continue
            if effect.kind == "spike":
                value *= effect.factor
            elif effect.kind == "drift":
                value += effect.shift * effect.ramp(t)
        return min(max(value, profile.lo), profile.hi)


class SectorSimulator:
    """Every source and event type of one sector, as streams ordered by their next event."""

    def __init__(
        self,
        catalog: Catalog,
        sector: Sector,
        *,
        rate: float,
        seed: int,
        start: float,
        run_id: str,
        scenarios: Sequence[Scenario] = (),
        raw_malformed: bool = False,
    ) -> None:
        self.sector = sector
        self._run_id = run_id
        self._raw = raw_malformed
        self._zone = ZoneInfo(catalog.province.timezone)
        self._seq: dict[str, int] = {}
        self._levels: dict[tuple[str, int], float] = {}
        self._defects = defect_kinds(raw=raw_malformed)
        profile = PROFILES.get(sector.id, SectorProfile(emits={}, types={}))
        self._streams = _build_streams(catalog, sector, profile, rate=rate, seed=seed)
        for scenario in scenarios:
            attach(scenario, sector, self._streams, start)
        # From this time on every stream is silenced for good (inf: never).
        self._dead_from = max(
            min(
                (e.start for e in s.effects if e.kind == "silent" and e.end == math.inf),
                default=math.inf,
            )
            for s in self._streams
        )
        self._heap: list[tuple[float, int]] = []
        for index, stream in enumerate(self._streams):
            stream.next_at = self._after(stream, start, stream.timing.random())
            heapq.heappush(self._heap, (stream.next_at, index))

    @property
    def next_at(self) -> float:
        """When the next stream is due (it may turn out silent)."""
        return self._heap[0][0] if self._heap else math.inf

    @property
    def exhausted(self) -> bool:
        """True when every stream is silenced for good: nothing will ever be emitted."""
        return self.next_at >= self._dead_from

    def step(self) -> Emission | None:
        """Advance the earliest stream by one event; None when a scenario drops it."""
        at, index = heapq.heappop(self._heap)
        stream = self._streams[index]
        # Jittered rather than Poisson gaps: department systems report fairly regularly,
        # and a gap never exceeds 1.7 / rate, so the freshness floor holds.
        stream.next_at = self._after(stream, at, stream.timing.uniform(0.3, 1.7))
        heapq.heappush(self._heap, (stream.next_at, index))
        emission = self._emit(stream, at)
        if any(e.kind == "silent" and e.active(at) for e in stream.effects):
            return None
        return emission

    def _level(self, shape: str, t: float) -> float:
        """A daily shape's level at `t`, looked up per minute of local time."""
        key = (shape, int(t // 60.0))
        level = self._levels.get(key)
        if level is None:
            if len(self._levels) > 100_000:
                self._levels.clear()
            local = datetime.fromtimestamp(key[1] * 60.0, self._zone)
            level = self._levels[key] = cycle_level(shape, local)
        return level

    def _after(self, stream: _Stream, t: float, work: float) -> float:
        """When `work` expected events' worth of the stream's varying rate has passed.

        Integrating in steps matters for rare events: a gap drawn from the night's rate
        alone would jump over the whole busy day that follows.
        """
        for _ in range(_MAX_STEPS):
            rate = stream.rate_at(t, self._level)
            if rate * _STEP_SECONDS >= work:
                return t + work / rate
            work -= rate * _STEP_SECONDS
            t += _STEP_SECONDS
        return math.inf  # a stream with (almost) no rate: never again

    def _emit(self, stream: _Stream, at: float) -> Emission:
        source = stream.source.id
        event_type = stream.event_type
        event: dict[str, Any] = {
            "event_id": "",
            "source": source,
            "sector": self.sector.id,
            "type": event_type.id,
            "occurred_at": _rfc3339(at),
        }
        if event_type.measurement:
            value = round(stream.value_at(at, self._level), stream.profile.decimals)
            event["value"] = int(value) if stream.profile.decimals <= 0 else value
            if event_type.unit is not None:
                event["unit"] = event_type.unit
        if stream.places is not None:
            codes, cumulative = stream.places
            event["district"] = stream.values.choices(codes, cum_weights=cumulative)[0]
        if stream.profile.data is not None:
            event["data"] = stream.profile.data(stream.values)
        seq = self._seq.get(source, 0) + 1
        self._seq[source] = seq
        event["event_id"] = f"{self._run_id}-{source}-{seq}"
        chance = stream.chance
        for effect in stream.effects:
            if not effect.active(at):
                continue
            if effect.kind == "late" and chance.random() < LATE_SHARE:
                event["occurred_at"] = _rfc3339(at - chance.uniform(*LATE_DELAY))
            elif effect.kind == "malformed" and chance.random() < MALFORMED_SHARE:
                kind = chance.choice(self._defects)
                bad, raw, reason = corrupt(event, kind, chance, raw=self._raw)
                return Emission(at, self.sector.id, source, bad, raw, reason)
        return Emission(at, self.sector.id, source, event)


class Simulation:
    """The selected sectors' simulators merged into one send-time-ordered flow."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        sectors: Sequence[str] | None = None,
        rate: float = 50.0,
        seed: int = 1,
        start: float,
        scenarios: Sequence[Scenario] = (),
        raw_malformed: bool = False,
        run_id: str | None = None,
    ) -> None:
        """Raise ValueError naming the problem for an unknown sector or a bad scenario."""
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"the rate must be a positive number of events per second, not {rate}")
        chosen = [s.id for s in catalog.sectors] if not sectors else list(dict.fromkeys(sectors))
        for sector_id in chosen:
            if catalog.sector(sector_id) is None:
                known = ", ".join(s.id for s in catalog.sectors)
                raise ValueError(f"unknown sector {sector_id!r} (known: {known})")
        scenarios = [_locate(scenario, catalog) for scenario in scenarios]
        for scenario in scenarios:
            if scenario.sector is not None and scenario.sector not in chosen:
                raise ValueError(
                    f"scenario {scenario.kind}: sector {scenario.sector!r} is not simulated"
                )
        self.run_id = run_id or f"sim{seed}-{int(start * 1000):x}"
        self.start = start
        self.simulators = [
            SectorSimulator(
                catalog,
                catalog.sector(sector_id),  # type: ignore[arg-type]
                rate=rate / len(chosen),
                seed=seed,
                start=start,
                run_id=self.run_id,
                scenarios=[s for s in scenarios if s.sector in (None, sector_id)],
                raw_malformed=raw_malformed,
            )
            for sector_id in chosen
        ]
        self._heap = [
            (sim.next_at, i) for i, sim in enumerate(self.simulators) if not sim.exhausted
        ]
        heapq.heapify(self._heap)

    @property
    def next_at(self) -> float:
        """When the next record may be due (infinite once everything is silent for good)."""
        return self._heap[0][0] if self._heap else math.inf

    def until(self, t: float, limit: int | None = None) -> list[Emission]:
        """Every record due before `t` (at most `limit`), in send-time order."""
        out: list[Emission] = []
        while self.next_at < t and (limit is None or len(out) < limit):
            emission = self._step()
            if emission is not None:
                out.append(emission)
        return out

    def emissions(self) -> Iterator[Emission]:
        """Records in send-time order, without end (unless every source is silenced)."""
        while self.next_at < math.inf:
            emission = self._step()
            if emission is not None:
                yield emission

    def _step(self) -> Emission | None:
        _, index = heapq.heappop(self._heap)
        simulator = self.simulators[index]
        emission = simulator.step()
        if not simulator.exhausted:  # a sector silenced for good leaves the merge
            heapq.heappush(self._heap, (simulator.next_at, index))
        return emission


def _locate(scenario: Scenario, catalog: Catalog) -> Scenario:
    """A scenario naming a source but no sector applies to that source's sector."""
    if scenario.source is None or scenario.sector is not None:
        return scenario
    found = catalog.source(scenario.source)
    if found is None:
        raise ValueError(f"scenario {scenario.kind}: unknown source {scenario.source!r}")
    return dataclasses.replace(scenario, sector=found[0].id)


def _rfc3339(epoch: float) -> str:
    stamp = datetime.fromtimestamp(epoch, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _build_streams(
    catalog: Catalog, sector: Sector, profile: SectorProfile, *, rate: float, seed: int
) -> list[_Stream]:
    types = {t.id: t for t in sector.event_types}
    emits: dict[str, list[str]] = {}
    for source in sector.sources:
        listed = [t for t in profile.emits.get(source.id, ()) if t in types]
        emits[source.id] = listed or list(types)
    for type_id in types:  # a type no source sends is sent by all
        if not any(type_id in listed for listed in emits.values()):
            for listed in emits.values():
                listed.append(type_id)
    senders = {t: sum(t in listed for listed in emits.values()) for t in types}
    volume = sum(
        profile.types.get(t, GENERIC_TYPE).weight
        for t in types
        if profile.types.get(t, GENERIC_TYPE).per_hour is None
    )
    streams: list[_Stream] = []
    for source in sector.sources:
        places = _places(catalog, profile.places.get(source.id))
        for position, type_id in enumerate(emits[source.id]):
            type_profile = profile.types.get(type_id, GENERIC_TYPE)
            if type_profile.per_hour is not None:
                type_rate = type_profile.per_hour / 3600.0
            else:
                type_rate = rate * type_profile.weight / volume
            name = f"{seed}/{sector.id}/{source.id}/{type_id}"
            streams.append(
                _Stream(
                    source=source,
                    event_type=types[type_id],
                    profile=type_profile,
                    rate=type_rate / senders[type_id],
                    # The first type a source sends keeps it fresh: 1.5 events per cadence.
                    floor=1.5 / source.cadence if position == 0 else 0.0,
                    places=places,
                    timing=_rng(f"{name}/timing"),
                    values=_rng(f"{name}/values"),
                    chance=_rng(f"{name}/chance"),
                )
            )
    return streams


def _rng(name: str) -> random.Random:
    # Simulated data, not secrets: a seeded, reproducible generator is the point.
    return random.Random(name)  # noqa: S311


def _places(
    catalog: Catalog, codes: tuple[str, ...] | None
) -> tuple[tuple[str, ...], list[float]] | None:
    known = [d.code for d in catalog.districts]
    if codes == ():
        return None
    chosen = tuple(c for c in codes or known if c in known) or tuple(known)
    cumulative: list[float] = []
    total = 0.0
    for code in chosen:
        total += DISTRICT_WEIGHTS.get(code, 1.0)
        cumulative.append(total)
    return chosen, cumulative
