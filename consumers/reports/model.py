"""The morning report of an analysis team: its figures, built from stored data (pure core).

`build_report` turns what `gather_report` read (KPI buckets, alert transitions, source gaps)
into a `Report`: each KPI of the team's sectors over the period against its target (đạt /
chưa đạt) with the period before and its trend, the alerts opened, acknowledged and
resolved (times to acknowledge), and the sources that went silent. A daily edition covers
one day of the province (hourly trend), a weekly one Monday to Sunday (daily trend).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from consumers.analysis.data import SourceGap, alert_transitions_between, kpi_buckets, source_gaps
from consumers.analysis.figures import Bucket, PeriodFigure, period_figure, province_series
from consumers.history import HistoryCatalog, RowSource
from foundation.contract.alerts import SEVERITY_RANK, AlertTransition
from foundation.contract.catalog import Catalog, Kpi, Team

__all__ = [
    "AlertLine",
    "AlertSummary",
    "Edition",
    "KpiLine",
    "Period",
    "Report",
    "SilentSource",
    "build_report",
    "gather_report",
    "report_period",
]

Edition = Literal["daily", "weekly"]
MAX_ALERT_LINES: Final = 15


@dataclass(frozen=True, slots=True)
class Period:
    """[start, end) of an edition, with the period before it, in the province's time."""

    edition: Edition
    first_day: date
    last_day: date
    start: float
    end: float
    previous_start: float

    @property
    def key(self) -> str:
        """What identifies the edition of a team: `daily/2026-12-02`, `weekly/2026-11-30`."""
        return f"{self.edition}/{self.first_day.isoformat()}"


def report_period(edition: Edition, day: date, zone: ZoneInfo) -> Period:
    """The daily edition of `day`, or the weekly edition of the Monday–Sunday week holding it."""
    first = day if edition == "daily" else day - timedelta(days=day.weekday())
    days = 1 if edition == "daily" else 7
    last = first + timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=zone).timestamp()
    end_day = last + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=zone).timestamp()
    before = first - timedelta(days=days)
    previous_start = datetime(before.year, before.month, before.day, tzinfo=zone).timestamp()
    return Period(edition, first, last, start, end, previous_start)


@dataclass(frozen=True, slots=True)
class KpiLine:
    """One KPI over the period."""

    key: str
    sector: str
    sector_vi: str
    sector_en: str
    kpi: Kpi
    figure: PeriodFigure
    trend: list[float | None]  # one per hour (daily) or day (weekly), None: no data

    @property
    def status(self) -> Literal["met", "missed", "none"]:
        if self.figure.met is None:
            return "none"
        return "met" if self.figure.met else "missed"


@dataclass(frozen=True, slots=True)
class AlertLine:
    """An alert that opened in the period, as it stood at the period's end."""

    fingerprint: str
    sector: str
    severity: str
    message_vi: str
    message_en: str
    started_at: float
    state: str
    acknowledged_by: str | None
    ack_seconds: float | None
    resolved_at: float | None


@dataclass(frozen=True, slots=True)
class AlertSummary:
    """Alerts of the team's sectors in the period."""

    opened: int
    acknowledged: int
    resolved: int
    open_at_end: int
    ack_median: float | None  # seconds from firing to acknowledgement
    ack_max: float | None
    by_severity: dict[str, int]
    lines: list[AlertLine]


