"""The schematic map of the province's areas: a tile cartogram from the catalog (pure).

Each area is a square tile at `[row, column]`; the catalog places them roughly by geography
(`tile:` of each area). Areas without a place are laid out row by row under the placed
ones, so a catalog of communes without positions still gets a map, just not a geographic
one. The area level and names are catalog data: nothing here knows about districts.
"""

from __future__ import annotations

import math
from typing import Any

from foundation.contract.catalog import Catalog

__all__ = ["map_config", "tile_layout"]


def tile_layout(catalog: Catalog) -> dict[str, tuple[int, int]]:
    """code -> (row, column) for every area of the catalog."""
    placed = {d.code: d.tile for d in catalog.districts if d.tile is not None}
    layout: dict[str, tuple[int, int]] = {code: (t[0], t[1]) for code, t in placed.items()}
    rest = [d.code for d in catalog.districts if d.tile is None]
    if not rest:
        return layout
    columns = max([c for _r, c in layout.values()] + [math.ceil(math.sqrt(len(rest))) - 1]) + 1
    row = max((r for r, _c in layout.values()), default=-1) + 1
    for index, code in enumerate(rest):
        layout[code] = (row + index // columns, index % columns)
    return layout


def map_config(catalog: Catalog) -> dict[str, Any]:
    """What a page needs to draw the map: the area level, and each area with its tile."""
    layout = tile_layout(catalog)
    return {
        "level": {"name_vi": catalog.area_level.name_vi, "name_en": catalog.area_level.name_en},
        "rows": max((r for r, _c in layout.values()), default=0) + 1,
        "columns": max((c for _r, c in layout.values()), default=0) + 1,
        "areas": [
            {
                "code": d.code,
                "name_vi": d.name_vi,
                "name_en": d.name_en,
                "short_vi": d.short_vi or d.name_vi,
                "short_en": d.short_en or d.name_en,
                "row": layout[d.code][0],
                "column": layout[d.code][1],
            }
            for d in catalog.districts
        ],
    }
