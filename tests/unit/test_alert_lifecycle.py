"""Alert lifecycle: officers' actions, escalation timing, flapping, silences, stale suppression."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from alerts.engine import MAX_ACTION_IDS, AlertEngine
from alerts.lifecycle import MAX_NOTES
from foundation.contract.alerts import AlertTransition
from tests.plugins.alerts import (
    BED_D1,
    MIN,
    T0,
    action,
    check_stream,
    freshness,
    kinds,
    point,
    silence,
)

Engine = Callable[..., AlertEngine]
FIRED_AT = T0 + 10 * MIN


def _of(fingerprint: str, transitions: list[AlertTransition]) -> list[AlertTransition]:
    return [t for t in transitions if t.fingerprint == fingerprint]


def _firing(engine: AlertEngine) -> list[AlertTransition]:
    """bed_high (critical, for 10 min) of d1 firing at FIRED_AT."""
    out = engine.on_kpi(point(value=97.0), T0)
    out += engine.tick(FIRED_AT)
    assert kinds(out) == ["pending", "fire"]
    return out


def test_ack_assign_note_resolve(new_engine: Engine) -> None:
    """firing → acknowledged, assignment and notes keep the state, an officer resolves."""
    engine = new_engine()
    out = _firing(engine)
    ack = engine.on_action(action("ack", BED_D1, at=FIRED_AT + 60), FIRED_AT + 60)
    assert ack.rejected is None
    assert kinds(ack.transitions) == ["ack"]
    t = ack.transitions[0]
    assert (t.state, t.previous_state, t.acknowledged_by, t.actor) == (
        "acknowledged", "firing", "Nguyễn Văn An", "Nguyễn Văn An",
    )  # fmt: skip
    assign = engine.on_action(
        action("assign", BED_D1, at=FIRED_AT + 70, assignee="Lê Văn Cường"), FIRED_AT + 70
    )
    assert assign.transitions[0].assignee == "Lê Văn Cường"
    assert assign.transitions[0].state == "acknowledged"
    note = engine.on_action(
        action("note", BED_D1, at=FIRED_AT + 80, note="Đã gọi BV"), FIRED_AT + 80
    )
    assert note.transitions[0].notes == ((FIRED_AT + 80, "Nguyễn Văn An", "Đã gọi BV"),)
    assert note.transitions[0].note == "Đã gọi BV"
    done = engine.on_action(action("resolve", BED_D1, at=FIRED_AT + 90), FIRED_AT + 90)
    assert kinds(done.transitions) == ["resolve"]
    assert done.transitions[0].state == "resolved"
    assert done.transitions[0].assignee == "Lê Văn Cường"  # kept for the record
    assert engine.open_alerts() == []
    check_stream(out + ack.transitions + assign.transitions + note.transitions + done.transitions)


@pytest.mark.parametrize(
    ("setup", "kind", "extra", "reason"),
    [
        ("none", "ack", {}, "unknown_fingerprint"),
        ("pending", "ack", {}, "not_firing:pending"),
        ("acked", "ack", {}, "already_acknowledged"),
        ("resolved", "ack", {}, "not_firing:resolved"),
        ("resolved", "resolve", {}, "already_resolved"),
        ("firing", "assign", {"assignee": "Lê Văn Cường"}, None),
        ("assigned", "assign", {"assignee": "Lê Văn Cường"}, "already_assigned"),
        ("resolved", "note", {"note": "ghi chú"}, None),  # notes are welcome after the fact
    ],
)
def test_actions_that_do_not_apply_are_refused_with_a_reason(
    new_engine: Engine, setup: str, kind: str, extra: dict[str, str], reason: str | None
) -> None:
    """A refused action changes nothing, raises nothing, and says why."""
    engine = new_engine()
    fp = BED_D1 if setup != "none" else "0123456789abcdef"
    if setup == "pending":
        engine.on_kpi(point(value=97.0), T0)
    elif setup != "none":
        _firing(engine)
    now = FIRED_AT + 60
    if setup == "acked":
        engine.on_action(action("ack", fp, at=now, action_id="a0"), now)
    if setup == "assigned":
        engine.on_action(action("assign", fp, at=now, action_id="a0", assignee="Lê Văn Cường"), now)
    if setup == "resolved":
        engine.on_action(action("resolve", fp, at=now, action_id="a0"), now)
    before = engine.alert(fp)
    result = engine.on_action(action(kind, fp, at=now + 1, action_id="a1", **extra), now + 1)
    transitions, rejected = result  # a named tuple: unpacks
    assert rejected == reason
    if reason is not None:
        assert transitions == [] and engine.alert(fp) == before
        assert engine.rejections[reason.split(":")[0]] == 1


def test_a_replayed_action_id_is_applied_once(new_engine: Engine) -> None:
    """At-least-once delivery of ioc.alert-actions: a repeated action_id is refused."""
    engine = new_engine()
    _firing(engine)
    note = action("note", BED_D1, at=FIRED_AT + 1, action_id="n1", note="một lần")
    assert len(engine.on_action(note, FIRED_AT + 1).transitions) == 1
    again = engine.on_action(note, FIRED_AT + 2)
    assert again.rejected == "duplicate_action" and again.transitions == []
    assert len(engine.alert(BED_D1).notes) == 1  # type: ignore[union-attr]


def test_remembered_action_ids_are_bounded(new_engine: Engine) -> None:
    """Only the latest MAX_ACTION_IDS ids are kept."""
    engine = new_engine()
    for n in range(MAX_ACTION_IDS + 5):
        engine.on_action(action("ack", "0" * 16, at=T0, action_id=f"x{n}"), T0)
    assert len(engine.snapshot()["action_ids"]) == MAX_ACTION_IDS


def test_notes_are_capped(new_engine: Engine) -> None:
    """Every transition carries the notes: the oldest go beyond MAX_NOTES."""
    engine = new_engine()
    _firing(engine)
    for n in range(MAX_NOTES + 3):
        engine.on_action(
            action("note", BED_D1, at=FIRED_AT, action_id=f"n{n}", note=f"#{n}"), FIRED_AT
        )
    notes = engine.alert(BED_D1).notes  # type: ignore[union-attr]
    assert len(notes) == MAX_NOTES and notes[0][2] == "#3"


def test_an_officer_resolved_alert_comes_back_only_after_a_new_for(new_engine: Engine) -> None:
    """Resolving by hand resets the rule: still breaching, it goes pending again for `for`."""
    engine = new_engine()
    _firing(engine)
    engine.on_action(action("resolve", BED_D1, at=FIRED_AT + 1), FIRED_AT + 1)
    out = engine.on_kpi(point(value=97.0, revision=5), FIRED_AT + 2)
    assert kinds(out) == ["pending"]
    assert out[0].acknowledged_by is None and out[0].escalation_level == 0
    assert kinds(engine.tick(FIRED_AT + 2 + 10 * MIN)) == ["fire"]


@pytest.mark.parametrize(
    ("minutes", "level"),
    [(9.9, 0), (10, 1), (29.9, 1), (30, 2), (600, 2)],
)
def test_an_unacknowledged_critical_alert_escalates_level_by_level(
    new_engine: Engine, minutes: float, level: int
) -> None:
    """Vice-Chairman 10 min after firing, Chairman 20 min after that, then no further."""
    engine = new_engine()
    out = _firing(engine)
    for second in range(0, int(minutes * 60) + 1, 30):
        out += engine.tick(FIRED_AT + second)
    out += engine.tick(FIRED_AT + minutes * MIN)
    assert engine.alert(BED_D1).escalation_level == level  # type: ignore[union-attr]
    assert kinds(out).count("escalate") == level
    check_stream(out)


def test_a_late_tick_climbs_every_level_that_is_due(new_engine: Engine) -> None:
    """Ticks may be sparse: one tick 40 min after firing escalates twice, in order."""
    engine = new_engine()
    _firing(engine)
    out = engine.tick(FIRED_AT + 40 * MIN)
    assert [t.escalation_level for t in out if t.transition == "escalate"] == [1, 2]


def test_acknowledging_stops_escalation(new_engine: Engine) -> None:
    """An acknowledged alert climbs no further."""
    engine = new_engine()
    _firing(engine)
    engine.tick(FIRED_AT + 10 * MIN)
    engine.on_action(action("ack", BED_D1, at=FIRED_AT + 11 * MIN), FIRED_AT + 11 * MIN)
    assert engine.tick(FIRED_AT + 120 * MIN) == []
    assert engine.alert(BED_D1).escalation_level == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("minimum", "escalated"),
    [("emergency", set()), ("critical", {"speed_low"}), ("info", {"speed_low", "bed_low"})],
)
def test_only_severities_from_the_minimum_escalate(
    new_engine: Engine, minimum: str, escalated: set[str]
) -> None:
    """min_severity decides which firing alerts climb."""
    engine = new_engine(min_severity=minimum)
    engine.on_kpi(point("traffic.speed_avg", "*", value=5.0, size=300), T0)  # speed_low: critical
    engine.on_kpi(point("health.bed_pct", "d1", value=5.0), T0)  # bed_low: info
    out = engine.tick(T0 + 15 * MIN)
    assert {t.rule for t in out if t.transition == "escalate"} == escalated


def test_stale_alerts_are_not_escalated_and_restart_their_timer_when_fresh(
    new_engine: Engine,
) -> None:
    """Computed from stale data: shown, never escalated; fresh again, the level's delay restarts."""
    engine = new_engine()
    _firing(engine)
    stale_at = FIRED_AT + 5 * MIN
    for source in ("his", "lab"):
        engine.on_freshness(freshness(source, "stale", at=stale_at, last_seen=FIRED_AT), stale_at)
    assert engine.alert(BED_D1).stale  # type: ignore[union-attr]
    assert _of(BED_D1, engine.tick(FIRED_AT + 60 * MIN)) == []
    fresh_at = FIRED_AT + 61 * MIN
    engine.on_freshness(freshness("lab", "fresh", at=fresh_at, last_seen=fresh_at), fresh_at)
    assert _of(BED_D1, engine.tick(fresh_at + 10 * MIN - 1)) == []
    out = _of(BED_D1, engine.tick(fresh_at + 10 * MIN))
    assert kinds(out) == ["escalate"] and out[0].escalation_level == 1


