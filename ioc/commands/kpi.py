"""`ioc kpi [--sector S] [--json] [--groups] [--lang en]`: the latest KPI values."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from foundation.settings import Settings

__all__ = ["register"]


def register(commands: Any) -> None:
    kpi = commands.add_parser(
        "kpi", help="latest KPI values per KPI of a sector (or all), from the database"
    )
    kpi.add_argument("--sector", help="only this sector (default: every sector)")
    kpi.add_argument("--json", action="store_true", help="one JSON object per KPI and line")
    kpi.add_argument("--groups", action="store_true", help="also one line per district/source")
    kpi.add_argument("--lang", choices=("vi", "en"), default="vi", help="names and words")
    kpi.set_defaults(run=_cmd_kpi)


async def _cmd_kpi(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.history.kpi_text import render_latest
    from consumers.history.queries import HistoryCatalog, latest_points_query
    from consumers.history.routes import LATEST_LOOKBACK
    from consumers.history.store import HistoryStore, open_read_pool
    from consumers.history.views import latest_view
    from foundation.contract.catalog import load_catalog
    from foundation.errors import DatabaseError, UnknownSectorError
    from ioc.runtime import resolve_database_url

    catalog = HistoryCatalog(load_catalog(settings.catalog))
    if args.sector is not None and catalog.catalog.sector(args.sector) is None:
        known = ", ".join(s.id for s in catalog.catalog.sectors)
        raise UnknownSectorError(f"no sector {args.sector!r} in the catalog (known: {known})")
    sectors = [s for s in catalog.catalog.sectors if args.sector in (None, s.id)]
    url = resolve_database_url(settings)
    timeout = settings.connect_timeout
    pool = await open_read_pool(
        url, timeout=timeout, statement_timeout=settings.history_query_timeout, max_size=1
    )
    try:
        store = HistoryStore(pool=pool, timeout=settings.history_query_timeout)
        now = time.time()
        query = latest_points_query([s.id for s in sectors], now - LATEST_LOOKBACK)
        try:
            rows = await store.fetch(query)
        except DatabaseError as exc:
            raise DatabaseError(f"{exc.message} (has `ioc db migrate` run?)") from exc
    finally:
        await pool.close()
    views = [
        (sector, latest_view(catalog.sector_kpis(sector.id), rows, now=now)) for sector in sectors
    ]
    if args.json:
        for _sector, kpis in views:
            for latest in kpis:
                print(json.dumps(latest.to_json(), ensure_ascii=False))
        return 0
    areas = {d.code: (d.name_vi, d.name_en) for d in catalog.catalog.districts}
    for line in render_latest(views, lang=args.lang, groups=args.groups, area_names=areas):
        print(line)
    return 0
