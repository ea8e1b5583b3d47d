"""The report as one HTML document: the e-mail's body and the page its link opens.

Inline styles only (mail readers drop style sheets and scripts), tables for the figures,
a small inline SVG per KPI for its trend with the target as a dashed line.
"""

from __future__ import annotations

from html import escape

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

__all__ = ["LINK_MARKER", "link_paragraph", "render_html"]

LINK_MARKER = "<!--ioc:link-->"  # where a stored report gets its reader's own link

_CELL = "padding:6px 8px;border-bottom:1px solid #d8dee9;text-align:left;vertical-align:top"
_HEAD = _CELL + ";background:#0f2a55;color:#fff;font-weight:bold"
_COLOURS = {"met": "#0a7a3c", "missed": "#b3261e", "none": "#555"}


def _spark(line: KpiLine) -> str:
    values = line.trend
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    target = line.kpi.target.value if line.kpi.target else None
    low, high = min(known), max(known)
    if target is not None:
        low, high = min(low, target), max(high, target)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    width, height = 120.0, 28.0
    step = width / max(1, len(values) - 1)

    def y(v: float) -> float:
        return height - 2 - (v - low) / (high - low) * (height - 4)

    path = []
    pen_up = True
    for index, value in enumerate(values):
        if value is None:
            pen_up = True
            continue
        path.append(f"{'M' if pen_up else 'L'}{index * step:.1f},{y(value):.1f}")
        pen_up = False
    target_line = ""
    if target is not None:
        ty = f"{y(target):.1f}"
        target_line = (
            f'<line x1="0" x2="{width:.0f}" y1="{ty}" y2="{ty}" stroke="#888" '
            'stroke-dasharray="3 2" stroke-width="1"/>'
        )
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'role="img" aria-label="xu hướng {escape(line.kpi.name_vi)}">{target_line}'
        f'<path d="{"".join(path)}" fill="none" stroke="#1565c0" stroke-width="1.5"/></svg>'
    )


def link_paragraph(link: str) -> str:
    """The paragraph with a reader's link to the report online."""
    return (
        f'<p><a href="{escape(link)}" style="color:#0b57d0">Xem báo cáo trực tuyến '
        "(View online)</a></p>"
    )


