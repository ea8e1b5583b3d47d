"""Alert engine rule evaluation: KPI points, `for`, hysteresis, order, rates, absence, staleness."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from alerts.engine import AlertEngine
from tests.plugins.alerts import (
    BED_D1,
    KPI_ABSENCE,
    MIN,
    T0,
    action,
    check_stream,
    fp_of,
    freshness,
    kinds,
    point,
)

Engine = Callable[..., AlertEngine]
VISITS_D1 = fp_of("visits_surge", sector="health", kpi="visits", district="d1")
VISITS_DROP_D1 = fp_of("visits_drop", sector="health", kpi="visits", district="d1")
HIS_SILENT = fp_of("his_silent", sector="health", source="his")
WAIT_ABSENT = fp_of("wait_absent", sector="health", kpi="wait_avg")
SPEED = fp_of("speed_low", sector="traffic", kpi="speed_avg")


def test_threshold_waits_for_its_for_duration_then_fires(new_engine: Engine) -> None:
    """Pending at the first breach, firing once `for` (10 min) has passed, on a point or a tick."""
    engine = new_engine()
    out = engine.on_kpi(point(value=97.0), T0)
    assert kinds(out) == ["pending"]
    assert out[0].fingerprint == BED_D1
    assert out[0].labels == {"sector": "health", "kpi": "bed_pct", "district": "d1"}
    assert out[0].message_vi == "Công suất giường tại Thành phố Đồng Xoài 97,0% vượt 95%"
    assert engine.tick(T0 + 10 * MIN - 1) == []
    fired = engine.tick(T0 + 10 * MIN)
    assert kinds(fired) == ["fire"]
    assert fired[0].state == "firing" and fired[0].previous_state == "pending"
    assert fired[0].started_at == T0
    check_stream(out + fired)


def test_a_later_point_fires_a_due_pending_alert_without_a_tick(new_engine: Engine) -> None:
    """The `for` check also runs on every point."""
    engine = new_engine()
    engine.on_kpi(point(value=97.0), T0)
    out = engine.on_kpi(point(value=98.0, revision=1), T0 + 11 * MIN)
    assert kinds(out) == ["fire"]
    assert out[0].value == 98.0


def test_clearing_within_for_cancels_the_pending_alert(new_engine: Engine) -> None:
    """pending → resolved (cancel) when the value drops to the clear level before `for`."""
    engine = new_engine()
    first = engine.on_kpi(point(value=97.0), T0)
    band = engine.on_kpi(point(value=92.0, revision=1), T0 + 2 * MIN)
    assert band == []  # inside the hysteresis band: still pending
    cleared = engine.on_kpi(point(value=89.0, revision=2), T0 + 3 * MIN)
    assert kinds(cleared) == ["cancel"]
    assert cleared[0].state == "resolved"
    assert engine.tick(T0 + 20 * MIN) == []
    check_stream(first + cleared)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([97, 93, 91, 90.5], ["fire"]),  # stays in the band: firing
        ([97, 93, 90, 96], ["fire", "resolve", "pending"]),  # clear at 90, breach again
        ([97, 89, 92, 94], ["fire", "resolve"]),  # back in the band after clearing: not raised
    ],
)
def test_hysteresis_on_a_firing_alert(
    new_engine: Engine, values: list[float], expected: list[str]
) -> None:
    """A firing alert resolves at the clear level, not at the raise level."""
    engine = new_engine()
    engine.on_kpi(point(value=values[0]), T0)
    out = engine.tick(T0 + 10 * MIN)
    for index, value in enumerate(values[1:], start=1):
        out += engine.on_kpi(point(value=value, revision=index), T0 + (10 + index) * MIN)
    assert kinds(out) == expected


def test_for_zero_fires_at_once_and_refires_after_resolving(new_engine: Engine) -> None:
    """Without `for`, the first breach fires; a later breach of a resolved alert re-fires."""
    engine = new_engine()
    out = engine.on_kpi(point("traffic.speed_avg", "*", value=15.0, size=300), T0)
    out += engine.on_kpi(point("traffic.speed_avg", "*", value=35.0, revision=1, size=300), T0 + 60)
    out += engine.on_kpi(
        point("traffic.speed_avg", "*", value=10.0, revision=2, size=300), T0 + 120
    )
    assert kinds(out) == ["fire", "resolve", "refire"]
    assert [t.state for t in out] == ["firing", "resolved", "firing"]
    assert out[2].previous_state == "resolved" and out[2].started_at == T0 + 120
    assert {t.fingerprint for t in out} == {SPEED}
    check_stream(out)


def test_a_later_broker_epochs_point_supersedes_a_higher_revision(new_engine: Engine) -> None:
    """After the embedded broker restarted, a window's revisions start again under a higher
    generation: the new epoch's point counts, the old epoch's late revision does not."""
    engine = new_engine()
    engine.on_kpi({**point(value=80.0, revision=63), "generation": 1}, T0)
    fired = engine.on_kpi({**point(value=97.0, revision=0), "generation": 2}, T0 + 1)
    assert kinds(fired) == ["pending"]  # bed_high waits its `for`: evaluated, not ignored
    late = engine.on_kpi({**point(value=80.0, revision=64), "generation": 1}, T0 + 2)
    assert late == [] and engine.ignored["older_point"] == 1


def test_a_point_of_an_older_window_does_not_override_a_newer_one(new_engine: Engine) -> None:
    """A late revision of the previous window arrives after the new window's point: ignored."""
    engine = new_engine()
    size = 15 * MIN
    engine.on_kpi(point(value=97.0, start=T0), T0)
    engine.on_kpi(point(value=80.0, start=T0 + size), T0 + size + 1)  # new window: cancels
    late = engine.on_kpi(point(value=99.0, start=T0, final=True, revision=3), T0 + size + 2)
    assert late == []
    assert engine.ignored["older_point"] == 1
    assert engine.alert(BED_D1) is not None
    assert engine.alert(BED_D1).state == "resolved"  # type: ignore[union-attr]


