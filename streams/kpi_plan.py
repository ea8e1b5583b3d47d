"""Which KPIs an event feeds, flattened from the catalog for the hot path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from foundation.contract.catalog import Catalog
from foundation.contract.envelope import Event
from foundation.contract.kpi import NO_GROUP, series_key
from streams.aggregations import AGGREGATORS, Aggregator
from streams.windows import WindowSpec

__all__ = ["NO_GROUP", "KpiPlan", "KpiSpec", "series_key"]


@dataclass(frozen=True, slots=True)
class KpiSpec:
    """One KPI as the worker computes it."""

    key: str  # "<sector>.<kpi id>", unique across the catalog
    sector: str
    kpi_id: str
    aggregation: str
    aggregator: Aggregator
    field: str
    data_key: str | None
    window: WindowSpec
    group_by: str | None  # "district", "source" or None

    def group_of(self, event: Event) -> str:
        if self.group_by == "district":
            return event.district or NO_GROUP
        if self.group_by == "source":
            return event.source
        return NO_GROUP

    def value_of(self, event: Event) -> Any:
        """The value this KPI aggregates, or None when the event does not carry it."""
        if self.data_key is None:
            return event.value if self.aggregation not in ("count", "rate_per_min") else 1
        return None if event.data is None else event.data.get(self.data_key)


class KpiPlan:
    """(sector, event type) → the KPIs it feeds; KPI key → spec."""

    def __init__(
        self, catalog: Catalog, *, aggregators: Mapping[str, Aggregator] = AGGREGATORS
    ) -> None:
        """`aggregators` by aggregation name (a benchmark compares other implementations)."""
        self.by_type: dict[tuple[str, str], list[KpiSpec]] = {}
        self.by_key: dict[str, KpiSpec] = {}
        self._series: dict[str, KpiSpec] = {}
        for sector in catalog.sectors:
            for kpi in sector.kpis:
                data_key = (
                    kpi.field.removeprefix("data.") if kpi.field.startswith("data.") else None
                )
                window = kpi.window
                spec = KpiSpec(
                    key=f"{sector.id}.{kpi.id}",
                    sector=sector.id,
                    kpi_id=kpi.id,
                    aggregation=kpi.aggregation,
                    aggregator=aggregators[kpi.aggregation],
                    field=kpi.field,
                    data_key=data_key,
                    window=WindowSpec(window.size, window.hop or window.size, window.grace),
                    group_by=kpi.group_by[0] if kpi.group_by else None,
                )
                self.by_type.setdefault((sector.id, kpi.event_type), []).append(spec)
                self.by_key[spec.key] = spec
                # The series it can have: events' districts and sources are the catalog's.
                if spec.group_by == "district":
                    groups = [NO_GROUP, *(district.code for district in catalog.districts)]
                elif spec.group_by == "source":
                    groups = [source.id for source in sector.sources]
                else:
                    groups = [NO_GROUP]
                for group in groups:
                    self._series[series_key(spec.key, group)] = spec

    def specs_for(self, event: Event) -> list[KpiSpec]:
        return self.by_type.get((event.sector, event.type), [])

    def spec_of(self, series: str) -> KpiSpec | None:
        """The KPI of a series key, or None when the catalog cannot make that series (a KPI
        or a group it does not have)."""
        return self._series.get(series)
