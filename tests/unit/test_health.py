"""Dependency health (pure): when a dependency counts as down, since when, and /healthz."""

from __future__ import annotations

import pytest

from foundation.health import DependencyDown, DependencyHealth, health_report


def test_one_failed_probe_is_not_an_outage_two_are_since_the_first() -> None:
    """Down after two failures in a row, `since` the first of them; one success clears it."""
    health = DependencyHealth(["broker", "database"], failures_to_down=2)
    assert not health.observe("broker", ok=False, now=100.0, error="timeout")
    assert health.down() == []
    assert health.observe("broker", ok=False, now=102.0, error="refused")
    assert health.down() == [DependencyDown("broker", 100.0, "refused")]
    assert health.degraded and health.since() == 100.0
    assert not health.observe("broker", ok=False, now=104.0)  # still down: no change
    assert health.observe("broker", ok=True, now=106.0)  # came back: a change
    assert health.down() == [] and health.since() is None


def test_a_success_between_failures_restarts_the_count() -> None:
    health = DependencyHealth(["database"], failures_to_down=2)
    health.observe("database", ok=False, now=1.0)
    health.observe("database", ok=True, now=2.0)
    assert not health.observe("database", ok=False, now=3.0)
    assert health.observe("database", ok=False, now=4.0)
    assert health.down()[0].since == 3.0


def test_since_is_the_earliest_outage_still_going_on() -> None:
    health = DependencyHealth(["broker", "database"], failures_to_down=1)
    health.observe("database", ok=False, now=50.0)
    health.observe("broker", ok=False, now=40.0)
    assert health.since() == 40.0
    assert [d.dependency for d in health.down()] == ["broker", "database"]


@pytest.mark.parametrize(
    ("healthy", "down", "status", "code"),
    [
        (True, [], "ok", 200),
        (False, [], "failing", 503),
        (True, [DependencyDown("broker", 1.0, "x")], "degraded", 503),
        (False, [DependencyDown("database", 1.0, "x")], "degraded", 503),
    ],
)
def test_health_report_says_degraded_with_the_dependency_down(
    healthy: bool, down: list[DependencyDown], status: str, code: int
) -> None:
    http, body = health_report(healthy=healthy, down=down, extra={"walls": 2})
    assert (http, body["status"], body["ok"]) == (code, status, code == 200)
    assert [d["dependency"] for d in body["down"]] == [d.dependency for d in down]
    assert body["walls"] == 2


def test_failures_to_down_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DependencyHealth(["broker"], failures_to_down=0)
