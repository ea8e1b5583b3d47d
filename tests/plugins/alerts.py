"""Fixtures and record builders for the alert engine's unit tests (pure, no services)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from alerts.engine import AlertEngine
from alerts.rules import fingerprint
from foundation.contract.alerts import AlertAction, AlertTransition, Fingerprint, Silence
from foundation.contract.catalog import Catalog

T0 = 1_800_000_000.0  # a Unix time in 2027, a multiple of every window size used here
MIN = 60.0

ALERT_CATALOG: dict[str, Any] = {
    "version": 1,
    "province": {"id": "p", "name_vi": "Bình Phước", "name_en": "Binh Phuoc"},
    "districts": [
        {"code": "d1", "name_vi": "Thành phố Đồng Xoài", "name_en": "Dong Xoai City"},
        {"code": "d2", "name_vi": "Huyện Bù Đăng", "name_en": "Bu Dang District"},
    ],
    "sectors": [
        {
            "id": "health", "name_vi": "Y tế", "name_en": "Health",
            "sources": [
                {"id": "his", "name_vi": "HIS", "name_en": "HIS", "cadence": "1m"},
                {"id": "lab", "name_vi": "Xét nghiệm", "name_en": "Lab", "cadence": "1m"},
            ],
            "event_types": [
                {"id": "bed", "name_vi": "Giường", "name_en": "Bed", "unit": "%"},
                {"id": "visit", "name_vi": "Lượt khám", "name_en": "Visit", "measurement": False},
                {"id": "wait", "name_vi": "Chờ", "name_en": "Wait", "unit": "phút"},
            ],
            "kpis": [
                {"id": "bed_pct", "name_vi": "Công suất giường", "name_en": "Bed occupancy",
                 "event_type": "bed", "aggregation": "avg", "unit": "%",
                 "window": {"size": "15m"}, "group_by": ["district"]},
                {"id": "visits", "name_vi": "Lượt khám mỗi giờ", "name_en": "Visits per hour",
                 "event_type": "visit", "aggregation": "count", "unit": "lượt",
                 "window": {"size": "1h", "hop": "5m"}, "group_by": ["district"]},
                {"id": "wait_avg", "name_vi": "Thời gian chờ", "name_en": "Waiting time",
                 "event_type": "wait", "aggregation": "avg", "unit": "phút",
                 "window": {"size": "5m"}, "group_by": ["source"]},
            ],
            "alerts": [
                {"id": "bed_high", "kind": "threshold", "kpi": "bed_pct", "op": "above",
                 "raise": 95, "clear": 90, "for": "10m", "severity": "critical",
                 "message_vi": "Công suất giường tại {district} {value:.1f}% vượt {raise:.0f}%",
                 "message_en": "Bed occupancy in {district} {value:.1f}% above {raise:.0f}%"},
                {"id": "bed_low", "kind": "threshold", "kpi": "bed_pct", "op": "below",
                 "raise": 10, "clear": 20, "severity": "info",
                 "message_vi": "Giường trống {value:.0f}%",
                 "message_en": "Beds empty {value:.0f}%"},
                {"id": "visits_surge", "kind": "rate_of_change", "kpi": "visits",
                 "change_pct": 50, "over": "1h", "severity": "warning",
                 "message_vi": "Lượt khám tại {district} tăng {change:.0f}%",
                 "message_en": "Visits in {district} up {change:.0f}%"},
                {"id": "visits_drop", "kind": "rate_of_change", "kpi": "visits", "op": "below",
                 "change_pct": 50, "over": "1h", "severity": "info",
                 "message_vi": "Lượt khám giảm {change:.0f}%", "message_en": "Visits down"},
                {"id": "wait_long", "kind": "threshold", "kpi": "wait_avg", "op": "above",
                 "raise": 60, "severity": "emergency",
                 "message_vi": "Chờ {value:.0f} phút tại {source_name}",
                 "message_en": "Waiting {value:.0f} min at {source_name}"},
                {"id": "his_silent", "kind": "absence", "source": "his", "for": "5m",
                 "severity": "critical", "message_vi": "Mất dữ liệu từ {source_name}",
                 "message_en": "No data from {source_name}"},
            ],
        },
        {
            "id": "traffic", "name_vi": "Giao thông", "name_en": "Traffic",
            "sources": [{"id": "cam", "name_vi": "Camera", "name_en": "Camera", "cadence": "1m"}],
            "event_types": [{"id": "speed", "name_vi": "Tốc độ", "name_en": "Speed"}],
            "kpis": [
                {"id": "speed_avg", "name_vi": "Tốc độ", "name_en": "Speed",
                 "event_type": "speed", "aggregation": "avg", "unit": "km/h",
                 "window": {"size": "5m"}},
            ],
            "alerts": [
                {"id": "speed_low", "kind": "threshold", "kpi": "speed_avg", "op": "below",
                 "raise": 20, "clear": 30, "severity": "critical",
                 "message_vi": "Tốc độ {value:.0f} km/h", "message_en": "Speed {value:.0f} km/h"},
            ],
        },
    ],
    "escalation": {
        "min_severity": "critical",
        "levels": [
            {"level": 0, "role": "duty_officer"},
            {"level": 1, "role": "sector_vice_chairman", "after": "10m"},
            {"level": 2, "role": "chairman", "after": "20m"},
        ],
        "flapping": {"transitions": 4, "window": "1h"},
    },
}  # fmt: skip


# An absence rule on a KPI fires on ticks from the start: only the tests about it add it.
KPI_ABSENCE: dict[str, Any] = {
    "id": "wait_absent", "kind": "absence", "kpi": "wait_avg", "for": "10m",
    "severity": "warning", "message_vi": "Không có số liệu {kpi_name}",
    "message_en": "No {kpi_name} figures",
}  # fmt: skip


def make_catalog(*, health_rules: Sequence[dict[str, Any]] = (), **escalation: Any) -> Catalog:
    """The test catalog, with more health rules; keywords override parts of its escalation."""
    data = json.loads(json.dumps(ALERT_CATALOG))
    data["sectors"][0]["alerts"] += list(health_rules)
    data["escalation"].update(escalation)
    return Catalog.model_validate(data)


def point(
    kpi: str = "health.bed_pct",
    group: str = "d1",
    *,
    start: float = T0,
    value: float | None,
    final: bool = False,
    revision: int = 0,
    size: float = 15 * MIN,
    count: int = 5,
    at: float | None = None,
) -> dict[str, Any]:
    """A KPI point record as the worker publishes it on ioc.kpi."""
    return {
        "kind": "kpi", "series": f"{kpi}|{group}", "kpi": kpi, "sector": kpi.split(".")[0],
        "group": group, "window_start": start, "window_end": start + size, "value": value,
        "count": count if value is not None else 0, "final": final, "revision": revision,
        "emitted_at": at or start, "newest": at or start,
    }  # fmt: skip


def freshness(
    source: str, state: str, *, at: float, last_seen: float | None = None, sector: str = "health"
) -> dict[str, Any]:
    return {
        "kind": "freshness", "source": source, "sector": sector, "state": state,
        "last_seen": last_seen, "changed_at": at, "stale_after": 3 * MIN,
    }  # fmt: skip


_action_ids = itertools.count(1)


def action(
    kind: str,
    fp: str | None,
    *,
    by: str = "Nguyễn Văn An",
    at: float,
    action_id: str = "",
    **extra: Any,
) -> AlertAction:
    return AlertAction(
        action_id=action_id or f"{kind}-{next(_action_ids)}", action=kind, by=by, at=at,  # type: ignore[arg-type]
        fingerprint=Fingerprint(fp) if fp else None, **extra,
    )  # fmt: skip


def silence(silence_id: str, *, start: float, end: float, **matchers: str) -> Silence:
    return Silence(silence_id, dict(matchers), start, end, "Trần Thị Bình", "bảo trì HIS")


def fp_of(rule: str, **labels: str) -> str:
    return fingerprint(rule, labels)


BED_D1 = fp_of("bed_high", sector="health", kpi="bed_pct", district="d1")


def kinds(transitions: Iterable[AlertTransition]) -> list[str]:
    return [t.transition for t in transitions]


def check_stream(
    transitions: Iterable[AlertTransition], *, after: Iterable[AlertTransition] = ()
) -> None:
    """What consumers rely on: per fingerprint, seq 1, 2, 3 … and a chain of states.

    `after`: the last transitions already published (the stream continues from them).
    """
    last: dict[str, AlertTransition] = {t.fingerprint: t for t in after}
    for t in transitions:
        before = last.get(t.fingerprint)
        assert t.seq == (before.seq + 1 if before else 1), t
        assert t.previous_state == (before.state if before else None), t
        assert AlertTransition.decode(t.encode()) == t
        last[t.fingerprint] = t


@pytest.fixture
def alert_catalog() -> Catalog:
    return make_catalog()


@pytest.fixture
def new_engine() -> Callable[..., AlertEngine]:
    """Factory: an engine over the test catalog, escalation overrides as keyword arguments."""

    def build(*, health_rules: Sequence[dict[str, Any]] = (), **escalation: Any) -> AlertEngine:
        catalog = make_catalog(health_rules=health_rules, **escalation)
        return AlertEngine(catalog, catalog.escalation)

    return build
