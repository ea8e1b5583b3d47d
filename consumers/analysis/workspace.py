"""The analysis workspace's API (served by the gateway under /api/analysis/…): teams, the
KPIs of a team with their figures over a range, one KPI in detail with its areas, the events
behind a point, and exports (CSV, XLSX).

Transport-free: each call takes the caller's token claims and the query parameters and
returns a JSON-able dict (or file bytes); refusals are `HistoryQueryError` with the status
the gateway answers with.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from consumers.analysis.areas import map_config
from consumers.analysis.data import align_up, events_between, kpi_buckets
from consumers.analysis.figures import (
    RANGES,
    RangeSpec,
    area_figures,
    period_figure,
    province_series,
)
from consumers.history import HistoryCatalog, RowSource
from consumers.history.queries import KpiEntry
from consumers.reports.xlsx import workbook_bytes
from foundation.auth.tokens import TokenClaims
from foundation.contract.catalog import Catalog
from foundation.errors import HistoryQueryError

__all__ = ["ALL_SECTORS", "ExportFile", "Workspace", "workspace_config"]

ALL_SECTORS: Final = "all"  # the pseudo-team of a catalog without teams, or of an unscoped token
_CONCURRENT: Final = 4  # queries in flight for one summary


@dataclass(frozen=True, slots=True)
class ExportFile:
    filename: str
    content_type: str
    body: bytes


def _teams(catalog: Catalog, claims: TokenClaims) -> list[dict[str, Any]]:
    """The teams a token may look at, each with the sectors of it the token covers."""
    found = []
    for team in catalog.teams:
        if claims.team is not None and team.id != claims.team:
            continue
        sectors = [s for s in team.sectors if claims.allows_sector(s)]
        if sectors:
            found.append(
                {"id": team.id, "name_vi": team.name_vi, "name_en": team.name_en,
                 "leader_vi": team.leader_vi, "leader_en": team.leader_en, "sectors": sectors}
            )  # fmt: skip
    if claims.team is None and (not catalog.teams or claims.sectors is None):
        sectors = [s.id for s in catalog.sectors if claims.allows_sector(s.id)]
        found.append(
            {"id": ALL_SECTORS, "name_vi": "Toàn bộ lĩnh vực", "name_en": "All sectors",
             "leader_vi": "", "leader_en": "", "sectors": sectors}
        )  # fmt: skip
    return found


def workspace_config(catalog: Catalog) -> dict[str, Any]:
    """What the page loads first: province, sectors with their KPIs, ranges, the map."""
    return {
        "province": {
            "name_vi": catalog.province.name_vi,
            "name_en": catalog.province.name_en,
            "timezone": catalog.province.timezone,
        },
        "ranges": list(RANGES),
        "sectors": [
            {
                "id": s.id,
                "name_vi": s.name_vi,
                "name_en": s.name_en,
                "kpis": [
                    {
                        "key": f"{s.id}.{k.id}",
                        "name_vi": k.name_vi,
                        "name_en": k.name_en,
                        "unit": k.unit,
                        "areas": "district" in k.group_by,
                        "target": k.target.model_dump() if k.target else None,
                    }
                    for k in s.kpis
                ],
            }
            for s in catalog.sectors
        ],
        "map": map_config(catalog),
    }


class Workspace:
    """Answers the workspace's questions from the storage tables."""

    def __init__(
        self, *, rows: RowSource, catalog: Catalog, clock: Callable[[], float] = time.time
    ) -> None:
        self._rows = rows
        self._catalog = catalog
        self._history = HistoryCatalog(catalog)
        self._clock = clock

    # -- parameters

    def _team(self, claims: TokenClaims, team_id: str | None) -> dict[str, Any]:
        teams = _teams(self._catalog, claims)
        if not teams:
            raise HistoryQueryError("forbidden", "this token covers no team's sectors", status=403)
        if team_id is None:
            return teams[0]
        for team in teams:
            if team["id"] == team_id:
                return team
        raise HistoryQueryError(
            "forbidden", f"this token may not read team {team_id!r}", status=403
        )

    def _entry(self, claims: TokenClaims, key: str | None) -> KpiEntry:
        if not key:
            raise HistoryQueryError("bad_parameter", "kpi is required (<sector>.<kpi>)")
        entry = self._history.kpi(key)
        if not claims.allows_sector(entry.sector.id) or (
            claims.team is not None
            and (team := self._catalog.team(claims.team)) is not None
            and entry.sector.id not in team.sectors
        ):
            raise HistoryQueryError("forbidden", f"this token may not read {key}", status=403)
        return entry

    @staticmethod
    def _range(name: str | None) -> tuple[str, RangeSpec]:
        name = name or "24h"
        spec = RANGES.get(name)
        if spec is None:
            raise HistoryQueryError("bad_range", f"range is one of {', '.join(RANGES)}")
        return name, spec

    def _span(self, spec: RangeSpec) -> tuple[float, float, float]:
        end = align_up(self._clock(), spec.width)
        return end - 2 * spec.seconds, end - spec.seconds, end

    # -- answers

    @staticmethod
    def teams_of(catalog: Catalog, claims: TokenClaims) -> dict[str, Any]:
        """The teams the token may look at (needs no database)."""
        return {"teams": _teams(catalog, claims), "team": claims.team, "name": claims.name}

    async def _kpi_figures(
        self, entry: KpiEntry, spec: RangeSpec, *, with_areas: bool
    ) -> dict[str, Any]:
        previous_start, start, end = self._span(spec)
        buckets = await kpi_buckets(
            self._rows, entry, start=previous_start, end=end, bucket=spec.bucket, group=None
        )
        kpi = entry.kpi
        series = province_series(kpi, buckets)
        figure = period_figure(kpi, series, start=start, end=end, previous_start=previous_start)
        answer: dict[str, Any] = {
            "kpi": entry.key,
            "sector": entry.sector.id,
            "name_vi": kpi.name_vi,
            "name_en": kpi.name_en,
            "unit": kpi.unit,
            "target": kpi.target.model_dump() if kpi.target else None,
            "areas_available": "district" in kpi.group_by,
            "bucket": spec.bucket,
            "from": start,
            "to": end,
            **figure.to_json(),
            "series": [[t, v] for t, v in series if t >= start],
            "previous_series": [[t + spec.seconds, v] for t, v in series if t < start],
        }
        if with_areas and "district" in kpi.group_by:
            codes = [d.code for d in self._catalog.districts]
            answer["areas"] = [
                a.to_json() for a in area_figures(kpi, buckets, codes, start=start, end=end)
            ]
        return answer

    async def summary(self, claims: TokenClaims, query: Mapping[str, str]) -> dict[str, Any]:
        """Every KPI of the team's sectors with its figures over the range."""
        team = self._team(claims, query.get("team"))
        range_name, spec = self._range(query.get("range"))
        entries = [e for s in team["sectors"] for e in self._history.sector_kpis(s)]
        limit = asyncio.Semaphore(_CONCURRENT)

        async def one(entry: KpiEntry) -> dict[str, Any]:
            async with limit:
                return await self._kpi_figures(entry, spec, with_areas=False)

        kpis = await asyncio.gather(*(one(e) for e in entries))
        return {"team": team, "range": range_name, "kpis": list(kpis), "as_of": self._clock()}

    async def kpi(self, claims: TokenClaims, query: Mapping[str, str]) -> dict[str, Any]:
        """One KPI over the range: province series, the period before, its areas."""
        entry = self._entry(claims, query.get("kpi"))
        range_name, spec = self._range(query.get("range"))
        answer = await self._kpi_figures(entry, spec, with_areas=True)
        return {"range": range_name, **answer}

    async def events(self, claims: TokenClaims, query: Mapping[str, str]) -> dict[str, Any]:
        """The events behind one bucket of a KPI's chart (one area, or all)."""
        entry = self._entry(claims, query.get("kpi"))
        _name, spec = self._range(query.get("range"))
        try:
            start = float(query["start"])
        except (KeyError, ValueError) as exc:
            raise HistoryQueryError("bad_parameter", "start is the bucket's Unix time") from exc
        area = query.get("area") or None
        events = await events_between(
            self._rows, entry, start=start, end=start + spec.width, area=area
        )
        return {"kpi": entry.key, "start": start, "end": start + spec.width, "area": area,
                "event_type": entry.kpi.event_type, "events": events}  # fmt: skip

    async def export(self, claims: TokenClaims, query: Mapping[str, str]) -> ExportFile:
        """What the page shows as CSV (one table) or XLSX (every table)."""
        fmt = query.get("format", "csv")
        if fmt not in ("csv", "xlsx"):
            raise HistoryQueryError("bad_parameter", "format is csv or xlsx")
        summary = await self.summary(claims, query)
        names = {s.id: s.name_vi for s in self._catalog.sectors}
        header = ["Lĩnh vực", "Chỉ số", "Mã", "Đơn vị", "Giá trị", "Kỳ trước", "Thay đổi %",
                  "Mục tiêu", "Kết quả", "Tỷ lệ kỳ đạt"]  # fmt: skip
        rows = [
            [
                names.get(k["sector"], k["sector"]), k["name_vi"], k["kpi"], k["unit"],
                k["value"], k["previous"], k["change_pct"],
                k["target"]["value"] if k["target"] else None,
                None if k["met"] is None else ("Đạt" if k["met"] else "Chưa đạt"),
                k["on_target_share"],
            ]
            for k in summary["kpis"]
        ]  # fmt: skip
        sheets: list[tuple[str, list[str], list[list[Any]]]] = [("Chỉ tiêu", header, rows)]
        if query.get("kpi"):
            detail = await self.kpi(claims, query)
            zone = self._catalog.province.timezone
            sheets.append(
                ("Chuỗi số liệu", ["Thời điểm (Unix)", "Thời điểm", "Giá trị"],
                 [[t, _iso(t, zone), v] for t, v in detail["series"]])
            )  # fmt: skip
            if "areas" in detail:
                area_names = {d.code: d.name_vi for d in self._catalog.districts}
                sheets.append(
                    ("Theo địa bàn", ["Địa bàn", "Mã", "Giá trị", "Đạt"],
                     [[area_names.get(a["code"], a["code"]), a["code"], a["value"], a["met"]]
                      for a in detail["areas"]])
                )  # fmt: skip
        base = f"ioc-{summary['team']['id']}-{summary['range']}"
        if fmt == "xlsx":
            return ExportFile(
                f"{base}.xlsx",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                workbook_bytes(sheets),
            )
        _title, head, table = sheets[-1] if query.get("table") == "detail" else sheets[0]
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(head)
        writer.writerows([["" if c is None else c for c in row] for row in table])
        # A byte-order mark: spreadsheet programs then read the Vietnamese as UTF-8.
        return ExportFile(
            f"{base}.csv", "text/csv; charset=utf-8", ("\ufeff" + out.getvalue()).encode()
        )


def _iso(at: float, zone: str) -> str:
    return datetime.fromtimestamp(at, ZoneInfo(zone)).isoformat(timespec="minutes")
