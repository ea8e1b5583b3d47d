"""The supervisor's restart policy and the component plan of `ioc up` (pure)."""

from __future__ import annotations

import pytest

from foundation.contract.catalog import load_catalog
from foundation.errors import SettingsError
from ioc.components import SimulatorPlan, platform_children
from ioc.supervisor import Backoff

SECTORS = [s.id for s in load_catalog().sectors]


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)],
)
def test_backoff_doubles_up_to_the_cap(failures: int, delay: float) -> None:
    """Restart n waits base·2^(n-1) seconds, never more than the cap."""
    assert Backoff(base=1.0, cap=30.0).delay(failures) == delay


def test_a_long_healthy_run_resets_the_failure_count() -> None:
    """A child that ran past stable_after restarts after the base delay, not a long one."""
    backoff = Backoff(stable_after=60.0)
    assert backoff.failures_after_exit(5, ran_for=0.5) == 6
    assert backoff.failures_after_exit(5, ran_for=61.0) == 1


def test_all_components_and_one_simulator_per_sector() -> None:
    """Six services, then sim-<sector> for each of the 11 sectors sharing the rate."""
    children = platform_children(SECTORS, simulate=SimulatorPlan(rate=110.0))
    names = [c.name for c in children]
    assert names[:6] == ["worker", "writer", "notifier", "gateway", "ingest-api", "reporter"]
    assert names[6:] == [f"sim-{s}" for s in SECTORS] and len(SECTORS) == 11
    first = children[6].args
    assert first[:5] == ("simulate", "--sectors", SECTORS[0], "--rate", "10")


def test_a_scenario_goes_to_its_sector_only_and_a_bare_one_to_all() -> None:
    """spike:health reaches sim-health alone; silent reaches every simulator."""
    plan = SimulatorPlan(scenarios=("spike:health", "silent"), scenario_after=5.0)
    children = {c.name: c.args for c in platform_children(SECTORS, simulate=plan)}
    assert "spike:health" in children["sim-health"]
    assert "spike:health" not in children["sim-traffic"]
    assert all("silent" in args for name, args in children.items() if name.startswith("sim-"))
    assert children["sim-health"][-2:] == ("--scenario-after", "5")


def test_no_simulate_and_only() -> None:
    """--no-simulate drops the simulators; --only keeps the named ones; unknown names fail."""
    assert len(platform_children(SECTORS, simulate=None)) == 6
    only = platform_children(SECTORS, simulate=SimulatorPlan(), only=["worker", "simulators"])
    assert [c.name for c in only][:2] == ["worker", f"sim-{SECTORS[0]}"] and len(only) == 12
    with pytest.raises(SettingsError, match="unknown component 'wroker'"):
        platform_children(SECTORS, simulate=None, only=["wroker"])
