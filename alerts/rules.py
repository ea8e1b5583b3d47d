"""Alert rules from the catalog: who they watch, their labels, fingerprints, conditions, messages.

Pure: no I/O, no clock. The engine (alerts/engine.py) feeds values in and keeps state.

Conditions, as the README's "Alerts: rules and lifecycle" section documents them:

- threshold `above`: raises when value > raise, clears when value <= clear (`below`: value <
  raise, value >= clear). Between the two levels the previous answer holds (hysteresis); with
  clear == raise the two tests are exact complements.
- rate_of_change: change = (value - baseline) / |baseline| × 100, where the baseline is the
  value of the series' window that started `over` seconds earlier. `above` (the default) raises
  when change >= change_pct, `below` when change <= -change_pct, `either` on both; it clears
  when the change is back under `clear` (default: change_pct). No baseline, or a baseline of 0:
  no answer (the state holds).
"""

from __future__ import annotations

import hashlib
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from foundation.contract.alerts import Fingerprint
from foundation.contract.catalog import AlertRule, Catalog, Kpi, Sector, Source

__all__ = [
    "CUMULATIVE",
    "NO_GROUP",
    "RuleBook",
    "RuleSpec",
    "change_percent",
    "fingerprint",
    "rate_condition",
    "threshold_condition",
]

NO_GROUP = "*"  # streams.kpi_plan.NO_GROUP: the group of a KPI without group-by
# A provisional point of these aggregations only grows while its window is open: it is a lower
# bound, good for "above"/"rise" tests and misleading for "below"/"fall" ones.
CUMULATIVE = frozenset({"count", "sum", "rate_per_min", "distinct_count"})


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One catalog rule with what the engine needs to evaluate it."""

    rule: AlertRule
    sector: Sector
    kpi: Kpi | None
    source: Source | None

    @property
    def key(self) -> str:
        """`<sector>.<rule id>`: rule ids are unique within a sector only."""
        return f"{self.sector.id}.{self.rule.id}"

    @property
    def kpi_key(self) -> str | None:
        """The KPI's key on `ioc.kpi` records (`<sector>.<kpi id>`)."""
        return None if self.kpi is None else f"{self.sector.id}.{self.kpi.id}"

    @property
    def kind(self) -> str:
        return self.rule.kind

    @property
    def cumulative(self) -> bool:
        return self.kpi is not None and self.kpi.aggregation in CUMULATIVE

    def uses_provisional(self) -> bool:
        """Whether provisional points may be evaluated (not for falls of cumulative KPIs)."""
        if not self.cumulative:
            return True
        return self.rule.op in (None, "above")

    def labels(self, group: str = NO_GROUP) -> dict[str, str]:
        """Labels of the alert this rule raises for a KPI group (district or source)."""
        labels: dict[str, str] = {"sector": self.sector.id}
        if self.kpi is not None:
            labels["kpi"] = self.kpi.id
            if group not in (NO_GROUP, "") and self.kpi.group_by:
                labels[self.kpi.group_by[0]] = group
        if self.source is not None:
            labels["source"] = self.source.id
        return labels


def fingerprint(rule_id: str, labels: Mapping[str, str]) -> Fingerprint:
    """16 hex chars of sha256 over the rule id and the sorted labels: short enough to type."""
    text = rule_id + "".join(f"\x1f{k}\x1e{v}" for k, v in sorted(labels.items()))
    return Fingerprint(hashlib.sha256(text.encode()).hexdigest()[:16])


def threshold_condition(rule: AlertRule, value: float, latched: bool) -> bool:
    """The latched condition after seeing value (hysteresis between raise and clear)."""
    if rule.raise_at is None:  # not a threshold rule (the catalog model makes this impossible)
        return latched
    clear = rule.clear_at if rule.clear_at is not None else rule.raise_at
    if rule.op == "below":
        return value < rule.raise_at or (latched and value < clear)
    return value > rule.raise_at or (latched and value > clear)


def change_percent(value: float, baseline: float) -> float | None:
    """Relative change in percent, None when the baseline is 0 (no meaningful ratio)."""
    if baseline == 0 or not math.isfinite(baseline) or not math.isfinite(value):
        return None
    return (value - baseline) / abs(baseline) * 100.0


def rate_condition(rule: AlertRule, change: float, latched: bool) -> bool:
    """The latched condition of a rate-of-change rule after seeing a change in percent."""
    if rule.change_pct is None:  # not a rate rule (the catalog model makes this impossible)
        return latched
    clear = rule.clear_at if rule.clear_at is not None else rule.change_pct
    rise = change >= rule.change_pct or (latched and change >= clear)
    fall = -change >= rule.change_pct or (latched and -change >= clear)
    if rule.op == "below":
        return fall
    if rule.op == "either":
        return rise or fall
    return rise