def test_a_silence_flags_matching_alerts_and_holds_escalation(new_engine: Engine) -> None:
    """Silenced by label matcher until ends_at; unflagged at expiry, escalation restarts then."""
    engine = new_engine()
    _firing(engine)
    start, end = FIRED_AT + MIN, FIRED_AT + 60 * MIN
    result = engine.on_action(
        action(
            "silence", None, at=start, silence=silence("s1", start=start, end=end, sector="health")
        ),
        start,
    )
    assert result.rejected is None
    assert kinds(result.transitions) == ["silence"]
    assert result.transitions[0].silenced_by == "s1"
    assert result.transitions[0].state == "firing"
    assert [s.id for s in engine.silences()] == ["s1"]
    assert engine.tick(end - 1) == []  # no escalation while silenced
    out = engine.tick(end)
    assert kinds(out) == ["silence"] and out[0].silenced_by is None
    assert engine.silences() == []
    assert kinds(engine.tick(end + 10 * MIN)) == ["escalate"]


def test_a_silence_in_the_future_starts_on_tick_and_applies_to_new_alerts(
    new_engine: Engine,
) -> None:
    """starts_at later: flagged from then on; an alert raised meanwhile is born silenced."""
    engine = new_engine()
    start, end = T0 + 5 * MIN, T0 + 65 * MIN
    engine.on_action(
        action(
            "silence", None, at=T0, silence=silence("s2", start=start, end=end, kpi="speed_avg")
        ),
        T0,
    )
    out = engine.on_kpi(point("traffic.speed_avg", "*", value=5.0, size=300), T0)
    assert out[0].silenced_by is None
    assert kinds(engine.tick(start)) == ["silence"]
    born = engine.on_kpi(point(value=97.0), start + 1)  # bed_high: no match
    assert born[0].silenced_by is None
    later = engine.on_kpi(
        point("traffic.speed_avg", "*", value=50.0, revision=1, size=300), start + 2
    )
    assert kinds(later) == ["resolve"] and later[0].silenced_by == "s2"
    again = engine.on_kpi(
        point("traffic.speed_avg", "*", value=5.0, revision=2, size=300), start + 3
    )
    assert kinds(again) == ["refire"] and again[0].silenced_by == "s2"


