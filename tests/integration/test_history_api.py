"""The history API against a real PostgreSQL filled by the writer's own batch functions."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import re
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from consumers.history.params import PROVINCE_ORIGIN
from foundation.contract.alerts import AlertTransition, Fingerprint
from foundation.contract.topics import ALERTS, DEADLETTER, KPI
from tests.plugins.history import HistoryWorld, Record, history_token
from tests.plugins.services import BOTH_PATHS, CliResult, IocProcess

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]
BASE = "/v1/history"
NOW = time.time()
DAY0 = math.floor(NOW / 86400) * 86400 - 4 * 86400  # a UTC midnight four days ago
BED = "health.bed_occupancy_pct"  # avg of bed_occupancy, 15 min windows, no group
SPEED = "traffic.avg_speed_kmh"  # avg of avg_speed, 15 min windows, by district


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


def _z(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def _point(
    kpi: str, group: str, start: float, value: float | None, count: int, revision: int,
    final: bool, size: float = 900.0,
) -> dict[str, Any]:  # fmt: skip
    sector = kpi.split(".", 1)[0]
    return {
        "kind": "kpi", "series": f"{kpi}|{group}", "kpi": kpi, "sector": sector,
        "group": group, "window_start": start, "window_end": start + size, "value": value,
        "count": count, "final": final, "revision": revision,
        "emitted_at": start + size + revision, "newest": start + size - 1,
    }  # fmt: skip


def _kpi_records(points: list[dict[str, Any]], first_offset: int = 0) -> list[Record]:
    return [
        (KPI, 0, first_offset + i, p["series"], p, int(NOW * 1000)) for i, p in enumerate(points)
    ]


async def _get(client: Client, path: str, token: str | None = None, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.get(BASE + path, params=params, headers=headers)
    body = await response.json()
    return response.status, body


def _brute_force(
    points: dict[float, tuple[float | None, int]], start: float, end: float, width: float
) -> dict[str, dict[str, Any]]:
    """Buckets computed the slow, obvious way from the final points."""
    out: dict[str, dict[str, Any]] = {}
    for window_start in sorted(points):
        if not start <= window_start < end:
            continue
        value, count = points[window_start]
        bucket = PROVINCE_ORIGIN + math.floor((window_start - PROVINCE_ORIGIN) / width) * width
        held = out.setdefault(_z(bucket), {"points": 0, "values": [], "samples": 0, "last": None})
        held["points"] += 1
        held["samples"] += count
        held["last"] = value  # windows are visited in time order
        if value is not None:
            held["values"].append(value)
    for held in out.values():
        values = held.pop("values")
        held["avg"] = sum(values) / len(values) if values else None
        held["min"] = min(values) if values else None
        held["max"] = max(values) if values else None
        held["sum"] = sum(values) if values else None
    return out


def _compare(buckets: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    assert [b["start"] for b in buckets] == list(expected)
    for bucket in buckets:
        want = expected[bucket["start"]]
        assert bucket["points"] == want["points"], bucket["start"]
        assert bucket["samples"] == want["samples"], bucket["start"]
        for name in ("avg", "min", "max", "sum", "last"):
            if want[name] is None:
                assert bucket[name] is None, (bucket["start"], name)
            else:
                assert bucket[name] == pytest.approx(want[name], rel=1e-9), (bucket["start"], name)


async def _three_days_of_bed_occupancy(
    world: HistoryWorld,
) -> dict[float, tuple[float | None, int]]:
    """288 windows of 15 min; every one first provisional, then final with another value;
    two windows have no value. Returns {window_start: (final value, count)}."""
    rng = random.Random(5)
    final: dict[float, tuple[float | None, int]] = {}
    provisional, finals = [], []
    for i in range(3 * 96):
        start = DAY0 + i * 900
        value: float | None = round(rng.uniform(40, 99), 3)
        if i in (17, 150):
            value = None
        count = rng.randint(1, 30)
        provisional.append(_point(BED, "*", start, rng.uniform(0, 100), count - 1, 0, False))
        finals.append(_point(BED, "*", start, value, count, 1, True))
        final[start] = (value, count)
    await world.write(_kpi_records(provisional))
    await world.write(_kpi_records(finals, first_offset=len(provisional)))
    return final


@BOTH_PATHS
async def test_series_buckets_match_a_brute_force_computation(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """1 h buckets over a day come from kpi_points, over three days from the hourly rollup,
    1 d buckets from the daily rollup; all equal the brute-force numbers of the final points."""
    final = await _three_days_of_bed_occupancy(history_world)
    await history_world.rollup()
    token = history_token()

    status, short = await _get(
        history_client, f"/kpis/{BED}/series", token,
        **{"from": _iso(DAY0 + 86400), "to": _iso(DAY0 + 2 * 86400), "bucket": "1h"},
    )  # fmt: skip
    assert status == 200, short
    assert short["table"] == "kpi_points"
    assert short["name_vi"] == "Công suất giường bệnh" and short["unit"] == "%"
    assert [s["group"] for s in short["series"]] == ["*"]
    assert len(short["series"][0]["points"]) == 24
    _compare(
        short["series"][0]["points"], _brute_force(final, DAY0 + 86400, DAY0 + 2 * 86400, 3600)
    )

    status, long = await _get(
        history_client, f"/kpis/{BED}/series", token,
        **{"from": str(DAY0), "to": str(DAY0 + 3 * 86400), "bucket": "1h"},
    )  # fmt: skip
    assert status == 200, long
    assert long["table"] == "kpi_rollup_1h"
    assert len(long["series"][0]["points"]) == 72
    _compare(long["series"][0]["points"], _brute_force(final, DAY0, DAY0 + 3 * 86400, 3600))

    status, daily = await _get(
        history_client, f"/kpis/{BED}/series", token,
        **{"from": _iso(DAY0), "to": _iso(DAY0 + 3 * 86400), "bucket": "1d"},
    )  # fmt: skip
    assert status == 200, daily
    assert daily["table"] == "kpi_rollup_1d"
    # Province days: the range widens to 17:00 UTC before DAY0 and after its end.
    assert daily["from"] == _z(DAY0 - 7 * 3600) and daily["to"] == _z(DAY0 + 3 * 86400 + 17 * 3600)
    assert len(daily["series"][0]["points"]) == 4
    _compare(
        daily["series"][0]["points"], _brute_force(final, DAY0 - 7 * 3600, DAY0 + 4 * 86400, 86400)
    )


@BOTH_PATHS
async def test_long_ranges_are_read_from_the_rollup_table(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """A rollup row changed by hand (in the continuous aggregate's materialization, on the
    TimescaleDB path) shows in the long range's answer and not in the short one."""
    await _three_days_of_bed_occupancy(history_world)
    await history_world.rollup()
    hour = DAY0 + 86400 + 5 * 3600
    table = await history_world.rollup_table("kpi_rollup_1h")
    await history_world.execute(
        f"UPDATE {table} SET value_max = 12345 WHERE series = %s AND bucket = %s",  # noqa: S608
        (f"{BED}|*", datetime.fromtimestamp(hour, tz=UTC)),
    )
    token = history_token("leader")
    span = {"bucket": "1h", "to": str(DAY0 + 2 * 86400)}  # 2 days: the points
    _status, long = await _get(
        history_client, f"/kpis/{BED}/series", token, **span, **{"from": str(DAY0 - 3600)}
    )
    _status, short = await _get(
        history_client, f"/kpis/{BED}/series", token, **span, **{"from": str(DAY0 + 86400)}
    )
    assert (long["table"], short["table"]) == ("kpi_rollup_1h", "kpi_points")
    long_max = {p["start"]: p["max"] for p in long["series"][0]["points"]}
    short_max = {p["start"]: p["max"] for p in short["series"][0]["points"]}
    assert long_max[_z(hour)] == 12345
    assert short_max[_z(hour)] < 100