class RuleBook:
    """Every rule of the catalog, indexed by what feeds it, and the message renderer."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.specs: list[RuleSpec] = []
        self.by_kpi: dict[str, list[RuleSpec]] = {}
        self.by_source: dict[str, list[RuleSpec]] = {}
        self.kpi_absence: list[RuleSpec] = []
        self.kpis: dict[str, tuple[Sector, Kpi]] = {}
        for sector in catalog.sectors:
            kpis = {k.id: k for k in sector.kpis}
            sources = {s.id: s for s in sector.sources}
            for kpi in sector.kpis:
                self.kpis[f"{sector.id}.{kpi.id}"] = (sector, kpi)
            for rule in sector.alerts:
                watched = kpis.get(rule.kpi) if rule.kpi else None
                source = sources.get(rule.source) if rule.source else None
                spec = RuleSpec(rule, sector, watched, source)
                self.specs.append(spec)
                if rule.kind == "absence":
                    if source is not None:
                        self.by_source.setdefault(source.id, []).append(spec)
                    elif watched is not None:
                        self.kpi_absence.append(spec)
                elif spec.kpi_key is not None:
                    self.by_kpi.setdefault(spec.kpi_key, []).append(spec)
        self.by_key = {spec.key: spec for spec in self.specs}
        self._districts = {d.code: d for d in catalog.districts}

    def sector_sources(self, sector_id: str) -> list[str]:
        sector = self.catalog.sector(sector_id)
        return [] if sector is None else [s.id for s in sector.sources]

    def render(
        self,
        spec: RuleSpec,
        labels: Mapping[str, str],
        *,
        value: float | None,
        change: float | None = None,
    ) -> tuple[str, str]:
        """(Vietnamese, English) messages of the rule with the catalog's names filled in."""
        return (
            self._render(spec.rule.message_vi, spec, labels, value, change, vi=True),
            self._render(spec.rule.message_en, spec, labels, value, change, vi=False),
        )

    def _render(
        self,
        template: str,
        spec: RuleSpec,
        labels: Mapping[str, str],
        value: float | None,
        change: float | None,
        *,
        vi: bool,
    ) -> str:
        context = self.template_context(spec, labels, value, change, vi=vi)
        try:
            return _Formatter(vi=vi).vformat(template, (), context)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return template  # checked at catalog load; never lose an alert over its wording

    def template_context(
        self,
        spec: RuleSpec,
        labels: Mapping[str, str],
        value: float | None,
        change: float | None,
        *,
        vi: bool,
    ) -> dict[str, Any]:
        """What a template may use (the names of foundation.contract.catalog's TEMPLATE_FIELDS)."""
        rule = spec.rule
        province = self.catalog.province
        district = self._districts.get(labels.get("district", ""))
        area = district or province
        source_id = labels.get("source")
        source = self.catalog.source(source_id) if source_id else None
        return {
            "value": value,
            "raise": rule.raise_at,
            "clear": rule.clear_at if rule.clear_at is not None else rule.raise_at,
            "threshold": rule.raise_at,
            "change": change,
            "change_pct": rule.change_pct,
            "over_min": None if rule.over is None else rule.over / 60.0,
            "for_min": rule.for_ / 60.0,
            "unit": spec.kpi.unit if spec.kpi else "",
            "district": area.name_vi if vi else area.name_en,
            "district_name": area.name_vi if vi else area.name_en,
            "district_code": district.code if district else "",
            "kpi_name": _name(spec.kpi, vi),
            "sector_name": _name(spec.sector, vi),
            "source": source_id or "",
            "source_name": _name(source[1], vi) if source else "",
            "rule": rule.id,
            "severity": rule.severity,
        }


def _name(named: Kpi | Sector | Source | None, vi: bool) -> str:
    if named is None:
        return ""
    return named.name_vi if vi else named.name_en


class _Formatter(string.Formatter):
    """`—` for a missing number; Vietnamese decimal comma and thousands dot."""

    def __init__(self, *, vi: bool) -> None:
        self._vi = vi

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return "—"
        text: str = super().format_field(value, format_spec)
        if self._vi and isinstance(value, int | float) and not isinstance(value, bool):
            text = text.translate(_SWAP)
        return text


_SWAP = str.maketrans({".": ",", ",": "."})