@dataclass(frozen=True, slots=True)
class SilentSource:
    """A department system that went silent longer than its stale threshold."""

    source: str
    sector: str
    name_vi: str
    name_en: str
    silences: int
    longest_gap: float
    events: int


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the HTML, PDF and XLSX renderings show."""

    province_vi: str
    province_en: str
    team: Team
    period: Period
    generated_at: float
    timezone: str
    kpis: list[KpiLine]
    alerts: AlertSummary
    silent: list[SilentSource]
    sources_total: int
    sector_names: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def met(self) -> int:
        return sum(1 for k in self.kpis if k.status == "met")

    @property
    def missed(self) -> int:
        return sum(1 for k in self.kpis if k.status == "missed")

    @property
    def filename(self) -> str:
        return f"bao-cao-{self.team.id}-{self.period.edition}-{self.period.first_day.isoformat()}"


def _trend(
    series: Sequence[tuple[float, float]], period: Period, width: float
) -> list[float | None]:
    steps = round((period.end - period.start) / width)
    values: list[float | None] = [None] * steps
    for at, value in series:
        index = int((at - period.start) // width)
        if 0 <= index < steps:
            values[index] = value
    return values


def _alert_summary(transitions: Sequence[AlertTransition], period: Period) -> AlertSummary:
    opened: dict[tuple[str, float], AlertLine] = {}
    last: dict[str, AlertTransition] = {}
    acks: list[float] = []
    acknowledged = resolved = 0
    for t in transitions:
        last[t.fingerprint] = t
        episode = (t.fingerprint, t.started_at)
        if t.transition in ("fire", "refire") and period.start <= t.at < period.end:
            opened[episode] = AlertLine(
                t.fingerprint, t.sector, t.severity, t.message_vi, t.message_en, t.started_at,
                t.state, None, None, None,
            )  # fmt: skip
        elif t.transition == "ack" and period.start <= t.at < period.end:
            acknowledged += 1
            acks.append(t.at - t.started_at)
            if episode in opened:
                opened[episode] = _replace(
                    opened[episode],
                    acknowledged_by=t.acknowledged_by,
                    ack_seconds=t.at - t.started_at,
                )
        elif t.transition == "resolve" and period.start <= t.at < period.end:
            resolved += 1
            if episode in opened:
                opened[episode] = _replace(opened[episode], resolved_at=t.at)
    lines = []
    for (fingerprint, started), line in opened.items():
        current = last[fingerprint]
        state = current.state if current.started_at == started else "resolved"
        lines.append(_replace(line, state=state))
    lines.sort(key=lambda a: (-SEVERITY_RANK.get(a.severity, 0), a.started_at))
    by_severity: dict[str, int] = {}
    for line in lines:
        by_severity[line.severity] = by_severity.get(line.severity, 0) + 1
    open_at_end = sum(1 for t in last.values() if t.state in ("firing", "acknowledged"))
    return AlertSummary(
        opened=len(opened),
        acknowledged=acknowledged,
        resolved=resolved,
        open_at_end=open_at_end,
        ack_median=statistics.median(acks) if acks else None,
        ack_max=max(acks) if acks else None,
        by_severity=by_severity,
        lines=lines[:MAX_ALERT_LINES],
    )


def _replace(line: AlertLine, **changes: Any) -> AlertLine:
    values = {name: getattr(line, name) for name in AlertLine.__slots__}
    values.update(changes)
    return AlertLine(**values)


def build_report(
    catalog: Catalog,
    team: Team,
    period: Period,
    *,
    buckets: Mapping[str, Sequence[Bucket]],
    transitions: Sequence[AlertTransition],
    gaps: Sequence[SourceGap],
    generated_at: float,
) -> Report:
    """The report from the data read for it (`buckets` per KPI key `<sector>.<kpi>`)."""
    width = 3600.0 if period.edition == "daily" else 86400.0
    lines = []
    for sector_id in team.sectors:
        sector = catalog.sector(sector_id)
        if sector is None:
            continue
        for kpi in sector.kpis:
            key = f"{sector.id}.{kpi.id}"
            series = province_series(kpi, buckets.get(key, ()))
            figure = period_figure(
                kpi,
                series,
                start=period.start,
                end=period.end,
                previous_start=period.previous_start,
            )
            lines.append(
                KpiLine(key, sector.id, sector.name_vi, sector.name_en, kpi, figure,
                        _trend(series, period, width))
            )  # fmt: skip
    silent = []
    for gap in gaps:
        found = catalog.source(gap.source)
        if found is None or gap.silences == 0:
            continue
        sector, source = found
        silent.append(
            SilentSource(gap.source, sector.id, source.name_vi, source.name_en, gap.silences,
                         gap.longest_gap, gap.events)
        )  # fmt: skip
    silent.sort(key=lambda s: -s.longest_gap)
    sources_total = sum(len(s.sources) for s in catalog.sectors if s.id in team.sectors)
    return Report(
        province_vi=catalog.province.name_vi,
        province_en=catalog.province.name_en,
        team=team,
        period=period,
        generated_at=generated_at,
        timezone=catalog.province.timezone,
        kpis=lines,
        alerts=_alert_summary(transitions, period),
        silent=silent,
        sources_total=sources_total,
        sector_names={s.id: (s.name_vi, s.name_en) for s in catalog.sectors},
    )


async def gather_report(
    rows: RowSource, catalog: Catalog, team: Team, period: Period, *, now: float
) -> Report:
    """Read the period's data for the team and build its report."""
    history = HistoryCatalog(catalog)
    bucket = "1h" if period.edition == "daily" else "1d"
    buckets: dict[str, list[Bucket]] = {}
    thresholds: dict[str, float] = {}
    for sector_id in team.sectors:
        for entry in history.sector_kpis(sector_id):
            buckets[entry.key] = await kpi_buckets(
                rows, entry, start=period.previous_start, end=period.end, bucket=bucket, group=None
            )
        sector = catalog.sector(sector_id)
        for source in sector.sources if sector else []:
            thresholds[source.id] = source.cadence * catalog.stale_factor
    # Transitions from before the period too: an alert fired the day before may be
    # acknowledged or resolved in it (its time to acknowledge counts from its firing).
    transitions = await alert_transitions_between(
        rows, team.sectors, start=period.previous_start, end=period.end
    )
    gaps = await source_gaps(rows, thresholds, start=period.start, end=period.end)
    return build_report(
        catalog, team, period, buckets=buckets, transitions=transitions, gaps=gaps, generated_at=now
    )
