"""`ioc catalog check [FILE]`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from foundation.settings import Settings

__all__ = ["register"]


def register(commands: Any) -> None:
    catalog = commands.add_parser("catalog", help="the sector catalog")
    actions = catalog.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a catalog file; problems with file:line")
    check.add_argument(
        "file", nargs="?", type=Path, help="catalog YAML (default: IOC_CATALOG or the built-in one)"
    )
    check.set_defaults(run=_cmd_catalog_check)


async def _cmd_catalog_check(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.contract.catalog import load_catalog, unowned_sectors

    catalog = load_catalog(args.file or settings.catalog)
    counts = {
        "sectors": len(catalog.sectors),
        "sources": sum(len(s.sources) for s in catalog.sectors),
        "event types": sum(len(s.event_types) for s in catalog.sectors),
        "KPIs": sum(len(s.kpis) for s in catalog.sectors),
        "alert rules": sum(len(s.alerts) for s in catalog.sectors),
        "areas": len(catalog.districts),
        "teams": len(catalog.teams),
    }
    summary = ", ".join(f"{n} {what}" for what, n in counts.items())
    print(f"catalog ok: {catalog.province.name_vi}: {summary}")
    print(f"areas: {catalog.area_level.name_vi} ({catalog.area_level.name_en})")
    for team in catalog.teams:
        print(f"team {team.id}: {team.name_vi} · {team.leader_vi} · {', '.join(team.sectors)}")
    if unowned := unowned_sectors(catalog):
        print(f"note: no team follows {', '.join(unowned)}")
    return 0