def render_html(report: Report, *, link: str | None = None) -> str:
    """The whole report as an HTML document (UTF-8, Vietnamese first)."""
    title_vi, title_en = period_title(report)
    team = report.team
    zone = report.timezone
    parts = [
        '<!doctype html><html lang="vi"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title_vi)} · {escape(team.name_vi)}</title></head>",
        "<body style=\"margin:0;background:#f4f6fa;font-family:'DejaVu Sans',Arial,sans-serif;"
        'color:#1b1f24">',
        '<main style="max-width:960px;margin:0 auto;background:#fff;padding:20px">',
        f'<p style="margin:0;color:#555">IOC {escape(report.province_vi)} · '
        f"{escape(team.name_vi)}</p>",
        f'<h1 style="margin:4px 0 2px;font-size:22px">{escape(title_vi)}</h1>',
        f'<p style="margin:0 0 12px;color:#555">{escape(title_en)} · {escape(team.name_en)}'
        f" · Kính gửi {escape(team.leader_vi)}</p>",
        '<section aria-label="Tóm tắt"><ul style="padding-left:20px;line-height:1.6">',
        *[f"<li>{escape(line)}</li>" for line in summary_lines(report)],
        "</ul></section>",
    ]
    parts.append(link_paragraph(link) if link else LINK_MARKER)
    parts += [
        '<h2 style="font-size:18px;margin:18px 0 6px">Chỉ tiêu <span style="color:#555;'
        'font-weight:normal">(Targets)</span></h2>',
        '<table style="border-collapse:collapse;width:100%;font-size:13px">',
        "<thead><tr>",
        *[
            f'<th scope="col" style="{_HEAD}">{h}</th>'
            for h in (
                "Lĩnh vực",
                "Chỉ số",
                "Giá trị",
                "Mục tiêu",
                "Kết quả",
                "Tỷ lệ đạt",
                "So với kỳ trước",
                "Xu hướng",
            )
        ],
        "</tr></thead><tbody>",
    ]
    for line in report.kpis:
        status_vi, status_en = STATUS[line.status]
        colour = _COLOURS[line.status]
        parts.append(
            "<tr>"
            f'<td style="{_CELL}">{escape(line.sector_vi)}</td>'
            f'<td style="{_CELL}">{escape(line.kpi.name_vi)}<br><span style="color:#555;'
            f'font-size:11px">{escape(line.kpi.name_en)}</span></td>'
            f'<td style="{_CELL};white-space:nowrap">{escape(value_text(line))}</td>'
            f'<td style="{_CELL};white-space:nowrap">{escape(target_text(line))}</td>'
            f'<td style="{_CELL};color:{colour};font-weight:bold">{status_vi}'
            f'<br><span style="font-weight:normal;font-size:11px">{status_en}</span></td>'
            f'<td style="{_CELL}">{share_text(line)}</td>'
            f'<td style="{_CELL};white-space:nowrap">{escape(change_text(line))}</td>'
            f'<td style="{_CELL}">{_spark(line)}</td>'
            "</tr>"
        )
    parts.append("</tbody></table>")
    alerts = report.alerts
    parts += [
        '<h2 style="font-size:18px;margin:18px 0 6px">Cảnh báo <span style="color:#555;'
        'font-weight:normal">(Alerts)</span></h2>',
        f"<p>Phát sinh {alerts.opened} · đã tiếp nhận {alerts.acknowledged} · đã xử lý "
        f"{alerts.resolved} · còn mở {alerts.open_at_end} · thời gian tiếp nhận trung vị "
        f"{duration(alerts.ack_median)}, lâu nhất {duration(alerts.ack_max)}</p>",
    ]
    if alerts.lines:
        parts += [
            '<table style="border-collapse:collapse;width:100%;font-size:13px"><thead><tr>',
            *[
                f'<th scope="col" style="{_HEAD}">{h}</th>'
                for h in ("Mức độ", "Nội dung", "Bắt đầu", "Tiếp nhận", "Trạng thái")
            ],
            "</tr></thead><tbody>",
        ]
        for a in alerts.lines:
            ack = "–"
            if a.ack_seconds is not None:
                ack = f"sau {duration(a.ack_seconds)}" + (
                    f" ({escape(a.acknowledged_by)})" if a.acknowledged_by else ""
                )
            parts.append(
                f'<tr><td style="{_CELL}">{escape(severity_vi(a.severity))}</td>'
                f'<td style="{_CELL}">{escape(a.message_vi)}</td>'
                f'<td style="{_CELL};white-space:nowrap">{clock(a.started_at, zone)}</td>'
                f'<td style="{_CELL}">{ack}</td>'
                f'<td style="{_CELL}">{escape(state_vi(a.state))}</td></tr>'
            )
        parts.append("</tbody></table>")
    parts.append(
        '<h2 style="font-size:18px;margin:18px 0 6px">Nguồn dữ liệu mất tín hiệu <span '
        'style="color:#555;font-weight:normal">(Sources that went silent)</span></h2>'
    )
    if report.silent:
        parts.append("<ul>")
        for s in report.silent:
            parts.append(
                f"<li>{escape(s.name_vi)} ({escape(s.source)}): {s.silences} lần, lâu nhất "
                f"{duration(s.longest_gap)}, {s.events} bản ghi</li>"
            )
        parts.append("</ul>")
    else:
        parts.append("<p>Không có nguồn nào mất tín hiệu. (No source went silent.)</p>")
    parts.append(
        f'<p style="color:#777;font-size:11px;margin-top:20px">Lập lúc '
        f"{clock(report.generated_at, zone)} · ioc-stream</p></main></body></html>"
    )
    return "".join(parts)