def test_a_lower_or_equal_revision_of_the_same_window_is_ignored(new_engine: Engine) -> None:
    """Duplicates (at-least-once delivery) and reordered revisions change nothing."""
    engine = new_engine()
    engine.on_kpi(point(value=97.0, revision=2), T0)
    assert engine.on_kpi(point(value=80.0, revision=1), T0 + 1) == []
    assert engine.on_kpi(point(value=80.0, revision=2), T0 + 2) == []
    assert kinds(engine.on_kpi(point(value=80.0, revision=3), T0 + 3)) == ["cancel"]


def test_series_are_evaluated_apart(new_engine: Engine) -> None:
    """Each district's series has its own alert (fingerprint by labels)."""
    engine = new_engine()
    a = engine.on_kpi(point(group="d1", value=97.0), T0)
    b = engine.on_kpi(point(group="d2", value=97.0), T0)
    assert a[0].fingerprint != b[0].fingerprint
    assert b[0].labels["district"] == "d2"
    assert "Huyện Bù Đăng" in b[0].message_vi and "Bu Dang District" in b[0].message_en
    assert len(engine.open_alerts()) == 2


def test_points_without_data_are_not_evaluated(new_engine: Engine) -> None:
    """value None (an empty window) neither raises nor clears."""
    engine = new_engine()
    engine.on_kpi(point(value=97.0), T0)
    assert engine.on_kpi(point(value=None, revision=1), T0 + 60) == []
    assert engine.alert(BED_D1).state == "pending"  # type: ignore[union-attr]


def _visits(start: float, value: float, *, final: bool, revision: int = 0) -> dict[str, object]:
    return point("health.visits", "d1", start=start, value=value, final=final,
                 revision=revision, size=3600)  # fmt: skip


def test_rate_of_change_compares_with_the_window_one_period_earlier(new_engine: Engine) -> None:
    """+50 % against the window that started `over` (1 h) earlier fires; back under clears."""
    engine = new_engine()
    out = engine.on_kpi(_visits(T0, 100.0, final=True), T0 + 3600)
    assert out == []  # no baseline yet
    out = engine.on_kpi(_visits(T0 + 3600, 149.0, final=False), T0 + 7000)
    assert out == []  # +49 %
    out = engine.on_kpi(_visits(T0 + 3600, 150.0, final=False, revision=1), T0 + 7100)
    assert kinds(out) == ["fire"]
    assert out[0].fingerprint == VISITS_D1
    assert out[0].message_vi == "Lượt khám tại Thành phố Đồng Xoài tăng 50%"
    out = engine.on_kpi(_visits(T0 + 3900, 120.0, final=False), T0 + 7500)
    assert out == []  # baseline of T0 + 300 missing: no answer, the alert holds
    engine.on_kpi(_visits(T0 + 300, 100.0, final=True), T0 + 7501)  # a late baseline arrives
    out = engine.on_kpi(_visits(T0 + 3900, 120.0, final=False, revision=1), T0 + 7600)
    assert out == []  # +20 % so far: a provisional count is a lower bound, it cannot clear
    out = engine.on_kpi(_visits(T0 + 3900, 120.0, final=True, revision=2), T0 + 7900)
    assert kinds(out) == ["resolve"]