@BOTH_PATHS
async def test_raw_points_and_groups(history_world: HistoryWorld, history_client: Client) -> None:
    """bucket=raw gives the stored points (highest revision); `group` picks one series."""
    points = [
        _point(SPEED, district, DAY0 + i * 900, 30.0 + i + k, 5, 0, True)
        for i in range(8)
        for k, district in enumerate(("dong-xoai", "binh-long"))
    ]
    points.append(_point(SPEED, "dong-xoai", DAY0, 99.0, 6, 1, True))  # a late revision
    await history_world.write(_kpi_records(points))
    token = history_token(sectors=["traffic"])
    span = {"from": str(DAY0), "to": str(DAY0 + 8 * 900)}
    status, body = await _get(history_client, f"/kpis/{SPEED}/series", token, **span)
    assert status == 200, body
    assert body["bucket"] == "raw"  # the default: the finest that fits
    assert [s["group"] for s in body["series"]] == ["binh-long", "dong-xoai"]
    dong_xoai = body["series"][1]["points"]
    assert len(dong_xoai) == 8
    assert dong_xoai[0] == {
        "start": _z(DAY0), "end": _z(DAY0 + 900), "value": 99.0, "count": 6, "final": True,
        "revision": 1, "emitted_at": _z(DAY0 + 901),
    }  # fmt: skip
    _status, one = await _get(
        history_client, f"/kpis/{SPEED}/series", token, group="binh-long", **span
    )
    assert [s["group"] for s in one["series"]] == ["binh-long"]
    assert [p["value"] for p in one["series"][0]["points"]] == [31.0 + i for i in range(8)]


