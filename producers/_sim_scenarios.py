"""Scenario switches of the simulators: what each one aims at, and its effect on streams.

A spike aims at the input of the sector's rate-of-change rule, a drift at a threshold
rule's (preferring a value over a short window, so it shows within minutes), a silence at
the source an absence rule watches. Effects are data; the simulator applies them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

from foundation.contract.catalog import AlertRule, EventType, Kpi, Sector, Source
from producers._sim_profiles import TypeProfile

__all__ = [
    "DRIFT_RAMP_SECONDS",
    "LATE_DELAY",
    "LATE_SHARE",
    "MALFORMED_SHARE",
    "SCENARIO_KINDS",
    "SPIKE_SECONDS",
    "Effect",
    "Scenario",
    "ScenarioKind",
    "Target",
    "attach",
]

ScenarioKind = Literal["spike", "drift", "silent", "late", "malformed"]
SCENARIO_KINDS: Final[tuple[str, ...]] = get_args(ScenarioKind)

SPIKE_SECONDS: Final = 600.0  # how long a spike lasts unless told
DRIFT_RAMP_SECONDS: Final = 900.0  # a drift reaches its level after this long
LATE_SHARE: Final = 0.2
LATE_DELAY: Final = (120.0, 900.0)  # seconds an event is late by
MALFORMED_SHARE: Final = 0.1
_COUNTED = ("count", "rate_per_min", "distinct_count")


@dataclass(frozen=True, slots=True)
class Scenario:
    """An anomaly to inject: where (sector, source; None = every one) and when (seconds)."""

    kind: ScenarioKind
    sector: str | None = None
    source: str | None = None
    after: float = 0.0  # seconds after the start of the run
    lasts: float | None = None  # None: a spike SPIKE_SECONDS or a window, others to the end

    @classmethod
    def parse(cls, text: str, *, after: float = 0.0, lasts: float | None = None) -> Scenario:
        """`NAME[:SECTOR[:SOURCE]]`, e.g. `silent:health:his-bvdk-tinh`."""
        kind, sector, source = (text.split(":") + [""] * 3)[:3]
        if kind not in SCENARIO_KINDS or text.count(":") > 2:
            raise ValueError(
                f"{text!r}: expected NAME[:SECTOR[:SOURCE]], "
                f"NAME one of {', '.join(SCENARIO_KINDS)}"
            )
        return cls(kind, sector or None, source or None, after, lasts)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Effect:
    """What a scenario does to one stream, from `start` to `end`."""

    kind: ScenarioKind
    start: float
    end: float
    on_rate: bool = False  # spike/drift: change how often instead of the value
    factor: float = 1.0  # spike: × value or × rate; drift on counts: × rate when fully ramped
    shift: float = 0.0  # drift on values: + shift when fully ramped (a probability for shares)

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def ramp(self, t: float) -> float:
        return min(1.0, (t - self.start) / DRIFT_RAMP_SECONDS) if self.kind == "drift" else 1.0


class Target(Protocol):
    """A simulated stream as scenarios see it: what it sends, how often, with which effects."""

    source: Source
    event_type: EventType
    profile: TypeProfile
    rate: float
    floor: float
    places: tuple[tuple[str, ...], list[float]] | None
    effects: list[Effect]


def attach(scenario: Scenario, sector: Sector, streams: Sequence[Target], start: float) -> None:
    """Attach the scenario's effect to the streams it touches; ValueError if it cannot apply."""
    begin = start + scenario.after
    lasts = scenario.lasts
    if lasts is None:
        lasts = SPIKE_SECONDS if scenario.kind == "spike" else math.inf
    end = begin + lasts
    source_ids = {s.id for s in sector.sources}
    if scenario.source is not None and scenario.source not in source_ids:
        raise ValueError(
            f"scenario {scenario.kind}: {scenario.source!r} is not a source of {sector.id}"
        )
    mine = [s for s in streams if scenario.source in (None, s.source.id)]
    if scenario.kind in ("late", "malformed"):
        for stream in mine:
            stream.effects.append(Effect(scenario.kind, begin, end))
        return
    if scenario.kind == "silent":
        silent = scenario.source or _watched_source(sector)
        for stream in streams:
            if stream.source.id == silent:
                stream.effects.append(Effect("silent", begin, end))
        return
    emitted = {s.event_type.id for s in mine}
    rule, kpi = _target_rule(sector, scenario.kind, emitted)
    if kpi is None:  # nothing to aim at: make the whole source (or sector) busier
        for stream in mine:
            stream.effects.append(Effect(scenario.kind, begin, end, on_rate=True, factor=3.0))
        return
    targets = [s for s in mine if s.event_type.id == kpi.event_type]
    counted = kpi.aggregation in _COUNTED or not targets[0].event_type.measurement
    counted = counted or (targets[0].profile.share is not None and scenario.kind == "spike")
    if scenario.kind == "spike":
        change = rule.change_pct if rule is not None and rule.change_pct is not None else 100.0
        factor = min(max(1.2, 1.0 + 2.0 * change / 100.0), 6.0)
        begin, end = _whole_windows(kpi, begin, scenario.lasts)
        effect = Effect("spike", begin, end, on_rate=counted, factor=factor)
    else:
        effect = _drift(rule, kpi, targets, sector, begin, end, counted)
    for stream in targets:
        stream.effects.append(effect)


