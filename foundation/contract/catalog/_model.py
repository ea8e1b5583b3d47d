"""Typed model of the catalog; rules that span entries live in `cross_check`."""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal, NewType

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from foundation.contract.topics import event_topic

__all__ = [
    "TEMPLATE_FIELDS",
    "Aggregation",
    "AlertRule",
    "AreaLevel",
    "Catalog",
    "District",
    "EscalationLevel",
    "EscalationPolicy",
    "EventType",
    "Flapping",
    "Kpi",
    "KpiId",
    "Problem",
    "Province",
    "Sector",
    "SectorId",
    "Severity",
    "Source",
    "SourceId",
    "Target",
    "Team",
    "TeamId",
    "Window",
    "cross_check",
    "parse_duration",
    "template_problem",
    "unowned_sectors",
]

SectorId = NewType("SectorId", str)
SourceId = NewType("SourceId", str)
KpiId = NewType("KpiId", str)
TeamId = NewType("TeamId", str)

_ID = r"^[a-z][a-z0-9_]*$"
_CODE = r"^[a-z][a-z0-9-]*$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """'90s', '5m', '1h', '1d' (or a number of seconds) → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration like '30s', '5m', '1h' or '1d', got {value!r}")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]
Aggregation = Literal[
    "count", "sum", "avg", "min", "max", "last", "rate_per_min", "p95", "distinct_count"
]
Severity = Literal["info", "warning", "critical", "emergency"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Named(_Strict):
    name_vi: str = Field(min_length=1)
    name_en: str = Field(min_length=1)


class Province(_Named):
    """Whose operations center this catalog describes."""

    id: str = Field(pattern=_CODE)
    timezone: str = "Asia/Ho_Chi_Minh"


class AreaLevel(_Named):
    """What the catalog's areas are (districts before 2025, communes and wards after)."""


def _district_level() -> AreaLevel:
    return AreaLevel(name_vi="Huyện, thị xã, thành phố", name_en="District-level unit")


class District(_Named):
    """An area code events may carry (a district, or a commune: the catalog's `area_level`).

    `tile` places the area on the schematic map (a tile cartogram): `[row, column]` from the
    top-left, roughly where the area lies. Areas without one are laid out after the others.
    """

    code: str = Field(pattern=_CODE)
    tile: tuple[int, int] | None = None
    # A shorter name for the map's small tiles (e.g. "Lộc Ninh" for "Huyện Lộc Ninh").
    short_vi: str | None = Field(default=None, min_length=1)
    short_en: str | None = Field(default=None, min_length=1)

    @field_validator("tile")
    @classmethod
    def _tile_on_grid(cls, tile: tuple[int, int] | None) -> tuple[int, int] | None:
        if tile is not None and not (0 <= tile[0] < 100 and 0 <= tile[1] < 100):
            raise ValueError("tile is [row, column], each from 0 to 99")
        return tile


class Team(_Named):
    """A data-analysis team (tổ phân tích dữ liệu): its leader and the sectors it follows."""

    id: TeamId = Field(pattern=_CODE)
    leader_vi: str = Field(min_length=1, description="the leader's title, e.g. Phó Chủ tịch …")
    leader_en: str = Field(min_length=1)
    sectors: list[SectorId] = Field(min_length=1)


class Source(_Named):
    """A department system that publishes events, and how often it must be heard from."""

    id: SourceId = Field(pattern=_CODE)
    cadence: Seconds = Field(
        description="expected time between events; stale after cadence × factor"
    )


class EventType(_Named):
    """A kind of event a sector's systems send; measurements carry a `value`."""

    id: str = Field(pattern=_ID)
    measurement: bool = True
    unit: str | None = None


class Window(_Strict):
    """Tumbling when `hop` is absent, hopping (overlapping) otherwise."""

    size: Seconds
    hop: Seconds | None = None
    grace: Seconds = 120.0

    @model_validator(mode="after")
    def _hop_fits(self) -> Window:
        if self.hop is not None and (self.hop > self.size or self.size % self.hop):
            raise ValueError("hop must divide the window size")
        return self


class Target(_Strict):
    """The province's target for a KPI; `direction` says which side is good."""

    value: float
    direction: Literal["at_least", "at_most"]


class Kpi(_Named):
    """A rolling figure computed from one event type of a sector."""

    id: KpiId = Field(pattern=_ID)
    event_type: str
    aggregation: Aggregation
    field: str = Field(default="value", description="'value' or 'data.<key>' (distinct_count)")
    unit: str
    window: Window
    group_by: list[Literal["district", "source"]] = Field(default_factory=list)
    target: Target | None = None
    headline: bool = False


class AlertRule(_Strict):
    """A default alert rule; evaluated by the worker (threshold, rate of change, absence)."""

    id: str = Field(pattern=_ID)
    kind: Literal["threshold", "rate_of_change", "absence"]
    kpi: KpiId | None = None
    source: SourceId | None = None
    # threshold: above/below (required); rate_of_change: above = a rise (default), below = a
    # fall, either = a move either way.
    op: Literal["above", "below", "either"] | None = None
    raise_at: float | None = Field(default=None, alias="raise")
    clear_at: float | None = Field(default=None, alias="clear")
    change_pct: float | None = None
    over: Seconds | None = None
    for_: Seconds = Field(default=0.0, alias="for")
    severity: Severity
    message_vi: str = Field(min_length=1)
    message_en: str = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> AlertRule:
        if self.kind == "threshold":
            if self.kpi is None or self.op is None or self.raise_at is None:
                raise ValueError("a threshold rule needs kpi, op and raise")
            if self.op == "either":
                raise ValueError("a threshold rule's op is above or below")
            clear = self.clear_at if self.clear_at is not None else self.raise_at
            if (self.op == "above" and clear > self.raise_at) or (
                self.op == "below" and clear < self.raise_at
            ):
                raise ValueError("clear must be on the safe side of raise (hysteresis)")
        elif self.kind == "rate_of_change":
            if self.kpi is None or self.change_pct is None or self.over is None:
                raise ValueError("a rate_of_change rule needs kpi, change_pct and over")
            if self.change_pct <= 0:
                raise ValueError("change_pct must be positive (op says the direction)")
        elif self.kpi is None and self.source is None:
            raise ValueError("an absence rule needs a kpi or a source")
        return self


class Sector(_Named):
    """One of the province's sectors; its events travel on their own topic."""

    id: SectorId = Field(pattern=_ID)
    sources: list[Source] = Field(min_length=1)
    event_types: list[EventType] = Field(min_length=1)
    kpis: list[Kpi] = Field(default_factory=list)
    alerts: list[AlertRule] = Field(default_factory=list)

    @property
    def topic(self) -> str:
        return event_topic(self.id)

    def event_type(self, type_id: str) -> EventType | None:
        return next((t for t in self.event_types if t.id == type_id), None)


class EscalationLevel(_Strict):
    """Who hears of an unacknowledged alert next; `role` is matched by the notifier's routing."""

    level: int = Field(ge=0)
    role: str = Field(pattern=_ID)
    after: Seconds | None = Field(
        default=None, description="time unacknowledged at the previous level (not for level 0)"
    )
    name_vi: str | None = None
    name_en: str | None = None


class Flapping(_Strict):
    """An alert that fires or resolves `transitions` times within `window` is flapping."""

    transitions: int = Field(default=6, ge=2, le=1000)
    window: Seconds = 3600.0


def _default_levels() -> list[EscalationLevel]:
    return [
        EscalationLevel(level=0, role="duty_officer"),
        EscalationLevel(level=1, role="sector_vice_chairman", after=600.0),
        EscalationLevel(level=2, role="chairman", after=1200.0),
    ]


class EscalationPolicy(_Strict):
    """How unacknowledged alerts climb from the duty officer to the province's leaders."""

    min_severity: Severity = "critical"
    levels: list[EscalationLevel] = Field(default_factory=_default_levels, min_length=1)
    flapping: Flapping = Field(default_factory=Flapping)

    @field_validator("levels")
    @classmethod
    def _levels_in_order(cls, levels: list[EscalationLevel]) -> list[EscalationLevel]:
        for index, level in enumerate(levels):
            if level.level != index:
                raise ValueError(f"levels must be numbered 0, 1, 2 … in order (got {level.level})")
            if index == 0 and level.after is not None:
                raise ValueError("level 0 is reached when the alert fires: no 'after'")
            if index > 0 and level.after is None:
                raise ValueError(f"level {index} needs 'after' (e.g. 10m)")
        return levels

    @property
    def max_level(self) -> int:
        return len(self.levels) - 1


class Catalog(_Strict):
    """Everything the platform knows about the province's sectors."""

    version: int = Field(ge=1, le=1)
    province: Province
    stale_factor: float = Field(default=3.0, gt=1.0, le=100.0)
    area_level: AreaLevel = Field(default_factory=_district_level)
    districts: list[District] = Field(min_length=1)
    sectors: list[Sector] = Field(min_length=1)
    teams: list[Team] = Field(default_factory=list)
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)

    def sector(self, sector_id: str) -> Sector | None:
        return next((s for s in self.sectors if s.id == sector_id), None)

    def team(self, team_id: str) -> Team | None:
        return next((t for t in self.teams if t.id == team_id), None)

    def district(self, code: str) -> District | None:
        return next((d for d in self.districts if d.code == code), None)

    def source(self, source_id: str) -> tuple[Sector, Source] | None:
        for sector in self.sectors:
            for source in sector.sources:
                if source.id == source_id:
                    return sector, source
        return None

    @property
    def sector_topics(self) -> list[str]:
        return [s.topic for s in self.sectors]