def test_unsilence_and_bad_silences(new_engine: Engine) -> None:
    """Unsilence lifts at once; unknown ids, empty matchers, and expired windows are refused."""
    engine = new_engine()
    _firing(engine)
    now = FIRED_AT + MIN
    s = silence("s3", start=now, end=now + 3600, rule="bed_high")
    engine.on_action(action("silence", None, at=now, silence=s), now)
    lifted = engine.on_action(action("unsilence", None, at=now + 1, silence=s), now + 1)
    assert kinds(lifted.transitions) == ["silence"] and lifted.transitions[0].silenced_by is None
    again = engine.on_action(action("unsilence", None, at=now + 2, silence=s), now + 2)
    assert again.rejected == "unknown_silence"
    every = silence("s4", start=now, end=now + 60)
    assert engine.on_action(action("silence", None, at=now, silence=every), now).rejected == (
        "silence_matches_everything"
    )
    past = silence("s5", start=now - 120, end=now - 60, sector="health")
    assert engine.on_action(action("silence", None, at=now, silence=past), now).rejected == (
        "silence_expired"
    )
    backwards = silence("s6", start=now + 60, end=now, sector="health")
    assert engine.on_action(action("silence", None, at=now, silence=backwards), now).rejected == (
        "silence_ends_before_start"
    )