@BOTH_PATHS
async def test_latest_point_per_kpi_of_a_sector(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """Each KPI of the sector once, in catalog order, with the newest window of each group."""
    start = math.floor(NOW / 900) * 900 - 3 * 900
    points = [_point(BED, "*", start + i * 900, 80.0 + i, 10, 0, i < 2) for i in range(3)]
    points.append(
        _point("health.er_admissions_per_hour", "dong-xoai", start, 12.0, 12, 3, True, 3600.0)
    )
    await history_world.write(_kpi_records(points))
    status, body = await _get(history_client, "/sectors/health/latest", history_token("wall"))
    assert status == 200, body
    assert body["name_vi"] == "Y tế"
    kpis = {k["kpi"]: k for k in body["kpis"]}
    assert list(kpis)[:2] == ["health.er_admissions_per_hour", BED]
    bed = kpis[BED]
    assert bed["name_vi"] == "Công suất giường bệnh"
    assert bed["target"] == {"value": 90.0, "direction": "at_most"}
    [latest] = bed["groups"]
    assert latest["value"] == 82.0 and latest["final"] is False
    assert latest["start"] == _z(start + 2 * 900)
    assert latest["target_status"] == "met"
    assert kpis["health.er_admissions_per_hour"]["groups"][0]["group"] == "dong-xoai"
    assert kpis["health.er_wait_p95"]["groups"] == []


def _event(event_id: str, at: float, *, type_: str = "bed_occupancy", value: float = 80.0,
           source: str = "his-bvdk-tinh", sector: str = "health",
           district: str | None = "dong-xoai") -> dict[str, Any]:  # fmt: skip
    event: dict[str, Any] = {
        "event_id": event_id, "source": source, "sector": sector, "type": type_,
        "occurred_at": _iso(at), "value": value,
    }  # fmt: skip
    if district:
        event["district"] = district
    return event


@BOTH_PATHS
async def test_drill_down_returns_the_events_of_a_window_with_kafka_positions(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """The events a KPI point aggregates, with topic/partition/offset/index, in pages."""
    window = math.floor(NOW / 900) * 900 - 2 * 900
    batch = [_event(f"b{i}", window + 10 * i, value=70.0 + i) for i in range(3)]
    health, traffic, ms = "ioc.events.health", "ioc.events.traffic", int(NOW * 1000)
    his, counter = "his-bvdk-tinh", "dem-xe-ql13"
    speed: dict[str, Any] = {"type_": "avg_speed", "source": counter, "sector": "traffic"}
    records: list[Record] = [
        (health, 2, 7, his, batch, ms),
        (health, 2, 8, his, _event("single", window + 899), ms),
        (health, 1, 3, his, _event("next-window", window + 900), ms),
        (health, 1, 4, his, _event("other-type", window + 5, type_="er_wait_minutes"), ms),
        (traffic, 0, 11, counter, [
            _event("t1", window + 1, **speed),
            _event("t2", window + 2, **speed, district="binh-long"),
        ], ms),
    ]  # fmt: skip
    records += _kpi_records([_point(BED, "*", window, 74.25, 4, 2, True)])
    await history_world.write(records)
    token = history_token("officer", sectors=["health", "traffic"])

    status, body = await _get(
        history_client, f"/kpis/{BED}/events", token, window_start=_iso(window)
    )
    assert status == 200, body
    assert body["window"] == {"start": _z(window), "end": _z(window + 900)}
    assert [p["value"] for p in body["points"]] == [74.25]
    assert body["points"][0]["count"] == len(body["events"]) == 4
    assert [(e["event_id"], e["kafka"]) for e in body["events"]] == [
        ("b0", {"topic": "ioc.events.health", "partition": 2, "offset": 7, "index": 0}),
        ("b1", {"topic": "ioc.events.health", "partition": 2, "offset": 7, "index": 1}),
        ("b2", {"topic": "ioc.events.health", "partition": 2, "offset": 7, "index": 2}),
        ("single", {"topic": "ioc.events.health", "partition": 2, "offset": 8, "index": None}),
    ]
    assert body["next_cursor"] is None

    _status, first = await _get(
        history_client, f"/kpis/{BED}/events", token, window_start=str(window), limit="3"
    )
    assert [e["event_id"] for e in first["events"]] == ["b0", "b1", "b2"]
    _status, second = await _get(
        history_client, f"/kpis/{BED}/events", token,
        window_start=str(window), limit="3", cursor=first["next_cursor"],
    )  # fmt: skip
    assert [e["event_id"] for e in second["events"]] == ["single"]
    assert second["next_cursor"] is None

    _status, grouped = await _get(
        history_client, f"/kpis/{SPEED}/events", token, window_start=str(window), group="binh-long"
    )
    assert [e["event_id"] for e in grouped["events"]] == ["t2"]


@BOTH_PATHS
async def test_an_event_resent_with_a_corrected_time_is_one_event(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """A source re-sends an event_id with a corrected occurred_at (in another window): the
    drill-down shows it once, in its new window, with the resend's Kafka position; the first
    copy read again (a writer re-reading) brings nothing back."""
    first = math.floor(NOW / 900) * 900 - 4 * 900
    moved = first + 2 * 900
    health, his = "ioc.events.health", "his-bvdk-tinh"
    original: Record = (health, 1, 30, his, _event("fix-1", first + 10), int((NOW - 600) * 1000))
    resend: Record = (health, 1, 31, his, _event("fix-1", moved + 20), int((NOW - 60) * 1000))
    neighbour: Record = (health, 1, 29, his, _event("stays", first + 5), int((NOW - 700) * 1000))
    await history_world.write([neighbour, original])
    await history_world.write([resend])
    await history_world.write([original])  # re-read after a crash: older than the resend
    token = history_token("officer", sectors=["health"])

    async def drill(window: float) -> list[tuple[str, int]]:
        status, body = await _get(
            history_client, f"/kpis/{BED}/events", token, window_start=str(window)
        )
        assert status == 200, body
        return [(e["event_id"], e["kafka"]["offset"]) for e in body["events"]]

    assert await drill(first) == [("stays", 29)]
    assert await drill(moved) == [("fix-1", 31)]


@BOTH_PATHS
async def test_long_ranges_include_the_newest_points(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """A long range (read from the rollups) includes points written after the rollups were
    last brought up to date: at once on the TimescaleDB path (real-time continuous aggregate),
    after the maintenance on the plain path; then both equal the brute-force numbers."""
    final = await _three_days_of_bed_occupancy(history_world)
    await history_world.rollup()
    now_window = math.floor(NOW / 900) * 900
    await history_world.write(_kpi_records([_point(BED, "*", now_window, 77.0, 5, 0, False)], 999))
    final[now_window] = (77.0, 5)
    span = {"from": str(DAY0), "to": str(NOW + 1), "bucket": "1h"}
    newest = _z(now_window - (now_window - PROVINCE_ORIGIN) % 3600)

    async def buckets() -> list[dict[str, Any]]:
        status, body = await _get(history_client, f"/kpis/{BED}/series", history_token(), **span)
        assert status == 200, body
        assert body["table"] == "kpi_rollup_1h"
        points: list[dict[str, Any]] = body["series"][0]["points"]
        return points

    answered = {b["start"] for b in await buckets()}
    assert (newest in answered) == (history_world.path == "timescaledb")
    await history_world.rollup()
    start, end = DAY0, NOW + 1
    _compare(await buckets(), _brute_force(final, start, end + 3600, 3600))


def _transition(fingerprint: str, seq: int, state: str, at: float, sector: str) -> bytes:
    kinds = {"pending": "pending", "firing": "fire", "acknowledged": "ack", "resolved": "resolve"}
    previous = {
        "pending": None,
        "firing": "pending",
        "acknowledged": "firing",
        "resolved": "acknowledged",
    }
    return AlertTransition(
        fingerprint=Fingerprint(fingerprint), seq=seq,
        transition=kinds[state],  # type: ignore[arg-type]
        state=state,  # type: ignore[arg-type]
        previous_state=previous[state],  # type: ignore[arg-type]
        rule="bed_occupancy_high", severity="critical", labels={"sector": sector},
        at=at, started_at=at - seq, value=97.0,
        message_vi="Công suất giường bệnh 97% vượt ngưỡng 95%",
        message_en="Bed occupancy 97% above 95%",
    ).encode()  # fmt: skip


async def test_alert_history_newest_first_within_scope(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """Transitions come newest first, page by page, only of the token's sectors."""
    states = ("pending", "firing", "acknowledged", "resolved")
    records: list[Record] = []
    for n, (fingerprint, sector) in enumerate((("fp-health", "health"), ("fp-traffic", "traffic"))):
        for seq, state in enumerate(states, start=1):
            at = NOW - 3600 + n * 60 + seq
            records.append(
                (
                    ALERTS,
                    0,
                    len(records),
                    fingerprint,
                    _transition(fingerprint, seq, state, at, sector),
                    0,
                )
            )
    await history_world.write(records)

    status, body = await _get(history_client, "/alerts", history_token("leader"))
    assert status == 200, body
    assert [(t["fingerprint"], t["seq"]) for t in body["transitions"]] == [
        ("fp-traffic", 4), ("fp-traffic", 3), ("fp-traffic", 2), ("fp-traffic", 1),
        ("fp-health", 4), ("fp-health", 3), ("fp-health", 2), ("fp-health", 1),
    ]  # fmt: skip
    assert body["transitions"][0]["message_vi"].startswith("Công suất")

    scoped = history_token("officer", sectors=["health"])
    _status, health = await _get(history_client, "/alerts", scoped, limit="3")
    assert [t["seq"] for t in health["transitions"]] == [4, 3, 2]
    _status, rest = await _get(
        history_client, "/alerts", scoped, limit="3", cursor=health["next_cursor"]
    )
    assert [t["seq"] for t in rest["transitions"]] == [1] and rest["next_cursor"] is None
    status, _body = await _get(history_client, "/alerts", scoped, sector="traffic")
    assert status == 403
    _status, one = await _get(
        history_client, "/alerts", history_token(), fingerprint="fp-health", state="firing"
    )
    assert [(t["fingerprint"], t["state"]) for t in one["transitions"]] == [("fp-health", "firing")]


def _dead_letter(source: str | None, reason: str, at: float, original: bytes) -> dict[str, Any]:
    return {
        "reason": reason, "detail": f"{reason} in test", "source": source, "event_id": "e-1",
        "topic": "ioc.events.health", "partition": 1, "offset": 42, "index": 3,
        "received_at": at, "original_b64": base64.b64encode(original).decode(),
    }  # fmt: skip


@BOTH_PATHS
async def test_dead_letters_per_source_with_the_departments_api_key(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """A department reads its own source's dead letters with its API key, nobody else's;
    tokens read those of their sectors' sources."""
    letters = [
        _dead_letter("his-bvdk-tinh", "unit_mismatch", NOW - 300, b'{"unit":"kg"}'),
        _dead_letter("his-bvdk-tinh", "missing_field:value", NOW - 200, b'{"type":"x"}'),
        _dead_letter("dem-xe-ql13", "bad_timestamp", NOW - 100, b"{}"),
        _dead_letter(None, "bad_json", NOW - 50, b"\xff\xfe"),
    ]
    await history_world.write([(DEADLETTER, 0, i, None, dl, 0) for i, dl in enumerate(letters)])
    key = await history_world.api_key("his-bvdk-tinh")

    response = await history_client.get(
        f"{BASE}/dead-letters", params={"source": "his-bvdk-tinh"}, headers={"X-API-Key": key}
    )
    body = await response.json()
    assert response.status == 200, body
    assert [d["reason"] for d in body["dead_letters"]] == ["missing_field:value", "unit_mismatch"]
    first = body["dead_letters"][1]
    assert base64.b64decode(first["original_b64"]) == b'{"unit":"kg"}'
    assert first["kafka"] == {
        "topic": "ioc.events.health",
        "partition": 1,
        "offset": 42,
        "index": 3,
    }
    assert first["deadletter"] == {"partition": 0, "offset": 0}

    for params, status in (({"source": "dem-xe-ql13"}, 403), ({}, 403)):
        response = await history_client.get(
            f"{BASE}/dead-letters", params=params, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status == status
        assert (await response.json())["error"] == "forbidden"
    response = await history_client.get(f"{BASE}/kpis/{BED}/series", headers={"X-API-Key": key})
    assert response.status == 403

    _status, everything = await _get(history_client, "/dead-letters", history_token())
    assert [d["reason"] for d in everything["dead_letters"]] == [
        "bad_json", "bad_timestamp", "missing_field:value", "unit_mismatch",
    ]  # fmt: skip
    _status, traffic = await _get(
        history_client, "/dead-letters", history_token(sectors=["traffic"])
    )
    assert [d["source"] for d in traffic["dead_letters"]] == ["dem-xe-ql13"]


SERIES = f"/kpis/{BED}/series"
JUNE_1, JUNE_2, MAY_1 = "2025-06-01T00:00:00Z", "2025-06-02T00:00:00Z", "2025-05-01T00:00:00Z"


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        (f"/kpis/{BED}/series", {"from": JUNE_2, "to": JUNE_1}, 400, "bad_range"),
        (f"/kpis/{BED}/series", {"from": "yesterday"}, 400, "bad_range"),
        (f"/kpis/{BED}/series", {"from": "2025-06-01T00:00:00"}, 400, "bad_range"),
        (SERIES, {"from": MAY_1, "to": JUNE_1, "bucket": "1m"}, 422, "range_too_long"),
        (f"/kpis/{BED}/series", {"bucket": "7m"}, 400, "bad_bucket"),
        (f"/kpis/{BED}/series", {"form": "2025-06-01T00:00:00Z"}, 400, "bad_parameter"),
        ("/kpis/health.nope/series", {}, 404, "unknown_kpi"),
        ("/sectors/nowhere/latest", {}, 404, "unknown_sector"),
        (f"/kpis/{BED}/events", {}, 400, "bad_range"),
        (f"/kpis/{BED}/events", {"window_start": "1000"}, 400, "bad_range"),
        (f"/kpis/{BED}/events", {"window_start": "900", "limit": "0"}, 400, "bad_page_size"),
        ("/alerts", {"limit": "1001"}, 400, "bad_page_size"),
        ("/alerts", {"limit": "ten"}, 400, "bad_page_size"),
        ("/alerts", {"cursor": "not-a-cursor"}, 400, "bad_cursor"),
        ("/alerts", {"from": "2025-01-01T00:00:00Z", "to": JUNE_1}, 422, "range_too_long"),
        ("/dead-letters", {"from": "0", "to": str(200 * 86400)}, 422, "range_too_long"),
        ("/nothing", {}, 404, "not_found"),
    ],
)  # fmt: skip
async def test_bad_requests_are_refused_with_a_code(
    unchanged_history_client: Client, path: str, params: dict[str, str], status: int, code: str
) -> None:
    """Bad ranges, buckets, page sizes, cursors and ids get their 4xx and error code."""
    got, body = await _get(unchanged_history_client, path, history_token("leader"), **params)
    assert (got, body["error"]) == (status, code), body
    assert body["detail"]


async def test_reads_need_a_valid_credential(unchanged_history_client: Client) -> None:
    """No credential, a forged or expired token, an unknown key: 401; out of scope: 403."""
    path = f"{BASE}/sectors/health/latest"
    forged = history_token()[:-4] + "AAAA"
    expired = history_token(ttl=60, now=NOW - 3600)
    cases = [
        ({}, 401),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401),
        ({"Authorization": f"Bearer {forged}"}, 401),
        ({"Authorization": f"Bearer {expired}"}, 401),
        ({"X-API-Key": "iock_000000000000_" + "A" * 43}, 401),
        ({"Authorization": f"Bearer {history_token(sectors=['traffic'])}"}, 403),
    ]
    for headers, status in cases:
        response = await unchanged_history_client.get(path, headers=headers)
        body = await response.json()
        assert response.status == status, (headers, body)
        assert body["error"] == ("unauthorized" if status == 401 else "forbidden")
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await unchanged_history_client.post(
        path, headers={"Authorization": f"Bearer {history_token()}"}
    )
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"


async def test_ioc_kpi_prints_the_latest_values(
    history_world: HistoryWorld, ioc_cli: Callable[..., CliResult]
) -> None:
    """`ioc kpi --sector health` prints Vietnamese names, values, targets and states;
    --json gives one object per KPI; an unknown sector is one error line."""
    start = math.floor(NOW / 900) * 900 - 900
    await history_world.write(
        _kpi_records(
            [
                _point(BED, "*", start - 900, 93.0, 10, 1, True),
                _point(BED, "*", start, 96.5, 12, 0, False),
                _point("health.er_admissions_per_hour", "dong-xoai", start, 7.0, 7, 0, False, 3600),
                _point("health.er_admissions_per_hour", "binh-long", start, 5.0, 5, 0, False, 3600),
            ]
        )
    )
    env = {"DATABASE_URL": history_world.url}
    text = await asyncio.to_thread(ioc_cli, "kpi", "--sector", "health", env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "Y tế · Health"
    bed = next(line for line in lines if "Công suất giường bệnh" in line)
    assert "96,5 %" in bed and "tạm tính" in bed and "mục tiêu ≤ 90" in bed
    assert "không đạt" in bed
    admissions = next(line for line in lines if "Ca cấp cứu mỗi giờ" in line)
    assert "12 ca" in admissions and "tổng 2 khu vực" in admissions
    wait = next(line for line in lines if "Thời gian chờ cấp cứu" in line)
    assert "chưa có dữ liệu" in wait

    english = await asyncio.to_thread(ioc_cli, "kpi", "--sector", "health", "--lang", "en", env=env)
    assert "Bed occupancy" in english.stdout and "provisional" in english.stdout
    assert "96.5 %" in english.stdout

    by_area = await asyncio.to_thread(ioc_cli, "kpi", "--sector", "health", "--groups", env=env)
    areas = [line.strip() for line in by_area.stdout.splitlines() if line.startswith("      ")]
    assert any(line.startswith("Thành phố Đồng Xoài ") for line in areas), by_area.stdout
    assert not any(line.startswith("dong-xoai") for line in areas)

    as_json = await asyncio.to_thread(ioc_cli, "kpi", "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    kpis = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(kpis) == sum(len(s.kpis) for s in history_world.catalog.sectors)
    bed_json = next(k for k in kpis if k["kpi"] == BED)
    assert bed_json["groups"][0]["value"] == 96.5
    assert bed_json["groups"][0]["target_status"] == "missed"

    unknown = await asyncio.to_thread(ioc_cli, "kpi", "--sector", "nowhere", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("ioc: error [unknown_sector]")
    assert "Traceback" not in unknown.stderr
    # `ioc alerts` names a sector the same way (it said "no alerts" for any name).
    alerts = await asyncio.to_thread(ioc_cli, "alerts", "--sector", "nowhere", env=env)
    assert alerts.returncode == 1
    assert alerts.stderr.startswith("ioc: error [unknown_sector] no sector 'nowhere'")
    quiet = await asyncio.to_thread(ioc_cli, "alerts", "--sector", "health", env=env)
    assert quiet.returncode == 0, quiet.stderr


async def test_ingest_api_serves_the_history_with_a_token(
    ioc_process: Callable[..., IocProcess],
    ioc_cli: Callable[..., CliResult],
    kafka_bootstrap: str,
    contract_topics: list[str],
    history_world: HistoryWorld,
    state_dir: Path,
) -> None:
    """`ioc ingest-api` answers /v1/history/… with a token of `ioc tokens create`, and lists
    the history paths in its /openapi.json."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": history_world.url,
        "IOC_STATE_DIR": str(state_dir),
    }
    made = await asyncio.to_thread(
        ioc_cli, "tokens", "create", "--role", "officer", "--name", "Trực ban", env=env
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    await history_world.write(
        _kpi_records([_point(BED, "*", math.floor(NOW / 900) * 900, 88.0, 9, 0, False)])
    )
    api = ioc_process("ingest-api", "--port", "0", env=env)
    await asyncio.to_thread(api.wait_for_output, "ready:", 60)
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", api.output())
    assert match, api.output()
    url = match.group(1)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{url}{BASE}/sectors/health/latest", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        bed = next(k for k in body["kpis"] if k["kpi"] == BED)
        assert bed["groups"][0]["value"] == 88.0
        async with http.get(f"{url}{BASE}/sectors/health/latest") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthorized"
        async with http.get(f"{url}/openapi.json") as resp:
            document = await resp.json()
        assert f"{BASE}/kpis/{{kpi}}/series" in document["paths"]
        async with http.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
        assert 'ioc_history_requests_total{endpoint="latest",status="200"} 1.0' in metrics
    api.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(api.proc.wait, 30) == 0, api.output()


@BOTH_PATHS
async def test_points_near_the_largest_double_are_summed_without_an_error(
    history_world: HistoryWorld, history_client: Client
) -> None:
    """Finite points whose float8 sum overflows (PostgreSQL raises then): buckets from
    kpi_points and from the rollups answer 200 with a finite average and no sum, and the
    writer's rollup maintenance does not fail on them."""
    huge = 1.7976931348623157e308
    start = DAY0 + 3600
    points = [_point(BED, "*", start + i * 900, huge, 2, 0, True) for i in range(4)]
    await history_world.write(_kpi_records(points))
    await history_world.rollup()  # raised "value out of range" before
    token = history_token()
    for params in (
        {"from": _iso(DAY0), "to": _iso(DAY0 + 86400), "bucket": "1h"},  # from kpi_points
        {"from": _iso(DAY0), "to": _iso(DAY0 + 3 * 86400), "bucket": "1h"},  # the rollup
    ):
        status, body = await _get(history_client, f"/kpis/{BED}/series", token, **params)
        assert status == 200, body
        (bucket,) = body["series"][0]["points"]
        assert bucket["avg"] == pytest.approx(huge) and bucket["max"] == huge
        assert bucket["sum"] is None


async def test_a_database_outage_is_a_503_that_shows_nothing_of_the_database(
    history_world: HistoryWorld, unused_tcp_port: int
) -> None:
    """The history's pool points at a port where no database listens: 503 `unavailable`
    with Retry-After and a fixed detail, the connection error only in the log."""
    from aiohttp.test_utils import TestServer
    from prometheus_client import CollectorRegistry
    from psycopg_pool import AsyncConnectionPool

    from consumers.history import PREFIX, HistoryApi, HistoryMetrics, HistoryStore
    from tests.plugins.history import HISTORY_SECRET

    dead = f"postgresql://nobody:secret-password@127.0.0.1:{unused_tcp_port}/none"
    pool = AsyncConnectionPool(dead, open=False, min_size=0, max_size=1, timeout=1.0)
    await pool.open(wait=False)
    history = HistoryApi(
        rows=HistoryStore(pool=pool, timeout=2.0),
        catalog=history_world.catalog,
        token_secret=HISTORY_SECRET,
        keys=None,
        metrics=HistoryMetrics.create(CollectorRegistry()),
    )
    root = web.Application()
    root.add_subapp(PREFIX, history.app())
    client: Client = TestClient(TestServer(root))
    await client.start_server()
    try:
        for path in ("/alerts", f"/kpis/{BED}/series"):
            response = await client.get(
                BASE + path, headers={"Authorization": f"Bearer {history_token()}"}
            )
            body = await response.json()
            assert response.status == 503, body
            assert body == {
                "error": "unavailable",
                "detail": "the history database is unavailable; retry later",
            }
            assert response.headers["Retry-After"] == "1"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await client.close()
        await pool.close()
