"""Routing: who hears of which transition, on which channel, and what is held."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.routing import (
    Routing,
    Target,
    check_roles,
    load_routing,
    needs_history,
    plan_deliveries,
)
from foundation.contract.alerts import AlertTransition, Fingerprint
from foundation.contract.catalog import load_catalog
from foundation.errors import RoutingError

ROLES = ["duty_officer", "sector_vice_chairman", "chairman"]

ROUTING = """\
version: 1
recipients:
  - {id: officer-1, name: Trực ban 1, email: o1@ioc.test, telegram: "11"}
  - {id: officer-2, name: Trực ban 2, zalo: "22"}
  - {id: hub, name: LGSP, webhook: /hooks/ioc}
  - {id: vice-health, name: PCT văn xã, telegram: "31", email: vx@ioc.test}
  - {id: vice-traffic, name: PCT nội chính, telegram: "32"}
  - {id: chair, name: Chủ tịch, telegram: "40", zalo: "41", email: ct@ioc.test}
groups:
  - {id: duty, name: Trực ban, members: [officer-1, officer-2]}
routes:
  - {role: duty_officer, min_severity: warning, notify: [duty]}
  - {role: duty_officer, notify: [hub, officer-1]}
  - {role: sector_vice_chairman, sectors: [health], notify: [vice-health]}
  - {role: sector_vice_chairman, sectors: [traffic], min_severity: critical, notify: [vice-traffic]}
  - {role: chairman, notify: [chair], channels: [telegram, zalo]}
"""


@pytest.fixture
def routing(tmp_path: Path) -> Routing:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING, encoding="utf-8")
    return load_routing(path)


def alert(
    kind: str = "fire",
    *,
    sector: str = "health",
    severity: str = "critical",
    level: int = 0,
    **extra,
) -> AlertTransition:
    return AlertTransition(
        fingerprint=Fingerprint(f"{sector}.rule|x"),
        seq=1,
        transition=kind,  # type: ignore[arg-type]
        state="firing",
        previous_state=None,
        rule="rule",
        severity=severity,  # type: ignore[arg-type]
        labels={"sector": sector},
        at=1000.0,
        started_at=400.0,
        value=1.0,
        message_vi="vi",
        message_en="en",
        escalation_level=level,
        **extra,
    )


def who(planned) -> list[tuple[str, str]]:
    return sorted((p.target.recipient, p.target.channel) for p in planned)


def test_fire_goes_to_level_0_routes_groups_expanded_each_address_once(routing) -> None:
    """A critical fire: both officers (officer-1 named twice: once), the hub; no leaders."""
    planned = plan_deliveries(alert(), routing, roles=ROLES)
    assert who(planned) == [
        ("hub", "webhook"),
        ("officer-1", "email"),
        ("officer-1", "telegram"),
        ("officer-2", "zalo"),
    ]
    assert all(p.status == "pending" for p in planned)


def test_severity_below_a_routes_minimum_skips_it(routing) -> None:
    """An info alert reaches only the routes from info up (the hub and officer-1)."""
    planned = plan_deliveries(alert(severity="info"), routing, roles=ROLES)
    assert who(planned) == [("hub", "webhook"), ("officer-1", "email"), ("officer-1", "telegram")]


@pytest.mark.parametrize(
    ("sector", "severity", "level", "expected"),
    [
        ("health", "warning", 1, [("vice-health", "email"), ("vice-health", "telegram")]),
        ("traffic", "critical", 1, [("vice-traffic", "telegram")]),
        ("traffic", "warning", 1, []),  # the traffic route starts at critical
        ("education", "critical", 1, []),  # no Vice-Chairman route for this sector
        ("traffic", "critical", 2, [("chair", "telegram"), ("chair", "zalo")]),  # no e-mail
        ("traffic", "critical", 7, [("chair", "telegram"), ("chair", "zalo")]),  # past the last
    ],
)
def test_escalate_goes_to_the_new_levels_routes_only(routing, sector, severity, level, expected):
    """Level 1 is the sector's Vice-Chairman, level 2 the Chairman (his channels only)."""
    transition = alert("escalate", sector=sector, severity=severity, level=level)
    assert who(plan_deliveries(transition, routing, roles=ROLES)) == expected


def test_a_refire_of_an_escalated_alert_reaches_every_level_up_to_its_own(routing) -> None:
    """Leaders who were told of the alert hear that it is back."""
    planned = plan_deliveries(alert("refire", level=1), routing, roles=ROLES)
    assert ("vice-health", "telegram") in who(planned)
    assert ("officer-2", "zalo") in who(planned)


