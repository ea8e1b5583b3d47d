"""The text `ioc kpi` prints: one line per KPI, Vietnamese first (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal

from consumers.history.views import KpiLatest, LatestGroup
from foundation.contract.catalog import Sector

__all__ = ["Lang", "format_age", "format_value", "render_latest"]

Lang = Literal["vi", "en"]

_WORDS: Final[dict[str, tuple[str, str]]] = {
    "no_data": ("chưa có dữ liệu", "no data"),
    "provisional": ("tạm tính", "provisional"),
    "final": ("chính thức", "final"),
    "met": ("đạt", "met"),
    "missed": ("không đạt", "missed"),
    "target": ("mục tiêu", "target"),
    "ago": ("trước", "ago"),
    "total": ("tổng", "total"),
    "groups": ("nhóm", "groups"),
    "of": ("/", "/"),
    "district": ("khu vực", "districts"),
    "source": ("nguồn", "sources"),
}


def _word(key: str, lang: Lang) -> str:
    vi, en = _WORDS[key]
    return vi if lang == "vi" else en


def format_value(value: float | None, lang: Lang = "vi") -> str:
    """A KPI value for people: thousands grouped, at most two decimals, no trailing zeros;
    Vietnamese separators (1.234 and 96,5) or English ones (1,234 and 96.5)."""
    if value is None:
        return "—"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        text = "0" if text == "-0" else text
    if lang == "vi":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


def format_age(seconds: float, lang: Lang) -> str:
    """'3 phút trước' / '3 min ago'."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        amount = f"{int(seconds)} {'giây' if lang == 'vi' else 's'}"
    elif seconds < 3600:
        amount = f"{int(seconds // 60)} {'phút' if lang == 'vi' else 'min'}"
    else:
        hours, minutes = int(seconds // 3600), int(seconds % 3600 // 60)
        amount = f"{hours} {'giờ' if lang == 'vi' else 'h'} {minutes:02d}"
    return f"{amount} {_word('ago', lang)}"


def _target(latest: KpiLatest, lang: Lang) -> str:
    target = latest.entry.kpi.target
    if target is None:
        return ""
    sign = "≥" if target.direction == "at_least" else "≤"
    return f"{_word('target', lang)} {sign} {format_value(target.value, lang)}"


def _newest(groups: Sequence[LatestGroup]) -> list[LatestGroup]:
    start = max(g.window_start for g in groups)
    return [g for g in groups if g.window_start == start]


def _kpi_line(latest: KpiLatest, lang: Lang, name_width: int) -> str:
    kpi = latest.entry.kpi
    name = (kpi.name_vi if lang == "vi" else kpi.name_en).ljust(name_width)
    if not latest.groups:
        return f"  {name}  {'—':>12}  {_word('no_data', lang)}"
    unit = kpi.unit
    newest = _newest(latest.groups)
    if len(latest.groups) == 1:
        group = latest.groups[0]
        shown = f"{format_value(group.value, lang)} {unit}"
        status = "" if group.status is None else _word(group.status, lang)
    else:
        kind = _word(latest.entry.spec.group_by or "district", lang)
        _total, low, high = latest.summary()
        if latest.additive:
            total = sum(g.value for g in newest if g.value is not None)
            shown = f"{format_value(total, lang)} {unit}"
            extra = f"{_word('total', lang)} {len(newest)} {kind}"
        else:
            shown = f"{format_value(low, lang)}–{format_value(high, lang)} {unit}"
            extra = f"{len(latest.groups)} {kind}"
        missed = latest.missed
        judged = sum(1 for g in latest.groups if g.status is not None)
        status = f"{missed}/{judged} {_word('missed', lang)}" if judged else ""
        status = f"({extra}) {status}".rstrip()
    state = _word("final" if all(g.final for g in newest) else "provisional", lang)
    age = format_age(min(g.age for g in newest), lang)
    target = _target(latest, lang)
    parts = [p for p in (target, status) if p]
    return f"  {name}  {shown:>12}  {state:<11} {age:<14} {'  '.join(parts)}".rstrip()


def _group_lines(
    latest: KpiLatest, lang: Lang, area_names: Mapping[str, tuple[str, str]]
) -> list[str]:
    lines = []
    for group in latest.groups:
        names = area_names.get(group.group) if latest.entry.spec.group_by == "district" else None
        name = group.group if names is None else names[0 if lang == "vi" else 1]
        status = "" if group.status is None else f"  {_word(group.status, lang)}"
        state = _word("final" if group.final else "provisional", lang)
        lines.append(
            f"      {name:<24} {format_value(group.value, lang):>10} {latest.entry.kpi.unit}"
            f"  {state}  {format_age(group.age, lang)}{status}"
        )
    return lines


def render_latest(
    sectors: Sequence[tuple[Sector, Sequence[KpiLatest]]],
    *,
    lang: Lang = "vi",
    groups: bool = False,
    area_names: Mapping[str, tuple[str, str]] | None = None,
) -> list[str]:
    """Lines for each sector: a heading, then one line per KPI (and per group if asked;
    a district group by its name in `area_names`: code -> (Vietnamese, English))."""
    lines: list[str] = []
    for sector, kpis in sectors:
        if lines:
            lines.append("")
        names = (
            (sector.name_vi, sector.name_en) if lang == "vi" else (sector.name_en, sector.name_vi)
        )
        lines.append(f"{names[0]} · {names[1]}")
        width = max(
            (len(k.entry.kpi.name_vi if lang == "vi" else k.entry.kpi.name_en) for k in kpis),
            default=0,
        )
        for latest in kpis:
            lines.append(_kpi_line(latest, lang, width))
            if groups and len(latest.groups) > 1:
                lines.extend(_group_lines(latest, lang, area_names or {}))
    return lines
