"""What the wall page needs from the catalog: sectors, their headline KPIs, labels (pure).

Per sector the wall shows up to three KPIs: those the catalog marks `headline`, then those
with a target, in catalog order. Display names come from the catalog (Vietnamese and English).
"""

from __future__ import annotations

from typing import Any

from consumers.analysis.areas import map_config
from consumers.analysis.figures import ADDITIVE
from foundation.contract.alerts import SEVERITY_LABELS, SEVERITY_RANK, STATE_LABELS
from foundation.contract.catalog import Catalog

__all__ = ["MAX_TILE_KPIS", "wall_config"]

MAX_TILE_KPIS = 3


def wall_config(catalog: Catalog) -> dict[str, Any]:
    """The JSON document the page loads at start (`/config.json`)."""
    sectors = []
    for sector in catalog.sectors:
        chosen = [k for k in sector.kpis if k.headline]
        chosen += [k for k in sector.kpis if k.target is not None and k not in chosen]
        sectors.append(
            {
                "id": sector.id,
                "name_vi": sector.name_vi,
                "name_en": sector.name_en,
                "sources": [
                    {"id": s.id, "name_vi": s.name_vi, "name_en": s.name_en} for s in sector.sources
                ],
                "kpis": [
                    {
                        "id": k.id,
                        "name_vi": k.name_vi,
                        "name_en": k.name_en,
                        "unit": k.unit,
                        "aggregation": k.aggregation,
                        # Values add up over groups, and a window without events is 0.
                        "additive": k.aggregation in ADDITIVE,
                        "grouped": bool(k.group_by),
                        "window": k.window.size,
                        "target": (
                            {"value": k.target.value, "direction": k.target.direction}
                            if k.target
                            else None
                        ),
                    }
                    for k in chosen[:MAX_TILE_KPIS]
                ],
            }
        )
    return {
        "province": {
            "id": catalog.province.id,
            "name_vi": catalog.province.name_vi,
            "name_en": catalog.province.name_en,
            "timezone": catalog.province.timezone,
        },
        "sectors": sectors,
        "severity": {
            k: {"rank": SEVERITY_RANK[k], "vi": vi, "en": en}
            for k, (vi, en) in SEVERITY_LABELS.items()
        },
        "states": {k: {"vi": vi, "en": en} for k, (vi, en) in STATE_LABELS.items()},
        "map": map_config(catalog),
    }