def test_resolve_and_ack_go_to_everyone_notified_before(routing) -> None:
    """Resolve and ack need history and go exactly to the earlier recipients."""
    before = [Target("officer-2", "zalo", "22"), Target("chair", "telegram", "40")]
    for kind in ("resolve", "ack"):
        assert needs_history(alert(kind))
        planned = plan_deliveries(alert(kind), routing, roles=ROLES, notified_before=before)
        assert who(planned) == [("chair", "telegram"), ("officer-2", "zalo")]


def test_ack_notes_can_be_turned_off(routing) -> None:
    """notify_ack: false → an ack notifies nobody."""
    quiet = routing.model_copy(update={"notify_ack": False})
    before = [Target("officer-2", "zalo", "22")]
    assert plan_deliveries(alert("ack"), quiet, roles=ROLES, notified_before=before) == []


@pytest.mark.parametrize("kind", ["pending", "cancel", "assign", "note", "flapping", "stale"])
def test_other_transitions_notify_nobody(routing, kind: str) -> None:
    """Bookkeeping transitions are for the wall and the audit table, not for phones."""
    assert not needs_history(alert(kind))
    assert plan_deliveries(alert(kind), routing, roles=ROLES) == []


@pytest.mark.parametrize(
    ("extra", "reason"),
    [({"flapping": True}, "flapping"), ({"silenced_by": "sil-42"}, "silenced:sil-42")],
)
def test_flapping_or_silenced_transitions_are_held_not_dropped(routing, extra, reason) -> None:
    """Every delivery is still planned, each held with the reason."""
    planned = plan_deliveries(alert(**extra), routing, roles=ROLES)
    assert len(planned) == 4
    assert {(p.status, p.hold_reason) for p in planned} == {("held", reason)}


def test_a_channel_without_credentials_is_held(routing) -> None:
    """Only Telegram configured: the other channels' deliveries are held, not lost silently."""
    planned = plan_deliveries(alert(), routing, roles=ROLES, enabled_channels={"telegram"})
    status = {(p.target.channel, p.status, p.hold_reason) for p in planned}
    assert status == {
        ("telegram", "pending", None),
        ("email", "held", "channel_not_configured"),
        ("zalo", "held", "channel_not_configured"),
        ("webhook", "held", "channel_not_configured"),
    }


def test_the_demo_routing_loads_and_matches_the_catalogs_roles() -> None:
    """The shipped routing is valid, and its roles are the default catalog's."""
    routing = load_routing()
    roles = [lvl.role for lvl in load_catalog().escalation.levels]
    check_roles(routing, roles)
    fire = plan_deliveries(alert(sector="health"), routing, roles=roles)
    assert {p.target.recipient for p in fire} >= {"truc-ban-ca-1", "nhom-truc-ban", "so-y-te"}
    escalated = plan_deliveries(alert("escalate", level=2), routing, roles=roles)
    assert {(p.target.recipient, p.target.channel) for p in escalated} == {
        ("chu-tich", "telegram"),
        ("chu-tich", "zalo"),
    }


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("notify: [vice-health]", "notify: [nobody]", "unknown recipient or group 'nobody'"),
        ("members: [officer-1, officer-2]", "members: [ghost]", "unknown recipient 'ghost'"),
        ("name: LGSP, webhook: /hooks/ioc", "name: LGSP", "at least one of"),
        ("email: o1@ioc.test", "email: not-an-address", ":3: recipients.0.email"),
        ("min_severity: warning", "min_severity: loud", ":12: routes.0.min_severity"),
        ("[telegram, zalo]", "[telegram, fax]", ":16: routes.4.channels.1"),
        ("version: 1\n", "version: 1\nrecipients: [\n", "invalid YAML"),
    ],
)
def test_bad_routing_files_are_refused_with_file_and_line(tmp_path: Path, old, new, problem):
    """Each mistake is a RoutingError whose problem names the file (and line)."""
    assert ROUTING.count(old) == 1
    path = tmp_path / "bad.yaml"
    path.write_text(ROUTING.replace(old, new), encoding="utf-8")
    with pytest.raises(RoutingError) as raised:
        load_routing(path)
    assert raised.value.code == "routing_invalid"
    assert any(problem in p and str(path) in p for p in raised.value.problems), (
        raised.value.problems
    )


def test_a_role_the_catalog_lacks_is_refused(routing) -> None:
    """A route for a role no escalation level has would never fire: refused at start."""
    with pytest.raises(RoutingError, match="1 problem"):
        check_roles(routing, ["duty_officer", "sector_vice_chairman"])
