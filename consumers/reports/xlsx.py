"""Workbooks (openpyxl): the report's three tables, and the workspace's exports."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from consumers.reports.model import Report
from consumers.reports.text import STATUS, clock, period_title, severity_vi, state_vi

__all__ = ["Sheet", "render_xlsx", "workbook_bytes"]

Sheet = tuple[str, Sequence[str], Sequence[Sequence[Any]]]  # title, header, rows
_HEAD_FILL = PatternFill("solid", fgColor="0F2A55")


def workbook_bytes(sheets: Sequence[Sheet]) -> bytes:
    """An .xlsx with one sheet per (title, header, rows); numbers stay numbers."""
    book = Workbook()
    first = True
    for title, header, rows in sheets:
        sheet = book.active if first and book.active is not None else book.create_sheet()
        first = False
        sheet.title = title[:31]
        sheet.append(list(header))
        for cell in sheet[1]:
            cell.font = Font(bold=True, color="FFFFFF")
            cell.fill = _HEAD_FILL
        for row in rows:
            sheet.append(list(row))
        for index, head in enumerate(header, 1):
            longest = max([len(str(head))] + [len(str(r[index - 1] or "")) for r in rows])
            sheet.column_dimensions[get_column_letter(index)].width = min(60, longest + 2)
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def render_xlsx(report: Report) -> bytes:
    """The report as a workbook: targets, alerts, silent sources."""
    title_vi, _title_en = period_title(report)
    zone = report.timezone
    kpis = [
        [
            line.sector_vi,
            line.kpi.name_vi,
            line.key,
            line.kpi.unit,
            line.figure.value,
            line.kpi.target.value if line.kpi.target else None,
            ("≤" if line.kpi.target.direction == "at_most" else "≥") if line.kpi.target else None,
            STATUS[line.status][0],
            line.figure.on_target_share,
            line.figure.previous,
            line.figure.change_pct,
        ]
        for line in report.kpis
    ]
    alerts = [
        [
            severity_vi(a.severity),
            report.sector_names.get(a.sector, (a.sector, a.sector))[0],
            a.message_vi,
            clock(a.started_at, zone),
            a.ack_seconds,
            a.acknowledged_by,
            state_vi(a.state),
            a.fingerprint,
        ]
        for a in report.alerts.lines
    ]
    silent = [[s.name_vi, s.source, s.silences, s.longest_gap, s.events] for s in report.silent]
    return workbook_bytes(
        [
            (
                "Chỉ tiêu",
                [
                    "Lĩnh vực",
                    "Chỉ số",
                    "Mã",
                    "Đơn vị",
                    "Giá trị",
                    "Mục tiêu",
                    "Chiều",
                    "Kết quả",
                    "Tỷ lệ kỳ đạt",
                    "Kỳ trước",
                    "Thay đổi %",
                ],
                kpis,
            ),
            (
                "Cảnh báo",
                [
                    "Mức độ",
                    "Lĩnh vực",
                    "Nội dung",
                    "Bắt đầu",
                    "Tiếp nhận sau (giây)",
                    "Người tiếp nhận",
                    "Trạng thái",
                    "Mã cảnh báo",
                ],
                alerts,
            ),
            ("Nguồn mất tín hiệu", ["Nguồn", "Mã", "Số lần", "Lâu nhất (giây)", "Bản ghi"], silent),
            (
                "Thông tin",
                ["Báo cáo", "Tổ", "Lập lúc"],
                [[title_vi, report.team.name_vi, clock(report.generated_at, zone)]],
            ),
        ]
    )