Problem = tuple[tuple[str | int, ...], str]

# What an alert message template may use (alerts/rules.py fills them in).
TEMPLATE_FIELDS: dict[str, object] = {
    "value": 1.5, "raise": 2.0, "clear": 1.0, "threshold": 2.0, "change": 50.0,
    "change_pct": 50.0, "over_min": 60.0, "for_min": 10.0, "unit": "%", "district": "D",
    "district_name": "D", "district_code": "d", "kpi_name": "K", "sector_name": "S",
    "source": "s", "source_name": "S", "rule": "r", "severity": "critical",
}  # fmt: skip


def template_problem(template: str) -> str | None:
    """Why a message template cannot be rendered, or None when it can."""
    try:
        for _text, name, _spec, _conversion in string.Formatter().parse(template):
            if name is not None and name not in TEMPLATE_FIELDS:
                known = ", ".join(sorted(TEMPLATE_FIELDS))
                return f"unknown placeholder {{{name}}} (known: {known})"
        template.format(**TEMPLATE_FIELDS)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        return f"bad template: {exc}"
    return None


def cross_check(catalog: Catalog) -> list[Problem]:
    """Rules that span entries (unique ids, references); each problem with its path."""
    problems: list[Problem] = []
    problems += _duplicates(("districts",), "code", [d.code for d in catalog.districts])
    problems += _duplicates(("sectors",), "id", [s.id for s in catalog.sectors])
    problems += _duplicates(("teams",), "id", [t.id for t in catalog.teams])
    problems += _team_problems(catalog)
    tiles = [d.tile for d in catalog.districts]
    for index, tile in enumerate(tiles):
        if tile is not None and tile in tiles[:index]:
            problems.append((("districts", index, "tile"), f"tile {list(tile)} is taken"))
    seen_sources: set[str] = set()
    for s_index, sector in enumerate(catalog.sectors):
        at = ("sectors", s_index)
        for index, source in enumerate(sector.sources):
            if source.id in seen_sources:
                problems.append(((*at, "sources", index, "id"), f"duplicate id {source.id!r}"))
            seen_sources.add(source.id)
        problems += _duplicates((*at, "event_types"), "id", [t.id for t in sector.event_types])
        problems += _duplicates((*at, "kpis"), "id", [k.id for k in sector.kpis])
        problems += _duplicates((*at, "alerts"), "id", [r.id for r in sector.alerts])
        kpi_ids = {k.id for k in sector.kpis}
        source_ids = {s.id for s in sector.sources}
        for index, kpi in enumerate(sector.kpis):
            event_type = sector.event_type(kpi.event_type)
            if event_type is None:
                problems.append(
                    ((*at, "kpis", index, "event_type"), f"unknown event type {kpi.event_type!r}")
                )
            elif (
                kpi.aggregation not in ("count", "rate_per_min", "distinct_count")
                and kpi.field == "value"
                and not event_type.measurement
            ):
                problems.append(
                    (
                        (*at, "kpis", index, "aggregation"),
                        f"{kpi.aggregation} needs a measured value; {event_type.id!r} has none",
                    )
                )
        for index, rule in enumerate(sector.alerts):
            if rule.kpi is not None and rule.kpi not in kpi_ids:
                problems.append(((*at, "alerts", index, "kpi"), f"unknown kpi {rule.kpi!r}"))
            if rule.source is not None and rule.source not in source_ids:
                problems.append(
                    ((*at, "alerts", index, "source"), f"unknown source {rule.source!r}")
                )
            for name in ("message_vi", "message_en"):
                if (problem := template_problem(getattr(rule, name))) is not None:
                    problems.append(((*at, "alerts", index, name), problem))
    return problems


