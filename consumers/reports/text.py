"""Words and number formats the report's renderings share (Vietnamese first, English after)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from consumers.reports.model import KpiLine, Report
from foundation.contract.alerts import SEVERITY_LABELS, STATE_LABELS

__all__ = [
    "STATUS",
    "change_text",
    "clock",
    "duration",
    "number",
    "period_title",
    "share_text",
    "summary_lines",
    "target_text",
    "value_text",
]

STATUS: Final[dict[str, tuple[str, str]]] = {
    "met": ("Đạt", "Met"),
    "missed": ("Chưa đạt", "Missed"),
    "none": ("—", "—"),
}


def number(value: float | None, *, digits: int | None = None) -> str:
    """Vietnamese style: 1.234,5 (dot for thousands, comma for decimals); '–' for no data."""
    if value is None or not math.isfinite(value):
        return "–"
    if digits is None:
        magnitude = abs(value)
        digits = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2
    text = f"{value:,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def value_text(line: KpiLine) -> str:
    """The value with its unit, or '–' alone when there is no data."""
    value = line.figure.value
    return "–" if value is None else f"{number(value)} {line.kpi.unit}"


def change_text(line: KpiLine) -> str:
    figure = line.figure
    if figure.change is None:
        return "–"
    arrow = "▲" if figure.change > 0 else "▼" if figure.change < 0 else "="
    if figure.change_pct is None:
        return f"{arrow} {number(figure.change)}"
    sign = "+" if figure.change_pct > 0 else ""
    return f"{arrow} {sign}{number(figure.change_pct, digits=1)}%"


def target_text(line: KpiLine) -> str:
    target = line.kpi.target
    if target is None:
        return "–"
    op = "≤" if target.direction == "at_most" else "≥"
    return f"{op} {number(target.value)} {line.kpi.unit}"


def share_text(line: KpiLine) -> str:
    share = line.figure.on_target_share
    return "–" if share is None else f"{number(share * 100, digits=0)}%"


def duration(seconds: float | None) -> str:
    """'3 giờ 5 phút', '12 phút', '40 giây'."""
    if seconds is None:
        return "–"
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} ngày {hours} giờ" if hours else f"{days} ngày"
    if hours:
        return f"{hours} giờ {minutes} phút" if minutes else f"{hours} giờ"
    if minutes:
        return f"{minutes} phút"
    return f"{secs} giây"


def clock(at: float, zone: str, fmt: str = "%H:%M %d/%m/%Y") -> str:
    return datetime.fromtimestamp(at, ZoneInfo(zone)).strftime(fmt)


def period_title(report: Report) -> tuple[str, str]:
    period = report.period
    if period.edition == "daily":
        day = period.first_day.strftime("%d/%m/%Y")
        return f"Báo cáo ngày {day}", f"Daily report, {period.first_day.isoformat()}"
    first = period.first_day.strftime("%d/%m")
    last = period.last_day.strftime("%d/%m/%Y")
    return (
        f"Báo cáo tuần {first} – {last}",
        f"Weekly report, {period.first_day.isoformat()} to {period.last_day.isoformat()}",
    )


def summary_lines(report: Report) -> list[str]:
    """The few lines a leader reads first (Vietnamese), also the e-mail's plain text."""
    alerts = report.alerts
    with_target = report.met + report.missed
    lines = [
        f"Chỉ tiêu: {report.met}/{with_target} đạt, {report.missed} chưa đạt"
        f" ({len(report.kpis)} chỉ số theo dõi).",
        f"Cảnh báo: {alerts.opened} phát sinh, {alerts.acknowledged} đã tiếp nhận,"
        f" {alerts.resolved} đã xử lý; còn mở cuối kỳ: {alerts.open_at_end}.",
        f"Thời gian tiếp nhận: trung vị {duration(alerts.ack_median)},"
        f" lâu nhất {duration(alerts.ack_max)}.",
        f"Nguồn dữ liệu mất tín hiệu: {len(report.silent)}/{report.sources_total}.",
    ]
    missed = [k for k in report.kpis if k.status == "missed"]
    if missed:
        names = ", ".join(k.kpi.name_vi for k in missed[:5])
        lines.append(f"Chưa đạt: {names}{' …' if len(missed) > 5 else ''}.")
    return lines


def severity_vi(severity: str) -> str:
    return SEVERITY_LABELS.get(severity, (severity, severity))[0]


def state_vi(state: str) -> str:
    return STATE_LABELS.get(state, (state, state))[0]
