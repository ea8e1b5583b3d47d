"""The catalog loader: the default catalog is valid; problems point at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.contract.catalog import load_catalog
from foundation.errors import CatalogError

SECTORS_VI = {
    "Y tế", "Giao thông", "Tài nguyên – Môi trường", "Giáo dục", "Dịch vụ công", "An ninh trật tự",
    "Du lịch", "Tài chính – Ngân sách", "Nông nghiệp", "Phản ánh hiện trường", "An toàn thông tin",
}  # fmt: skip


def test_default_catalog_has_the_eleven_sectors_of_binh_phuoc() -> None:
    catalog = load_catalog()
    assert catalog.province.name_vi == "Bình Phước"
    assert {s.name_vi for s in catalog.sectors} == SECTORS_VI
    assert len(catalog.districts) == 11
    assert catalog.sector("health") is not None
    assert catalog.sector("health").topic == "ioc.events.health"  # type: ignore[union-attr]


MINIMAL = """\
version: 1
province: {id: p, name_vi: P, name_en: P}
districts:
  - {code: d1, name_vi: D, name_en: D}
sectors:
  - id: health
    name_vi: Y tế
    name_en: Health
    sources: [{id: his, name_vi: H, name_en: H, cadence: 1m}]
    event_types: [{id: visit, name_vi: V, name_en: V, unit: ca}]
"""
SECOND = (
    "  - {id: health, name_vi: X, name_en: X,"
    " sources: [{id: h2, name_vi: H, name_en: H, cadence: 5m}],"
    " event_types: [{id: v, name_vi: V, name_en: V}]}\n"
)
KPI = """\
    kpis:
      - {id: k, name_vi: K, name_en: K, event_type: %s, aggregation: avg, unit: ca,
         window: {size: %s}}
"""
RULE = """\
    kpis:
      - {id: k, name_vi: K, name_en: K, event_type: visit, aggregation: avg, unit: ca,
         window: {size: 5m}}
    alerts:
      - {id: r, kind: threshold, kpi: k, op: above, raise: 10, clear: 12, severity: critical,
         message_vi: V, message_en: E}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_catalog_loads(tmp_path: Path) -> None:
    assert load_catalog(_write(tmp_path, MINIMAL)).sectors[0].id == "health"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (MINIMAL + SECOND, 11, "sectors.1.id: duplicate id 'health'"),
        (MINIMAL.replace("name_en: Health", "name_en: ''"), 8, "sectors.0.name_en"),
        (
            MINIMAL.replace("id: health", "id: Health!"),
            6,
            "sectors.0.id: String should match pattern",
        ),
        (
            MINIMAL.replace("version: 1", "version: 1\ncolour: red"),
            2,
            "colour: Extra inputs are not permitted",
        ),
        (
            MINIMAL.replace("districts:\n  - {code: d1, name_vi: D, name_en: D}\n", ""),
            1,
            "districts: Field required",
        ),
        (
            MINIMAL + KPI % ("teleport", "5m"),
            12,
            "sectors.0.kpis.0.event_type: unknown event type 'teleport'",
        ),
        (MINIMAL + KPI % ("visit", "soon"), 13, "expected a duration like"),
        (MINIMAL + RULE, 15, "clear must be on the safe side of raise"),
        (MINIMAL + "  - {id: x, name_vi: [unclosed\n", 12, "invalid YAML"),  # found at end of file
    ],
)
def test_problems_point_at_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert caught.value.code == "catalog_invalid"
    assert any(p.startswith(f"{path}:{line}: ") and fragment in p for p in caught.value.problems), (
        caught.value.problems
    )


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog(tmp_path / "nope.yaml")