def _whole_windows(kpi: Kpi, begin: float, lasts: float | None) -> tuple[float, float]:
    """A spike's span, in whole windows of the KPI it aims at.

    It starts on a boundary of the KPI's windows (the next hop), so no window is part before
    and part during the spike: a window astride the start would read as half a jump, and with
    tumbling windows a ×3 spike starting mid-window can show no window-to-window change above
    +100 % at all (two steps of ×1.7). Unless told how long, it lasts SPIKE_SECONDS or one
    whole window if that is longer, so at least one window is all spike.
    """
    hop = kpi.window.hop or kpi.window.size
    begin = math.ceil(begin / hop) * hop
    return begin, begin + (lasts if lasts is not None else max(SPIKE_SECONDS, kpi.window.size))


def _drift(
    rule: AlertRule | None,
    kpi: Kpi,
    targets: Sequence[Target],
    sector: Sector,
    begin: float,
    end: float,
    counted: bool,
) -> Effect:
    """Aim past the rule's raise level by its hysteresis band (at least 5 % of the level)."""
    if rule is None or rule.raise_at is None:
        return Effect("drift", begin, end, on_rate=counted, factor=3.0, shift=0.0)
    raise_at = rule.raise_at
    band = abs(raise_at - (rule.clear_at if rule.clear_at is not None else raise_at))
    margin = max(band, 0.05 * abs(raise_at), 1e-6)
    goal = raise_at + margin if rule.op == "above" else raise_at - margin
    profile = targets[0].profile
    if counted:
        baseline = _expected_kpi(kpi, targets, sector)
        ratio = goal / baseline if baseline > 0 else 3.0
        low, high = (1.5, 20.0) if rule.op == "above" else (0.02, 0.67)
        return Effect("drift", begin, end, on_rate=True, factor=min(max(ratio, low), high))
    if profile.share is not None:
        return Effect("drift", begin, end, shift=goal / 100.0 - profile.share)
    return Effect("drift", begin, end, shift=goal - profile.mean)


def _expected_kpi(kpi: Kpi, targets: Sequence[Target], sector: Sector) -> float:
    """Rough value of a counted KPI at cycle level 1, per group when grouped by district."""
    rate = sum(max(s.rate, s.floor) for s in targets)
    if kpi.aggregation == "rate_per_min":
        return rate * 60.0
    baseline = rate * kpi.window.size
    if kpi.aggregation == "sum":
        baseline *= targets[0].profile.mean
    if "district" in kpi.group_by and targets[0].places is not None:
        _codes, cumulative = targets[0].places
        weights = [b - a for a, b in zip([0.0, *cumulative], cumulative, strict=False)]
        baseline *= max(weights) / cumulative[-1]
    return baseline


def _target_rule(
    sector: Sector, kind: ScenarioKind, emitted: set[str]
) -> tuple[AlertRule | None, Kpi | None]:
    """The rule a spike (rate of change) or a drift (threshold) should trip, and its KPI."""
    kpis = {k.id: k for k in sector.kpis if k.event_type in emitted}
    wanted = "rate_of_change" if kind == "spike" else "threshold"
    rules = [r for r in sector.alerts if r.kind == wanted and r.kpi in kpis]
    if kind == "drift":
        # Prefer a rule on a value (not a count) over a short window: it shows within minutes.
        rules.sort(key=lambda r: (kpis[r.kpi].aggregation in _COUNTED, kpis[r.kpi].window.size))  # type: ignore[index]
    if rules:
        return rules[0], kpis[rules[0].kpi]  # type: ignore[index]
    headline = [k for k in kpis.values() if k.headline] or list(kpis.values())
    return None, (headline[0] if headline else None)


def _watched_source(sector: Sector) -> str:
    """The source an absence rule watches (so `silent` trips it), else the first one."""
    for rule in sector.alerts:
        if rule.kind == "absence" and rule.source is not None:
            return rule.source
    return sector.sources[0].id
