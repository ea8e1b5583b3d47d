"""Alert engine checkpoints: snapshot/restore mid-scenario continues seq and re-emits nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.engine import AlertEngine
from foundation.contract.alerts import AlertTransition
from tests.plugins.alerts import (
    BED_D1,
    KPI_ABSENCE,
    MIN,
    T0,
    action,
    check_stream,
    freshness,
    kinds,
    make_catalog,
    point,
    silence,
)

Engine = Callable[..., AlertEngine]


def _roundtrip(engine: AlertEngine, **escalation: Any) -> AlertEngine:
    """Snapshot through JSON text (as the worker stores it) into a fresh engine."""
    text = json.dumps(engine.snapshot(), allow_nan=False)
    restored = AlertEngine(make_catalog(**escalation))
    restored.restore(json.loads(text))
    return restored


def test_restore_mid_scenario_continues_where_it_stopped(new_engine: Engine) -> None:
    """Pending, acked, silenced, stale and escalating alerts survive a restore; seq continues."""
    engine = new_engine()
    engine.on_kpi(point(value=97.0), T0)  # bed_high d1: pending
    engine.on_kpi(point("traffic.speed_avg", "*", value=5.0, size=300), T0)  # speed_low: firing
    engine.on_kpi(point(group="d2", value=97.0), T0)
    engine.tick(T0 + 10 * MIN)  # both bed_high fire
    engine.on_action(action("ack", BED_D1, at=T0 + 11 * MIN, action_id="ack-1"), T0 + 11 * MIN)
    s = silence("s1", start=T0, end=T0 + 90 * MIN, district="d2")
    engine.on_action(action("silence", None, at=T0 + 11 * MIN, silence=s), T0 + 11 * MIN)
    engine.on_freshness(freshness("his", "stale", at=T0 + 12 * MIN, last_seen=T0), T0 + 12 * MIN)
    before = {t.fingerprint: t for t in engine.alerts()}

    restored = _roundtrip(engine)
    assert {t.fingerprint: t for t in restored.alerts()} == before
    assert restored.snapshot() == engine.snapshot()
    assert restored.tick(T0 + 12 * MIN) == engine.tick(T0 + 12 * MIN) == []  # nothing re-emitted

    again = restored.on_action(action("ack", BED_D1, at=T0, action_id="ack-1"), T0 + 13 * MIN)
    assert again.rejected == "duplicate_action"  # remembered across the restore
    later = [T0 + 20 * MIN, T0 + 40 * MIN, T0 + 91 * MIN]
    expected = [engine.tick(t) for t in later]
    got = [restored.tick(t) for t in later]
    assert got == expected
    flat = [t for batch in got for t in batch]
    assert "escalate" in kinds(flat) and "silence" in kinds(flat)
    check_stream(flat, after=before.values())  # seq continues from the checkpoint


def test_snapshot_is_plain_json(new_engine: Engine) -> None:
    """No NaN, no infinity, no tuples that JSON would change: equal after a round trip."""
    engine = new_engine(health_rules=[KPI_ABSENCE])
    engine.on_kpi(point(value=None), T0)  # a series whose only point had no value
    engine.tick(T0 + 30 * MIN)
    snapshot = engine.snapshot()
    assert json.loads(json.dumps(snapshot, allow_nan=False)) == snapshot


def test_an_unknown_snapshot_version_is_refused(new_engine: Engine) -> None:
    """A checkpoint from another format is not half-applied."""
    engine = new_engine()
    try:
        engine.restore({"version": 99})
    except ValueError as exc:
        assert "version" in str(exc)
    else:
        raise AssertionError("restore accepted an unknown version")


# -- a random scenario, with and without a restore in the middle --------------------------------

KPIS = [
    ("health.bed_pct", ["d1", "d2"], 15 * MIN),
    ("health.visits", ["d1"], 60 * MIN),
    ("traffic.speed_avg", ["*"], 5 * MIN),
    ("health.wait_avg", ["his", "lab"], 5 * MIN),
]
op = st.one_of(
    st.tuples(
        st.just("kpi"),
        st.integers(0, len(KPIS) - 1),
        st.integers(0, 1),
        st.integers(0, 3),
        st.one_of(st.none(), st.floats(0, 200, allow_nan=False)),
        st.booleans(),
    ),
    st.tuples(st.just("fresh"), st.sampled_from(["his", "lab", "cam"]), st.booleans()),
    st.tuples(
        st.just("act"),
        st.sampled_from(["ack", "assign", "note", "resolve", "silence", "unsilence"]),
        st.integers(0, 20),
    ),
    st.tuples(
        st.just("tick"),
    ),
)
scenario = st.lists(st.tuples(op, st.integers(0, 15 * 60)), min_size=1, max_size=80)


def _play(engine: AlertEngine, steps: list[Any], first: int, now0: float) -> list[AlertTransition]:
    """Feed steps[first:] (times are cumulative from now0 over the whole list)."""
    out: list[AlertTransition] = []
    now = now0
    revisions: dict[tuple[str, float], int] = {}
    for index, ((kind, *args), dt) in enumerate(steps):
        now += dt
        record = None
        if kind == "kpi":
            k, g, w, value, final = args
            kpi, groups, size = KPIS[k]
            group = groups[g % len(groups)]
            start = T0 + w * size
            revision = revisions[(f"{kpi}|{group}", start)] = (
                revisions.get((f"{kpi}|{group}", start), -1) + 1
            )
            record = point(kpi, group, start=start, value=value, final=final,
                           revision=revision, size=size, at=now)  # fmt: skip
        if index < first:
            continue
        if record is not None:
            out += engine.on_kpi(record, now)
        elif kind == "fresh":
            source, stale = args
            sector = "traffic" if source == "cam" else "health"
            state = "stale" if stale else "fresh"
            out += engine.on_freshness(
                freshness(source, state, at=now, last_seen=now - 200, sector=sector), now
            )
        elif kind == "act":
            verb, pick = args
            open_fps = sorted(a.fingerprint for a in engine.alerts())
            fp = open_fps[pick % len(open_fps)] if open_fps and pick < 18 else "feedfacefeedface"
            extra: dict[str, Any] = {}
            if verb == "assign":
                extra["assignee"] = f"officer{pick % 3}"
            elif verb == "note":
                extra["note"] = f"note {index}"
            elif verb in ("silence", "unsilence"):
                extra["silence"] = silence(
                    f"s{pick % 2}", start=now, end=now + 30 * MIN, sector="health"
                )
                fp = ""
            result = engine.on_action(
                action(verb, fp or None, at=now, action_id=f"a{index % 7}-{pick}", **extra), now
            )
            out += result.transitions
        else:
            out += engine.tick(now)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=scenario, cut=st.integers(0, 80))
def test_a_restore_anywhere_gives_the_same_transitions(steps: list[Any], cut: int) -> None:
    """Any scenario, checkpointed after any step and restored: the same stream, seq unbroken."""
    cut = min(cut, len(steps))
    straight = AlertEngine(make_catalog(health_rules=[KPI_ABSENCE]))
    expected = _play(straight, steps, 0, T0)
    check_stream(expected)

    first = AlertEngine(make_catalog(health_rules=[KPI_ABSENCE]))
    head = _play(first, steps[:cut], 0, T0)
    restored = AlertEngine(make_catalog(health_rules=[KPI_ABSENCE]))
    restored.restore(json.loads(json.dumps(first.snapshot(), allow_nan=False)))
    tail = _play(restored, steps, cut, T0)
    assert head + tail == expected
    assert restored.snapshot() == straight.snapshot()


@settings(max_examples=150, deadline=None)
@given(steps=scenario)
def test_invariants_hold_in_any_scenario(steps: list[Any]) -> None:
    """Only firing, fresh, unsilenced alerts of severity ≥ critical escalate, within the levels."""
    engine = AlertEngine(make_catalog(health_rules=[KPI_ABSENCE]))
    out = _play(engine, steps, 0, T0)
    for t in out:
        assert 0 <= t.escalation_level <= 2
        if t.transition == "escalate":
            assert t.state == "firing" and not t.stale and t.silenced_by is None
            assert t.severity in ("critical", "emergency")
        if t.transition in ("ack", "assign", "note"):
            assert t.actor is not None
    for alert in engine.open_alerts():
        assert alert.state in ("pending", "firing", "acknowledged")
