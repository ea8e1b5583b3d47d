"""The report as a PDF (A4 landscape), drawn with fpdf2 and the DejaVu Sans font shipped here.

fpdf2 is pure Python (its dependencies come from PyPI as wheels), so the PDF needs nothing
from the operating system. The font is DejaVu Sans, subset to Latin and Vietnamese (see
`fonts/README.md`): every Vietnamese letter is a precomposed glyph of it, so text is
normalised to NFC before it is drawn.
"""

from __future__ import annotations

import unicodedata
from importlib.resources import files
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from consumers.reports.model import KpiLine, Report
from consumers.reports.text import (
    STATUS,
    change_text,
    clock,
    duration,
    period_title,
    severity_vi,
    share_text,
    state_vi,
    summary_lines,
    target_text,
    value_text,
)

__all__ = ["render_pdf"]

_FONT = "DejaVu"
_STATUS_RGB = {"met": (10, 122, 60), "missed": (179, 38, 30), "none": (85, 85, 85)}


def _font_dir() -> Path:
    return Path(str(files("consumers.reports") / "fonts"))


def _t(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class _Pdf(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="L", unit="mm", format="A4")
        self._footer_text = footer_text
        fonts = _font_dir()
        self.add_font(_FONT, "", str(fonts / "DejaVuSans.ttf"))
        self.add_font(_FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.set_auto_page_break(auto=True, margin=14)
        self.set_margins(12, 12, 12)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(_FONT, "", 7)
        self.set_text_color(120, 120, 120)
        self.cell(0, 5, _t(f"{self._footer_text} · trang {self.page_no()}"), align="R")


def _spark(pdf: FPDF, line: KpiLine, x: float, y: float, w: float, h: float) -> None:
    values = line.trend
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return
    target = line.kpi.target.value if line.kpi.target else None
    low, high = min(known), max(known)
    if target is not None:
        low, high = min(low, target), max(high, target)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    step = w / max(1, len(values) - 1)

    def py(v: float) -> float:
        return y + h - 0.5 - (v - low) / (high - low) * (h - 1)

    if target is not None:
        pdf.set_draw_color(150, 150, 150)
        pdf.set_dash_pattern(dash=0.8, gap=0.6)
        pdf.line(x, py(target), x + w, py(target))
        pdf.set_dash_pattern()
    pdf.set_draw_color(21, 101, 192)
    pdf.set_line_width(0.35)
    previous: tuple[float, float] | None = None
    for index, value in enumerate(values):
        if value is None:
            previous = None
            continue
        point = (x + index * step, py(value))
        if previous is not None:
            pdf.line(previous[0], previous[1], point[0], point[1])
        previous = point
    pdf.set_line_width(0.2)


def render_pdf(report: Report) -> bytes:
    """The whole report as PDF bytes."""
    title_vi, title_en = period_title(report)
    team = report.team
    pdf = _Pdf(f"IOC {report.province_vi} · {team.name_vi} · {title_vi}")
    pdf.set_title(_t(f"{title_vi} · {team.name_vi}"))
    pdf.set_author("ioc-stream")
    pdf.set_lang("vi")
    pdf.add_page()
    pdf.set_font(_FONT, "", 9)
    pdf.set_text_color(90, 90, 90)
    pdf.cell(0, 5, _t(f"IOC {report.province_vi} · {team.name_vi}"), new_x=XPos.LMARGIN,
             new_y=YPos.NEXT)  # fmt: skip
    pdf.set_font(_FONT, "B", 16)
    pdf.set_text_color(20, 20, 20)
    pdf.cell(0, 9, _t(title_vi), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FONT, "", 9)
    pdf.set_text_color(90, 90, 90)
    pdf.cell(0, 5, _t(f"{title_en} · {team.name_en} · Kính gửi {team.leader_vi}"),
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)  # fmt: skip
    pdf.ln(2)
    pdf.set_text_color(20, 20, 20)
    pdf.set_font(_FONT, "", 10)
    for sentence in summary_lines(report):
        pdf.multi_cell(0, 5.5, _t(f"• {sentence}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)

    # Targets: one row per KPI, the trend drawn in its last column.
    widths = [34, 78, 30, 30, 20, 18, 28, 35]
    heads = ["Lĩnh vực", "Chỉ số", "Giá trị", "Mục tiêu", "Kết quả", "Tỷ lệ đạt",
             "So với kỳ trước", "Xu hướng"]  # fmt: skip
    pdf.set_font(_FONT, "B", 13)
    pdf.cell(0, 8, _t("Chỉ tiêu (Targets)"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def header() -> None:
        pdf.set_font(_FONT, "B", 8)
        pdf.set_fill_color(15, 42, 85)
        pdf.set_text_color(255, 255, 255)
        for width, head in zip(widths, heads, strict=True):
            pdf.cell(width, 7, _t(head), border=0, fill=True)
        pdf.ln(7)
        pdf.set_text_color(20, 20, 20)

    header()
    row_h = 9.0
    for line in report.kpis:
        if pdf.will_page_break(row_h):
            pdf.add_page()
            header()
        x0, y0 = pdf.get_x(), pdf.get_y()
        cells = [
            line.sector_vi,
            line.kpi.name_vi,
            value_text(line),
            target_text(line),
            STATUS[line.status][0],
            share_text(line),
            change_text(line),
        ]
        for index, (width, text) in enumerate(zip(widths, cells, strict=False)):
            if index == 4:
                pdf.set_font(_FONT, "B", 8)
                pdf.set_text_color(*_STATUS_RGB[line.status])
            else:
                pdf.set_font(_FONT, "", 8)
                pdf.set_text_color(20, 20, 20)
            text = _t(text)
            while len(text) > 3 and pdf.get_string_width(text) > width - 1.5:
                text = text[:-2] + "…"
            pdf.cell(width, row_h, text)
        _spark(pdf, line, x0 + sum(widths[:-1]) + 1, y0 + 1.2, widths[-1] - 2, row_h - 2.4)
        pdf.set_text_color(20, 20, 20)
        pdf.set_draw_color(216, 222, 233)
        pdf.line(x0, y0 + row_h, x0 + sum(widths), y0 + row_h)
        pdf.set_xy(x0, y0 + row_h)

    alerts = report.alerts
    pdf.ln(4)
    pdf.set_font(_FONT, "B", 13)
    pdf.cell(0, 8, _t("Cảnh báo (Alerts)"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FONT, "", 9)
    pdf.multi_cell(
        0, 5,
        _t(f"Phát sinh {alerts.opened} · đã tiếp nhận {alerts.acknowledged} · đã xử lý "
           f"{alerts.resolved} · còn mở {alerts.open_at_end} · thời gian tiếp nhận trung vị "
           f"{duration(alerts.ack_median)}, lâu nhất {duration(alerts.ack_max)}"),
        new_x=XPos.LMARGIN, new_y=YPos.NEXT,
    )  # fmt: skip
    for a in alerts.lines:
        ack = (
            "chưa tiếp nhận"
            if a.ack_seconds is None
            else f"tiếp nhận sau {duration(a.ack_seconds)}"
        )
        since = clock(a.started_at, report.timezone)
        text = f"• [{severity_vi(a.severity)}] {a.message_vi} — từ {since}, {ack}"
        pdf.multi_cell(
            0, 5, _t(f"{text}, {state_vi(a.state)}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    pdf.ln(3)
    pdf.set_font(_FONT, "B", 13)
    pdf.cell(0, 8, _t("Nguồn dữ liệu mất tín hiệu (Silent sources)"), new_x=XPos.LMARGIN,
             new_y=YPos.NEXT)  # fmt: skip
    pdf.set_font(_FONT, "", 9)
    if not report.silent:
        pdf.cell(0, 5, _t("Không có nguồn nào mất tín hiệu."), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for s in report.silent:
        pdf.multi_cell(
            0, 5,
            _t(f"• {s.name_vi} ({s.source}): {s.silences} lần, lâu nhất {duration(s.longest_gap)}"),
            new_x=XPos.LMARGIN, new_y=YPos.NEXT,
        )  # fmt: skip
    pdf.ln(2)
    pdf.set_font(_FONT, "", 7)
    pdf.set_text_color(120, 120, 120)
    pdf.cell(0, 5, _t(f"Lập lúc {clock(report.generated_at, report.timezone)} · ioc-stream"))
    return bytes(pdf.output())
