"""History API parameters: times, ranges, page sizes, cursors, series plans (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.history.params import (
    MAX_BUCKETS,
    MAX_PAGE_SIZE,
    TimeRange,
    decode_cursor,
    encode_cursor,
    format_time,
    page_size,
    parse_time,
    time_range,
)
from consumers.history.queries import ROLLUP_AFTER, HistoryCatalog, KpiEntry, plan_series
from foundation.contract.catalog import load_catalog
from foundation.errors import HistoryQueryError

CATALOG = HistoryCatalog(load_catalog())
BED = CATALOG.kpi("health.bed_occupancy_pct")  # 15 min windows
ATTACKS = CATALOG.kpi("infosec.attacks_per_min")  # 5 min windows every minute
JUNE_1 = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
DAY = 86400.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-01T00:00:00Z", JUNE_1),
        ("2025-06-01T07:00:00+07:00", JUNE_1),
        ("2025-06-01T07:00:00 07:00", JUNE_1),  # a '+' that arrived unescaped as a space
        ("2025-06-01 00:00:00z", JUNE_1),
        (str(int(JUNE_1)), JUNE_1),
        ("1748736000.5", JUNE_1 + 0.5),
    ],
)
def test_times_are_rfc3339_with_offset_or_unix_seconds(text: str, expected: float) -> None:
    assert parse_time("from", text) == expected


@pytest.mark.parametrize(
    "text", ["yesterday", "2025-06-01T00:00:00", "2025-13-01T00:00:00Z", "1e400", ""]
)
def test_bad_times_are_bad_range(text: str) -> None:
    with pytest.raises(HistoryQueryError) as caught:
        parse_time("from", text)
    assert (caught.value.code, caught.value.status) == ("bad_range", 400)


def test_range_defaults_and_limits() -> None:
    """`to` defaults to now, `from` to the default span before it; inverted or too long refused."""
    assert time_range({}, now=1000.0, default=100.0) == TimeRange(900.0, 1000.0)
    assert time_range({"from": "10"}, now=1000.0, default=100.0) == TimeRange(10.0, 1000.0)
    with pytest.raises(HistoryQueryError, match="before") as inverted:
        time_range({"from": "20", "to": "10"}, now=0, default=1)
    assert inverted.value.code == "bad_range"
    with pytest.raises(HistoryQueryError) as equal:
        time_range({"from": "10", "to": "10"}, now=0, default=1)
    assert equal.value.code == "bad_range"
    with pytest.raises(HistoryQueryError) as long:
        time_range({"from": "0", "to": str(10 * DAY)}, now=0, default=1, maximum=7 * DAY)
    assert (long.value.code, long.value.status) == ("range_too_long", 422)


@pytest.mark.parametrize(
    ("given", "expected"), [(None, 100), ("1", 1), (str(MAX_PAGE_SIZE), MAX_PAGE_SIZE)]
)
def test_page_size(given: str | None, expected: int) -> None:
    assert page_size({} if given is None else {"limit": given}) == expected


@pytest.mark.parametrize("given", ["0", "-1", str(MAX_PAGE_SIZE + 1), "ten", "1.5", ""])
def test_bad_page_sizes(given: str) -> None:
    with pytest.raises(HistoryQueryError) as caught:
        page_size({"limit": given})
    assert (caught.value.code, caught.value.status) == ("bad_page_size", 400)


def test_cursor_round_trip_keeps_microseconds() -> None:
    moment = datetime(2025, 6, 1, 8, 30, 0, 123456, tzinfo=UTC)
    key = [moment, "his-bvdk-tinh", "evt-ü"]
    assert decode_cursor(encode_cursor(key), (datetime, str, str)) == key
    assert decode_cursor(encode_cursor([moment, "fp", 3]), (datetime, str, int)) == [
        moment,
        "fp",
        3,
    ]


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", encode_cursor(["a", "b"]), encode_cursor([1, "b", "c"]), "W3sidCI6IngifV0"],
)
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(HistoryQueryError) as caught:
        decode_cursor(cursor, (datetime, str, str))
    assert caught.value.code == "bad_cursor"


def test_times_are_formatted_in_utc() -> None:
    assert format_time(JUNE_1) == "2025-06-01T00:00:00Z"
    assert format_time(datetime(2025, 6, 1, 7, tzinfo=UTC)) == "2025-06-01T07:00:00Z"
    assert format_time(None) is None


@pytest.mark.parametrize(
    ("kpi", "span", "bucket", "expected_bucket", "table"),
    [
        (BED, DAY, None, "raw", "kpi_points"),  # 96 points
        (BED, 30 * DAY, None, "1h", "kpi_rollup_1h"),  # 2,880 raw points are too many
        (BED, 200 * DAY, None, "1d", "kpi_rollup_1d"),
        (ATTACKS, DAY, None, "raw", "kpi_points"),  # 1,440 points
        (ATTACKS, 3 * DAY, None, "5m", "kpi_points"),  # 1m is finer than needed
        (BED, 2 * DAY, "1h", "1h", "kpi_points"),
        (BED, 2 * DAY + 3600, "1h", "1h", "kpi_rollup_1h"),
        (BED, DAY, "1d", "1d", "kpi_points"),
        (BED, 3 * DAY, "1d", "1d", "kpi_rollup_1d"),
        (BED, 7 * DAY, "15m", "15m", "kpi_points"),
    ],
)
def test_series_plan_picks_bucket_and_table(
    kpi: KpiEntry, span: float, bucket: str | None, expected_bucket: str, table: str
) -> None:
    """The default bucket is the finest that fits; long 1h/1d ranges read the rollups."""
    plan = plan_series(kpi, TimeRange(JUNE_1, JUNE_1 + span), bucket)
    assert (plan.bucket, plan.source) == (expected_bucket, table)
    assert ROLLUP_AFTER == 2 * DAY


def test_buckets_align_on_the_provinces_midnight() -> None:
    """1d buckets run from 00:00 in Bình Phước (17:00 UTC); hours align as in UTC."""
    asked = TimeRange(JUNE_1 + 3600, JUNE_1 + 3 * DAY)
    daily = plan_series(BED, asked, "1d")
    assert format_time(daily.range.start) == "2025-05-31T17:00:00Z"
    assert format_time(daily.range.end) == "2025-06-04T17:00:00Z"  # 07:00 on 4 June, local
    hourly = plan_series(BED, TimeRange(JUNE_1 + 90, JUNE_1 + 3601), "1h")
    assert (hourly.range.start, hourly.range.end) == (JUNE_1, JUNE_1 + 7200)
    raw = plan_series(BED, TimeRange(JUNE_1 + 90, JUNE_1 + 3601), "raw")
    assert (raw.range.start, raw.range.end) == (JUNE_1 + 90, JUNE_1 + 3601)


def test_too_many_buckets_is_range_too_long() -> None:
    with pytest.raises(HistoryQueryError) as caught:
        plan_series(BED, TimeRange(JUNE_1, JUNE_1 + (MAX_BUCKETS + 1) * 60), "1m")
    assert (caught.value.code, caught.value.status) == ("range_too_long", 422)
    plan_series(BED, TimeRange(JUNE_1, JUNE_1 + MAX_BUCKETS * 60), "1m")  # exactly fits
    with pytest.raises(HistoryQueryError) as unknown:
        plan_series(BED, TimeRange(JUNE_1, JUNE_1 + 60), "7m")
    assert unknown.value.code == "bad_bucket"


def test_unknown_ids_are_404() -> None:
    for call, code in ((lambda: CATALOG.kpi("health.nope"), "unknown_kpi"),
                       (lambda: CATALOG.sector("nowhere"), "unknown_sector")):  # fmt: skip
        with pytest.raises(HistoryQueryError) as caught:
            call()
        assert (caught.value.code, caught.value.status) == (code, 404)