def test_a_new_windows_first_counts_do_not_resolve_a_rise(new_engine: Engine) -> None:
    """A count's new window starts low: it resolves a rise only once the window is final.

    Before, the first provisional point of each window read as a fall and resolved the alert,
    and the window's growing count fired it again: a surge flapped once a window.
    """
    engine = new_engine()
    engine.on_kpi(_visits(T0, 100.0, final=True), T0 + 3600)
    fired = engine.on_kpi(_visits(T0 + 3600, 200.0, final=True), T0 + 7200)
    assert kinds(fired) == ["fire"]
    for minute, value in enumerate((3.0, 40.0, 150.0, 230.0), start=1):
        out = engine.on_kpi(
            _visits(T0 + 7200, value, final=False, revision=minute), T0 + 7200 + minute * 60
        )
        assert out == [], (value, kinds(out))
    out = engine.on_kpi(_visits(T0 + 7200, 240.0, final=True, revision=9), T0 + 10800)
    assert kinds(out) == ["resolve"]  # +20 % on the surge's window: back under 50 %


def test_provisional_counts_do_not_read_as_falls(new_engine: Engine) -> None:
    """A count's provisional point at a window's start looks like a drop: only finals test falls."""
    engine = new_engine()
    engine.on_kpi(_visits(T0, 100.0, final=True), T0 + 3600)
    out = engine.on_kpi(_visits(T0 + 3600, 10.0, final=False), T0 + 3610)
    assert out == []
    out = engine.on_kpi(_visits(T0 + 3600, 40.0, final=True, revision=1), T0 + 7200)
    assert kinds(out) == ["fire"]
    assert out[0].fingerprint == VISITS_DROP_D1


def test_absence_of_a_source_fires_from_its_freshness(new_engine: Engine) -> None:
    """Stale at last_seen + 3 min; the rule's `for` is 5 min of silence: pending, then firing."""
    engine = new_engine()
    last_seen = T0
    out = engine.on_freshness(
        freshness("his", "stale", at=T0 + 3 * MIN, last_seen=last_seen), T0 + 3 * MIN
    )
    assert kinds(out) == ["pending"]
    assert out[0].fingerprint == HIS_SILENT
    assert out[0].message_vi == "Mất dữ liệu từ HIS" and out[0].value is None
    assert engine.tick(T0 + 5 * MIN - 1) == []
    assert kinds(engine.tick(T0 + 5 * MIN)) == ["fire"]
    back = engine.on_freshness(
        freshness("his", "fresh", at=T0 + 9 * MIN, last_seen=T0 + 9 * MIN), T0 + 9 * MIN
    )
    assert kinds(back) == ["resolve"]
    assert engine.stale_sources() == []


def test_absence_already_long_enough_fires_at_once(new_engine: Engine) -> None:
    """Silent since last_seen for more than `for` when the stale record comes: firing at once."""
    engine = new_engine()
    out = engine.on_freshness(
        freshness("his", "stale", at=T0 + 10 * MIN, last_seen=T0), T0 + 10 * MIN
    )
    assert kinds(out) == ["fire"]


def test_absence_of_a_source_never_heard_from(new_engine: Engine) -> None:
    """No last_seen: silent since freshness began watching (changed_at - stale_after)."""
    engine = new_engine()
    out = engine.on_freshness(freshness("his", "stale", at=T0 + 3 * MIN), T0 + 3 * MIN)
    assert kinds(out) == ["pending"]
    assert kinds(engine.tick(T0 + 5 * MIN)) == ["fire"]


