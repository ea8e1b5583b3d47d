"""The gateway's state: dedupe of at-least-once input, latest per key, snapshots, sparklines."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.gateway.state import GatewayState
from consumers.gateway.wall_config import MAX_TILE_KPIS, wall_config
from foundation.contract.catalog import load_catalog


def point(
    *,
    start: float = 0.0,
    revision: int = 0,
    value: float = 1.0,
    emitted: float = 100.0,
    sector: str = "health",
    group: str = "*",
) -> dict[str, Any]:
    return {
        "kind": "kpi",
        "series": f"{sector}.k|{group}",
        "kpi": "k",
        "sector": sector,
        "group": group,
        "window_start": start,
        "window_end": start + 60,
        "value": value,
        "count": 1,
        "final": False,
        "revision": revision,
        "emitted_at": emitted,
        "newest": emitted,
    }


def test_a_later_broker_epochs_point_wins_whatever_its_revision() -> None:
    """After the embedded broker restarted, the window's new epoch supersedes the old one's
    higher revisions, and the old epoch's late revision changes nothing."""
    state = GatewayState()
    state.apply_kpi({**point(revision=63, value=358), "generation": 1})
    assert state.apply_kpi({**point(revision=11, value=422), "generation": 2}) != []
    assert state.apply_kpi({**point(revision=64, value=359), "generation": 1}) == []
    ((_key, latest),) = state.snapshot("kpi:health")
    assert latest["value"] == 422


def test_a_data_gap_is_kept_per_sector_and_shown_on_its_freshness_channels() -> None:
    state = GatewayState()
    gap = {
        "kind": "data_gap", "sector": "health", "topic": "ioc.events.health", "partition": 0,
        "first_offset": 3, "last_offset": 9, "records": 7, "start": 10.0, "end": 20.0,
        "detected_at": 30.0,
    }  # fmt: skip
    changes = state.apply_record("gap|health", gap)
    assert {c.channel for c in changes} == {"freshness", "freshness:health"}
    assert state.apply_record("gap|health", {**gap, "detected_at": 29.0}) == []
    assert ("gap|health", gap) in state.snapshot("freshness:health")


def alert(fp: str, seq: int, state: str = "firing", sector: str = "health") -> dict[str, Any]:
    return {
        "kind": "alert",
        "fingerprint": fp,
        "seq": seq,
        "state": state,
        "labels": {"sector": sector},
        "severity": "critical",
    }


def test_kpi_points_dedupe_by_window_and_revision():
    state = GatewayState()
    assert [c.channel for c in state.apply_kpi(point(revision=0))] == ["kpi:health"]
    assert state.apply_kpi(point(revision=0)) == []  # duplicate
    assert state.apply_kpi(point(revision=2, value=3)) != []
    assert state.apply_kpi(point(revision=1, value=2)) == []  # older revision
    ((_key, latest),) = state.snapshot("kpi:health")
    assert (latest["revision"], latest["value"]) == (2, 3)


def test_a_late_revision_of_an_older_window_is_news_but_not_the_latest():
    state = GatewayState()
    state.apply_kpi(point(start=0, revision=0, value=1))
    state.apply_kpi(point(start=60, revision=0, value=5))
    changes = state.apply_kpi(point(start=0, revision=1, value=2))
    assert len(changes) == 1  # clients may want revisions of past windows
    ((_key, latest),) = state.snapshot("kpi:health")
    assert (latest["window_start"], latest["value"]) == (60, 5)


def test_sparkline_keeps_one_sample_a_minute_for_an_hour():
    state = GatewayState()
    for i in range(200):  # every 30 s for 100 minutes, one window each
        state.apply_kpi(point(start=i * 30, value=float(i), emitted=1000.0 + i * 30))
    ((_key, latest),) = state.snapshot("kpi:health")
    spark = latest["spark"]
    assert spark[-1] == [1000.0 + 199 * 30, 199.0]
    assert all(later[0] - earlier[0] >= 30 for earlier, later in itertools.pairwise(spark))
    assert spark[-1][0] - spark[0][0] <= 3600
    assert 55 <= len(spark) <= 61


def spark(state: GatewayState) -> list[list[float]]:
    ((_key, latest),) = state.snapshot("kpi:health")
    return list(latest["spark"])


def a_series_as_the_worker_emits_it(steps: int = 75) -> list[dict[str, Any]]:
    """`steps` × 40 s (75: 50 minutes) of a 15-minute tumbling window: a provisional point
    every 40 s, the final one at the window's end, and a late revision of each closed window
    100 s after it."""
    points: list[dict[str, Any]] = []
    revisions: dict[float, int] = {}
    for step in range(steps):
        at = 10_000.0 + step * 40
        start = at - at % 900
        revisions[start] = revisions.get(start, -1) + 1
        points.append(point(start=start, revision=revisions[start], value=step, emitted=at))
        closed = start - 900
        if closed in revisions and at - start >= 100 and revisions[closed] < 50:
            revisions[closed] = 50  # once: a late event within the grace
            points.append(point(start=closed, revision=50, value=-1.0, emitted=at + 1))
    return points