def test_a_silence_can_target_one_alert_by_fingerprint(new_engine: Engine) -> None:
    """Matchers also see `fingerprint`, `rule` and `severity`."""
    engine = new_engine()
    _firing(engine)
    now = FIRED_AT + MIN
    s = silence("s7", start=now, end=now + 3600, fingerprint=BED_D1)
    out = engine.on_action(action("silence", None, at=now, silence=s), now)
    assert [t.fingerprint for t in out.transitions] == [BED_D1]


def _speed(value: float, revision: int) -> dict[str, object]:
    return point("traffic.speed_avg", "*", value=value, revision=revision, size=300)


def test_flapping_is_flagged_after_n_flips_and_cleared_when_they_age_out(
    new_engine: Engine,
) -> None:
    """4 fire/resolve flips within 1 h set `flapping`; fewer than 2 left in the window clear it."""
    engine = new_engine()
    out: list[AlertTransition] = []
    for n, value in enumerate([5, 50, 5, 50]):
        out += engine.on_kpi(_speed(value, n), T0 + n * MIN)
    assert kinds(out) == ["fire", "resolve", "refire", "resolve", "flapping"]
    assert out[-1].flapping and out[-1].state == "resolved"
    out += engine.on_kpi(_speed(5, 10), T0 + 10 * MIN)
    assert out[-1].transition == "refire" and out[-1].flapping  # shown, flag kept
    # Flips at 0, 1, 2, 3 and 10 min; still firing, it escalates meanwhile (not asserted here).
    ticked = engine.tick(T0 + 62 * MIN)
    assert "flapping" not in kinds(ticked)  # 3 and 10 min left: 2
    ticked += engine.tick(T0 + 63 * MIN)
    cleared = [t for t in ticked if t.transition == "flapping"]
    assert len(cleared) == 1 and not cleared[0].flapping  # only 10 min left: 1
    check_stream(out + ticked)


def test_a_flapping_alert_keeps_its_escalation_level_across_refires(new_engine: Engine) -> None:
    """One incident flapping: re-firing does not send it back to the duty officer."""
    engine = new_engine(flapping={"transitions": 2, "window": "2h"})
    engine.on_kpi(_speed(5, 0), T0)
    engine.on_kpi(_speed(50, 1), T0 + MIN)  # 2 flips: flapping
    engine.on_kpi(_speed(5, 2), T0 + 2 * MIN)  # refire, timer from the first fire
    assert engine.tick(T0 + 10 * MIN - 1) == []
    out = engine.tick(T0 + 10 * MIN)
    assert kinds(out) == ["escalate"]
    engine.on_kpi(_speed(50, 3), T0 + 11 * MIN)
    refire = engine.on_kpi(_speed(5, 4), T0 + 12 * MIN)
    assert refire[0].escalation_level == 1


def test_a_note_given_with_ack_or_resolve_is_kept(new_engine: Engine) -> None:
    """`ioc alerts ack FP --note …` / `resolve --note …`: the note follows in the audit trail."""
    engine = new_engine()
    out = _firing(engine)
    ack = engine.on_action(
        action("ack", BED_D1, at=FIRED_AT + 60, note="Đã gọi bệnh viện"), FIRED_AT + 60
    )
    assert kinds(ack.transitions) == ["ack", "note"]
    assert ack.transitions[-1].notes[-1][2] == "Đã gọi bệnh viện"
    done = engine.on_action(
        action("resolve", BED_D1, at=FIRED_AT + 90, note="Đã chuyển bệnh nhân"), FIRED_AT + 90
    )
    assert kinds(done.transitions) == ["resolve", "note"]
    assert done.transitions[-1].state == "resolved"
    check_stream(out + ack.transitions + done.transitions)
