"""History SQL is parameterised; auth accepts tokens and keys as documented; views (pure)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.history.auth import authenticate
from consumers.history.kpi_text import format_age, format_value, render_latest
from consumers.history.params import TimeRange
from consumers.history.queries import (
    HistoryCatalog,
    Query,
    alert_history_query,
    check_window_start,
    dead_letter_query,
    drilldown_events_query,
    latest_points_query,
    plan_series,
    series_query,
)
from consumers.history.views import latest_view, target_status
from foundation.auth.api_keys import ApiKeyRecord, KeyId
from foundation.auth.tokens import issue_token
from foundation.contract.catalog import load_catalog
from foundation.errors import HistoryQueryError

CATALOG = HistoryCatalog(load_catalog())
BED = CATALOG.kpi("health.bed_occupancy_pct")
SPEED = CATALOG.kpi("traffic.avg_speed_kmh")  # by district
ATTACK_IPS = CATALOG.kpi("infosec.attack_sources_per_hour")  # distinct data.src_ip
SECRET = b"unit-test-secret-0123456789abcdef"
HOSTILE = "x'; DROP TABLE events; --"


def _queries() -> list[Query]:
    span = TimeRange(0, 86400 * 3)
    after = [datetime(2025, 6, 1, tzinfo=UTC), HOSTILE, HOSTILE]
    return [
        series_query(BED, plan_series(BED, span, "raw"), HOSTILE),
        series_query(BED, plan_series(BED, span, "1h"), None),
        series_query(BED, plan_series(BED, span, "15m"), HOSTILE),
        latest_points_query([HOSTILE], 0),
        drilldown_events_query(SPEED, 900, HOSTILE, limit=10, after=after),
        alert_history_query(
            span,
            sectors=(HOSTILE,),
            fingerprint=HOSTILE,
            state=HOSTILE,
            severity=HOSTILE,
            limit=5,
            after=[after[0], HOSTILE, 1],
        ),
        dead_letter_query(
            span,
            senders=[HOSTILE],
            scope=[HOSTILE],
            reason=HOSTILE,
            limit=5,
            after=[after[0], 1, 2],
        ),
    ]


@pytest.mark.parametrize("query", _queries(), ids=lambda q: q.sql.split(" FROM ")[1].split()[0])
def test_values_are_bound_never_spliced(query: Query) -> None:
    """What a caller gives is only ever a parameter; every placeholder has its value."""
    assert HOSTILE not in query.sql
    assert "DROP" not in query.sql
    assert set(re.findall(r"%\((\w+)\)s", query.sql)) == set(query.params)


def test_series_reads_the_planned_table() -> None:
    long = plan_series(BED, TimeRange(0, 86400 * 3), "1d")
    assert " FROM kpi_rollup_1d " in series_query(BED, long, None).sql
    short = plan_series(BED, TimeRange(0, 86400), "1h")
    assert " FROM kpi_points " in series_query(BED, short, None).sql.replace(")", " ")
    assert series_query(BED, short, "*").params["series"] == "health.bed_occupancy_pct|*"


def test_drilldown_filters_by_group_and_data_key() -> None:
    """A district group filters on district (none: IS NULL); a data-field KPI needs the field."""
    by_district = drilldown_events_query(SPEED, 0, "dong-xoai", limit=10, after=None)
    assert "district = %(group)s" in by_district.sql and by_district.params["group"] == "dong-xoai"
    no_district = drilldown_events_query(SPEED, 0, "*", limit=10, after=None)
    assert "district IS NULL" in no_district.sql
    all_groups = drilldown_events_query(SPEED, 0, None, limit=10, after=None)
    assert "district" not in all_groups.sql.split("WHERE")[1]
    distinct = drilldown_events_query(ATTACK_IPS, 0, None, limit=10, after=None)
    assert distinct.params["data_key"] == "src_ip"
    assert by_district.params["limit"] == 11  # one more: is there a next page?
    assert by_district.params["end"] == datetime.fromtimestamp(900, tz=UTC)


def test_window_starts_fall_on_the_hop() -> None:
    check_window_start(BED, 1800)
    with pytest.raises(HistoryQueryError) as caught:
        check_window_start(BED, 1000)
    assert caught.value.code == "bad_range"


class _Keys:
    def __init__(self) -> None:
        self.record = ApiKeyRecord(KeyId("0123456789ab"), "his-bvdk-tinh", "health", "h")

    async def authenticate(self, token: str) -> ApiKeyRecord | None:
        return self.record if token == "iock_good" else None


def _token(**kwargs: Any) -> str:
    options: dict[str, Any] = {"role": "officer", "name": "A", "sectors": ("health",), "ttl": 60.0}
    options.update(kwargs)
    return issue_token(SECRET, now=options.pop("now", time.time()), **options)[0]


async def test_tokens_and_keys_authenticate() -> None:
    """A valid token gives its scope; an API key gives its source; the secret is read lazily."""
    reads: list[int] = []

    def secret() -> bytes:
        reads.append(1)
        return SECRET

    keys = _Keys()
    reader = await authenticate(
        f"Bearer {_token()}", None, secret=secret, keys=keys, now=time.time()
    )
    assert (reader.kind, reader.sectors) == ("token", ("health",))
    assert reader.allows_sector("health") and not reader.allows_sector("traffic")
    key_reader = await authenticate(None, "iock_good", secret=secret, keys=keys, now=time.time())
    assert (key_reader.kind, key_reader.source) == ("api_key", "his-bvdk-tinh")
    assert reads == [1]  # only the token needed the secret
    with pytest.raises(HistoryQueryError) as forbidden:
        key_reader.require_sector("health")
    assert (forbidden.value.code, forbidden.value.status) == ("forbidden", 403)


@pytest.mark.parametrize(
    ("authorization", "api_key"),
    [
        (None, None),
        ("Basic abc", None),
        ("Bearer ", None),
        ("Bearer iot1.bad.token", None),
        ("Bearer iock_bad", None),
        (None, "iock_bad"),
        ("expired", None),
        ("other-secret", None),
    ],
)
async def test_bad_credentials_are_401(authorization: str | None, api_key: str | None) -> None:
    now = time.time()
    if authorization == "expired":
        authorization = f"Bearer {_token(now=now - 120)}"
    elif authorization == "other-secret":
        token = issue_token(
            b"another-secret-0123456789", role="wall", name="W", sectors=None, now=now, ttl=60
        )[0]
        authorization = f"Bearer {token}"
    with pytest.raises(HistoryQueryError) as caught:
        await authenticate(authorization, api_key, secret=SECRET, keys=_Keys(), now=now)
    assert (caught.value.code, caught.value.status) == ("unauthorized", 401)


@pytest.mark.parametrize(
    ("value", "expected"), [(89.0, "met"), (90.0, "met"), (90.5, "missed"), (None, None)]
)
def test_target_status_follows_the_direction(value: float | None, expected: str | None) -> None:
    assert target_status(BED, value) == expected  # at most 90 %
    attendance = CATALOG.kpi("education.attendance_pct")  # at least 95 %
    assert target_status(attendance, 96.0) == "met"
    assert target_status(attendance, 94.0) == "missed"
    assert target_status(SPEED, 10.0) is None  # no target


def _row(
    series: str, group: str, start: float, value: float | None, final: bool
) -> tuple[Any, ...]:
    kpi = series.split("|")[0]
    at = datetime.fromtimestamp
    return (
        series,
        kpi,
        group,
        at(start, UTC),
        at(start + 900, UTC),
        value,
        3,
        final,
        0,
        at(start + 900, UTC),
    )


def test_latest_view_and_its_text() -> None:
    """Every KPI of the sector once; additive groups are totalled, others shown as a span."""
    now = 10_000.0
    health = CATALOG.sector_kpis("health")
    rows = [
        _row("health.bed_occupancy_pct|*", "*", 8100, 95.0, False),
        _row("health.er_admissions_per_hour|dong-xoai", "dong-xoai", 8100, 7.0, True),
        _row("health.er_admissions_per_hour|binh-long", "binh-long", 8100, 5.0, True),
        _row("health.er_admissions_per_hour|loc-ninh", "loc-ninh", 7200, 50.0, True),  # older
        _row("health.retired_kpi|*", "*", 8100, 1.0, True),
    ]
    view = latest_view(health, rows, now=now)
    assert [k.entry.key for k in view] == [e.key for e in health]
    bed = next(k for k in view if k.entry.key == BED.key)
    assert bed.groups[0].status == "missed" and bed.groups[0].age == 1000.0
    sector = CATALOG.sector("health")
    lines = render_latest([(sector, view)])
    assert lines[0] == "Y tế · Health"
    admissions = next(line for line in lines if "Ca cấp cứu mỗi giờ" in line)
    assert "12 ca" in admissions and "tổng 2 khu vực" in admissions and "chính thức" in admissions
    bed_line = next(line for line in lines if "Công suất giường bệnh" in line)
    assert "95 %" in bed_line and "tạm tính" in bed_line and "không đạt" in bed_line
    assert "16 phút trước" in bed_line
    english = render_latest([(sector, view)], lang="en", groups=True)
    assert english[0] == "Health · Y tế"
    assert any(line.strip().startswith("loc-ninh") for line in english)
    # Areas by name where the catalog has them (Vietnamese names in Vietnamese).
    areas = {"loc-ninh": ("Huyện Lộc Ninh", "Loc Ninh District")}
    named = render_latest([(sector, view)], groups=True, area_names=areas)
    assert any(line.strip().startswith("Huyện Lộc Ninh ") for line in named)
    assert any(line.strip().startswith("binh-long ") for line in named)  # no name: the code
    named_en = render_latest([(sector, view)], lang="en", groups=True, area_names=areas)
    assert any(line.strip().startswith("Loc Ninh District ") for line in named_en)


@pytest.mark.parametrize(
    ("value", "vi", "en"),
    [
        (None, "—", "—"),
        (0.0, "0", "0"),
        (96.5, "96,5", "96.5"),
        (2.345, "2,35", "2.35"),
        (1302.0, "1.302", "1,302"),
        (12345.6, "12.346", "12,346"),
        (-1234567.0, "-1.234.567", "-1,234,567"),
        (-0.001, "0", "0"),
    ],
)
def test_format_value(value: float | None, vi: str, en: str) -> None:
    """Vietnamese separators by default (a Vietnamese reader takes 1,302 for 1.3)."""
    assert format_value(value) == vi
    assert format_value(value, "en") == en


def test_format_age() -> None:
    assert format_age(5, "vi") == "5 giây trước"
    assert format_age(125, "en") == "2 min ago"
    assert format_age(3 * 3600 + 60 * 7, "vi") == "3 giờ 07 trước"