def test_sparkline_samples_the_tiles_value_once_a_minute():
    """Live, a point is sampled when it is the latest; a late revision of a closed window is not."""
    state = GatewayState()
    points = a_series_as_the_worker_emits_it()
    for p in points:
        state.apply_kpi(p)
    line = spark(state)
    assert [v for _t, v in line if v < 0] == []
    minutes = [int(t // 60) for t, _v in line]
    assert minutes == sorted({int(p["emitted_at"] // 60) for p in points if p["value"] >= 0})
    assert line[-1] == [points[-1]["emitted_at"], points[-1]["value"]]


@given(order=st.permutations(a_series_as_the_worker_emits_it(135)))
def test_sparkline_is_the_same_whatever_order_the_points_come_in(order):
    """Database rows first, the replay after, or any order: the curve the live feed drew
    (90 minutes of points: the hour is cut from the right end whatever came first)."""
    live = GatewayState()
    for p in a_series_as_the_worker_emits_it(135):
        live.apply_kpi(p)
    shuffled = GatewayState()
    for p in order:
        shuffled.apply_kpi(p)
    assert spark(shuffled) == spark(live)


def test_a_replayed_revision_the_database_superseded_fills_its_minute_but_is_no_news():
    """The cold start loads a window's last revision; its earlier ones from the Kafka replay
    still draw the sparkline's minutes, and are not pushed again."""
    revisions = [
        point(start=900, revision=r, value=50 + r, emitted=1000 + 60 * r) for r in range(8)
    ]
    state = GatewayState()
    assert state.apply_kpi(revisions[-1]) != []  # the database's row
    assert [state.apply_kpi(p) for p in revisions] == [[]] * 8
    assert spark(state) == [[p["emitted_at"], p["value"]] for p in revisions]
    ((_key, latest),) = state.snapshot("kpi:health")
    assert latest["revision"] == 7


def test_a_late_revision_emitted_after_the_hour_does_not_push_the_shown_points_out():
    """A (window 0) and B (window 900) were shown; C, a revision of window 0 emitted over an
    hour later, never was. Whichever comes first, the line is A, B."""
    a = point(start=0, revision=0, value=1, emitted=10)
    b = point(start=900, revision=0, value=2, emitted=300)
    c = point(start=0, revision=1, value=3, emitted=4000)
    for order in ([a, b, c], [c, a, b], [c, b, a], [b, c, a]):
        state = GatewayState()
        for p in order:
            state.apply_kpi(p)
        assert spark(state) == [[10.0, 1.0], [300.0, 2.0]], [p["emitted_at"] for p in order]


def test_a_point_older_than_the_sparklines_hour_is_left_out():
    state = GatewayState()
    state.apply_kpi(point(start=9000, value=2, emitted=9000))
    state.apply_kpi(point(start=0, value=1, emitted=9000 - 3601))
    assert spark(state) == [[9000.0, 2.0]]


def test_snapshot_is_per_sector():
    state = GatewayState()
    state.apply_kpi(point(sector="health"))
    state.apply_kpi(point(sector="traffic", group="dong-xoai"))
    assert [k for k, _ in state.snapshot("kpi:traffic")] == ["traffic.k|dong-xoai"]
    assert state.series_count == 2


@pytest.mark.parametrize("resolved_first", [False, True])
def test_alerts_follow_seq_and_resolved_ones_leave_the_snapshot(resolved_first):
    state = GatewayState()
    if resolved_first:  # cold start: only the seq of a resolved alert is known
        state.know_alert("fp", 3, "health")
        assert state.apply_alert(alert("fp", 2)) == []  # an old firing must not reopen it
        assert state.snapshot("alerts") == []
        return
    changes = state.apply_alert(alert("fp", 1))
    assert [c.channel for c in changes] == ["alerts", "alerts:health"]
    assert state.apply_alert(alert("fp", 1)) == []
    assert [k for k, _ in state.snapshot("alerts:health")] == ["fp"]
    assert state.snapshot("alerts:traffic") == []
    assert state.apply_alert(alert("fp", 2, "resolved")) != []
    assert state.snapshot("alerts") == [] and state.open_alert_count == 0
    assert state.alert_sector("fp") == "health"


def test_freshness_records_keep_the_newest_change():
    state = GatewayState()
    stale = {
        "kind": "freshness",
        "source": "s1",
        "sector": "health",
        "state": "stale",
        "last_seen": 10.0,
        "changed_at": 100.0,
        "stale_after": 30.0,
    }
    assert len(state.apply_freshness("freshness|s1", stale)) == 2
    assert state.apply_freshness("freshness|s1", dict(stale)) == []
    assert state.apply_freshness("freshness|s1", {**stale, "changed_at": 90.0}) == []
    assert state.apply_freshness("freshness|s1", {**stale, "state": "fresh"}) != []
    seen = {"kind": "sector_seen", "sector": "health", "last_seen": 50.0, "emitted_at": 51.0}
    assert state.apply_freshness("sector|health", seen) != []
    assert state.apply_freshness("sector|health", {**seen, "last_seen": 40.0}) == []
    assert {k for k, _ in state.snapshot("freshness:health")} == {"freshness|s1", "sector|health"}
    assert state.snapshot("freshness:traffic") == []


def test_records_of_unknown_kinds_are_ignored():
    assert GatewayState().apply_record(None, {"kind": "weather"}) == []


def test_wall_config_has_every_sector_with_two_or_three_kpis_and_targets():
    config = wall_config(load_catalog())
    assert config["province"]["name_vi"] == "Bình Phước"
    assert len(config["sectors"]) == 11
    for sector in config["sectors"]:
        assert 2 <= len(sector["kpis"]) <= MAX_TILE_KPIS, sector["id"]
    health = config["sectors"][0]
    assert [k["id"] for k in health["kpis"]][:2] == ["er_admissions_per_hour", "bed_occupancy_pct"]
    assert health["kpis"][1]["target"] == {"value": 90.0, "direction": "at_most"}
    assert config["severity"]["critical"]["vi"] == "nghiêm trọng"
