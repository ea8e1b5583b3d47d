"""The morning report from a known data set: its figures, and its HTML, PDF and XLSX."""

from __future__ import annotations

import io
from datetime import date
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from consumers.analysis.data import SourceGap
from consumers.analysis.figures import Bucket
from consumers.reports.html import render_html
from consumers.reports.model import Report, build_report, report_period
from consumers.reports.pdf import render_pdf
from consumers.reports.text import number
from consumers.reports.xlsx import render_xlsx
from foundation.contract.alerts import AlertTransition, Fingerprint
from foundation.contract.catalog import Catalog, load_catalog

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = date(2026, 12, 2)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _hourly(group: str, start: float, values: list[float], samples: int = 4) -> list[Bucket]:
    return [Bucket(group, start + i * 3600, 1, v, v, v, v, samples) for i, v in enumerate(values)]


def _transition(
    fp: str, seq: int, kind: str, state: str, at: float, started: float, **kw: object
) -> AlertTransition:
    return AlertTransition(
        fingerprint=Fingerprint(fp), seq=seq, transition=kind, state=state,  # type: ignore[arg-type]
        previous_state=None, rule="bed_occupancy_high", severity=kw.pop("severity", "critical"),  # type: ignore[arg-type]
        labels={"sector": "health", "kpi": "bed_occupancy_pct"}, at=at, started_at=started,
        value=96.0, message_vi="Công suất giường bệnh 96% vượt ngưỡng 95%",
        message_en="Bed occupancy 96% above 95%", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture(scope="module")
def report(catalog: Catalog) -> Report:
    """Team văn xã, 2 Dec 2026: bed occupancy 80 % for 18 h and 95 % for 6 h (target ≤ 90),
    the day before 85 % all day; an alert fired at 10:00, acknowledged 15 min later,
    resolved at 12:00; another fired at 20:00 and still open; a hospital HIS silent once."""
    team = catalog.team("van-xa")
    assert team is not None
    period = report_period("daily", DAY, ZONE)
    day_start = period.start
    buckets = {
        "health.bed_occupancy_pct": _hourly("_", period.previous_start, [85.0] * 24)
        + _hourly("_", day_start, [80.0] * 18 + [95.0] * 6),
        # Two areas: the province's count per window is their sum (3 + 2 = 5).
        "health.er_admissions_per_hour": _hourly("dong-xoai", day_start, [3.0] * 24)
        + _hourly("binh-long", day_start, [2.0] * 24),
    }
    fired = day_start + 10 * 3600
    later = day_start + 20 * 3600
    transitions = [
        _transition("a1", 1, "fire", "firing", fired, fired),
        _transition("a1", 2, "ack", "acknowledged", fired + 900, fired, acknowledged_by="Trực ban"),
        _transition("a1", 3, "resolve", "resolved", fired + 7200, fired),
        _transition("a2", 1, "fire", "firing", later, later, severity="warning"),
    ]
    gaps = [
        SourceGap("his-bvdk-tinh", 1000, 1800.0, 1),
        SourceGap("his-ttyt-huyen", 600, 200.0, 0),
    ]
    return build_report(
        catalog, team, period, buckets=buckets, transitions=transitions, gaps=gaps,
        generated_at=period.end + 3600,
    )  # fmt: skip


def test_daily_and_weekly_periods_are_province_days() -> None:
    """A daily edition is the local day; a weekly one runs Monday to Sunday."""
    daily = report_period("daily", DAY, ZONE)
    assert daily.end - daily.start == 86400
    assert daily.start == 1796144400.0  # 2026-12-02T00:00+07:00
    assert daily.key == "daily/2026-12-02"
    weekly = report_period("weekly", DAY, ZONE)  # a Wednesday
    assert weekly.first_day == date(2026, 11, 30) and weekly.last_day == date(2026, 12, 6)
    assert weekly.end - weekly.start == 7 * 86400
    assert weekly.start - weekly.previous_start == 7 * 86400


def test_kpi_figures_against_target_and_the_day_before(report: Report) -> None:
    """Mean 83.75 % (≤ 90: met), 18 of 24 hours on target, −1.47 % on the day before."""
    line = next(k for k in report.kpis if k.key == "health.bed_occupancy_pct")
    assert line.figure.value == pytest.approx((80 * 18 + 95 * 6) / 24)
    assert line.status == "met"
    assert line.figure.on_target_share == pytest.approx(18 / 24)
    assert line.figure.previous == pytest.approx(85.0)
    assert line.figure.change_pct == pytest.approx((83.75 - 85) / 85 * 100)
    assert line.trend[:2] == [80.0, 80.0] and line.trend[-1] == 95.0 and len(line.trend) == 24
    admissions = next(k for k in report.kpis if k.key == "health.er_admissions_per_hour")
    assert admissions.figure.value == pytest.approx(5.0)
    assert admissions.status == "none"  # no target
    assert report.met == 1 and report.missed == 0


def test_alert_figures_and_silent_sources(report: Report) -> None:
    """Two opened, one acknowledged after 15 min, one resolved, one open; one silent source."""
    alerts = report.alerts
    assert (alerts.opened, alerts.acknowledged, alerts.resolved, alerts.open_at_end) == (2, 1, 1, 1)
    assert alerts.ack_median == pytest.approx(900.0)
    assert alerts.by_severity == {"critical": 1, "warning": 1}
    first = alerts.lines[0]
    assert first.fingerprint == "a1" and first.state == "resolved" and first.ack_seconds == 900.0
    assert [s.source for s in report.silent] == ["his-bvdk-tinh"]
    assert report.sources_total == sum(
        len(s.sources)
        for s in load_catalog().sectors
        if s.id in ("health", "education", "citizen_feedback", "public_services")
    )


def test_html_pdf_and_xlsx_carry_the_same_figures(report: Report) -> None:
    """The three renderings show 83,8 % (Vietnamese number format), Đạt, and the alert."""
    html = render_html(report, link="https://ioc.example/r/x")
    assert "Báo cáo ngày 02/12/2026" in html and "83,8 %" in html and "Đạt" in html
    assert "Công suất giường bệnh 96% vượt ngưỡng 95%" in html
    assert "https://ioc.example/r/x" in html
    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    needles = ["Báo cáo ngày 02/12/2026", "Công suất giường bệnh", "83,8 %", "Đạt"]
    needles += ["Tổ phân tích dữ liệu văn hóa – xã hội", "HIS Bệnh viện Đa khoa tỉnh"]
    for needle in needles:
        assert needle in text, needle
    book = load_workbook(io.BytesIO(render_xlsx(report)))
    rows = list(book["Chỉ tiêu"].iter_rows(values_only=True))
    bed = next(r for r in rows if r[2] == "health.bed_occupancy_pct")
    assert bed[4] == pytest.approx(83.75) and bed[7] == "Đạt"
    assert book["Cảnh báo"].max_row == 3  # header + two alerts


@pytest.mark.parametrize(
    ("value", "text"),
    [(1234.5, "1.234"), (83.75, "83,8"), (9.5, "9,5"), (None, "–"), (0.0, "0"), (12.34, "12,3")],
)
def test_numbers_are_written_the_vietnamese_way(value: float | None, text: str) -> None:
    """Dot for thousands, comma for decimals, '–' for no data."""
    assert number(value) == text