def _team_problems(catalog: Catalog) -> list[Problem]:
    """Teams name sectors of the catalog, and a sector belongs to one team at most."""
    problems: list[Problem] = []
    known = {s.id for s in catalog.sectors}
    owner: dict[str, str] = {}
    for t_index, team in enumerate(catalog.teams):
        for index, sector in enumerate(team.sectors):
            where = ("teams", t_index, "sectors", index)
            if sector not in known:
                problems.append((where, f"unknown sector {sector!r}"))
            elif sector in owner and owner[sector] != team.id:
                problems.append((where, f"sector {sector!r} already belongs to {owner[sector]!r}"))
            else:
                owner[sector] = team.id
    return problems


def unowned_sectors(catalog: Catalog) -> list[str]:
    """Sectors no team follows (`ioc catalog check` says so; not an error)."""
    owned = {s for t in catalog.teams for s in t.sectors}
    return [s.id for s in catalog.sectors if catalog.teams and s.id not in owned]


def _duplicates(section: tuple[str | int, ...], field: str, ids: list[str]) -> list[Problem]:
    seen: set[str] = set()
    found: list[Problem] = []
    for index, item in enumerate(ids):
        if item in seen:
            found.append(((*section, index, field), f"duplicate {field} {item!r}"))
        seen.add(item)
    return found