def test_absence_of_a_kpi_fires_on_tick_and_clears_on_data(new_engine: Engine) -> None:
    """No wait_avg point with data for 10 min (since watching began) fires; a point clears it."""
    engine = new_engine(health_rules=[KPI_ABSENCE])
    engine.tick(T0)
    assert engine.tick(T0 + 10 * MIN - 1) == []
    out = engine.tick(T0 + 10 * MIN)
    assert kinds(out) == ["fire"] and out[0].fingerprint == WAIT_ABSENT
    assert engine.tick(T0 + 11 * MIN) == []
    back = engine.on_kpi(
        point("health.wait_avg", "his", value=5.0, size=300, at=T0 + 12 * MIN), T0 + 12 * MIN
    )
    assert kinds(back) == ["resolve"]
    assert engine.tick(T0 + 21 * MIN) == []
    assert kinds(engine.tick(T0 + 22 * MIN)) == ["refire"]


def test_an_officer_resolved_kpi_absence_needs_a_whole_new_silence(new_engine: Engine) -> None:
    """Resolved by hand while still no data: it fires again only `for` after the resolve."""
    engine = new_engine(health_rules=[KPI_ABSENCE])
    engine.tick(T0)
    engine.tick(T0 + 10 * MIN)
    engine.on_action(action("resolve", WAIT_ABSENT, at=T0 + 11 * MIN), T0 + 11 * MIN)
    assert engine.tick(T0 + 21 * MIN - 1) == []
    assert kinds(engine.tick(T0 + 21 * MIN)) == ["refire"]


def test_kpi_alerts_are_stale_when_every_source_of_the_sector_is(new_engine: Engine) -> None:
    """One stale source of two: not stale; both: flagged; one back: unflagged; absences never."""
    engine = new_engine()
    engine.on_kpi(point(value=97.0), T0)
    out = engine.on_freshness(freshness("lab", "stale", at=T0 + 60, last_seen=T0), T0 + 60)
    assert out == []
    out = engine.on_freshness(
        freshness("his", "stale", at=T0 + 70, last_seen=T0 - 3 * MIN), T0 + 70
    )
    stale = [t for t in out if t.fingerprint == BED_D1]
    assert kinds(stale) == ["stale"] and stale[0].stale and stale[0].state == "pending"
    assert not any(t.stale for t in out if t.fingerprint == HIS_SILENT)
    fired = engine.tick(T0 + 10 * MIN)
    bed = [t for t in fired if t.fingerprint == BED_D1]
    assert kinds(bed) == ["fire"] and bed[0].stale  # stale alerts still fire and show
    out = engine.on_freshness(
        freshness("lab", "fresh", at=T0 + 11 * MIN, last_seen=T0 + 11 * MIN), T0 + 11 * MIN
    )
    assert kinds(out) == ["stale"] and not out[0].stale


def test_alerts_on_a_per_source_series_follow_that_source_only(new_engine: Engine) -> None:
    """A series grouped by source is stale when its own source is."""
    engine = new_engine()
    out = engine.on_kpi(point("health.wait_avg", "lab", value=75.0, size=300), T0)
    assert kinds(out) == ["fire"] and out[0].labels["source"] == "lab"
    assert out[0].severity == "emergency"
    out = engine.on_freshness(freshness("lab", "stale", at=T0 + 60, last_seen=T0), T0 + 60)
    assert kinds(out) == ["stale"]


@pytest.mark.parametrize(
    "record",
    [
        {"kind": "kpi", "series": "x"},
        {"kind": "kpi", **{k: v for k, v in point(value=1.0).items() if k != "value"}},
        {**point(value=1.0), "window_start": "soon"},
        {"kind": "sector_seen", "sector": "health", "last_seen": T0, "emitted_at": T0},
        {"kind": "freshness", "source": "his"},
        {"kind": "freshness", "source": "nobody", "state": "stale", "last_seen": T0},
        {"kind": "freshness", "source": "his", "state": "sleepy", "last_seen": T0},
        {"no": "kind"},
        {**point("health.unknown", value=1.0)},
    ],
)
def test_unreadable_records_are_counted_not_raised(
    new_engine: Engine, record: dict[str, object]
) -> None:
    """A record the engine cannot use is ignored with a reason; no exception escapes."""
    engine = new_engine()
    assert engine.on_kpi(record, T0) == []
    assert sum(engine.ignored.values()) == 1
