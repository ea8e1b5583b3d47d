"""The supervisor's restart policy and the component plan of `ioc up` (pure)."""

from __future__ import annotations

import pytest

from foundation.contract.catalog import load_catalog
from foundation.errors import SettingsError
from ioc.components import SimulatorPlan, platform_children
from ioc.supervisor import Backoff, Streak, exit_cause

SECTORS = [s.id for s in load_catalog().sectors]


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)],
)
def test_backoff_doubles_up_to_the_cap(failures: int, delay: float) -> None:
    """Restart n waits base·2^(n-1) seconds, never more than the cap."""
    assert Backoff(base=1.0, cap=30.0).delay(failures) == delay


@pytest.mark.parametrize(
    ("before", "cause", "ran_for", "after", "delay"),
    [
        # A healthy run (≥ early_exit) ended by anything: restart at once, count from zero.
        (Streak("signal 9", 5), "signal 9", 30.0, Streak("signal 9", 0), 0.0),
        (Streak("exit 1", 3), "signal 9", 10.0, Streak("signal 9", 0), 0.0),
        # Early exits with the same cause: a crash loop, the delay doubles.
        (Streak("exit 1", 0), "exit 1", 2.0, Streak("exit 1", 1), 1.0),
        (Streak("exit 1", 1), "exit 1", 2.0, Streak("exit 1", 2), 2.0),
        (Streak("exit 1", 6), "exit 1", 0.5, Streak("exit 1", 7), 30.0),
        # An early exit with another cause is not the same loop: the count starts again.
        (Streak("exit 1", 6), "signal 9", 0.5, Streak("signal 9", 1), 1.0),
        (Streak(), "exit 2", 0.1, Streak("exit 2", 1), 1.0),
    ],
)
def test_the_backoff_climbs_only_for_early_exits_of_the_same_cause(
    before: Streak, cause: str, ran_for: float, after: Streak, delay: float
) -> None:
    """Kills of a healthy child (today's SIGKILL every 30 s) never reach the 30 s cap."""
    backoff = Backoff(base=1.0, cap=30.0, early_exit=10.0)
    streak = backoff.after_exit(before, cause=cause, ran_for=ran_for)
    assert streak == after
    assert backoff.delay(streak.failures) == delay


def test_kills_a_few_seconds_apart_of_a_healthy_child_restart_at_once() -> None:
    """Ten SIGKILLs 20 s apart: every restart is immediate (the old policy reached 30 s)."""
    backoff, streak = Backoff(), Streak()
    for _ in range(10):
        streak = backoff.after_exit(streak, cause=exit_cause(-9), ran_for=20.0)
        assert backoff.delay(streak.failures) == 0.0


@pytest.mark.parametrize(("code", "cause"), [(-9, "signal 9"), (-15, "signal 15"), (1, "exit 1")])
def test_exit_cause_names_the_signal_or_the_code(code: int, cause: str) -> None:
    assert exit_cause(code) == cause


def test_all_components_and_one_process_for_the_simulators_of_every_sector() -> None:
    """Six services, then `simulators`: one process, a simulation per sector (sim-<sector>)."""
    children = platform_children(SECTORS, simulate=SimulatorPlan(rate=110.0))
    names = [c.name for c in children]
    assert names == [
        "worker", "writer", "notifier", "gateway", "ingest-api", "reporter", "simulators"
    ]  # fmt: skip
    simulators = children[-1]
    assert simulators.members == tuple(f"sim-{s}" for s in SECTORS) and len(SECTORS) == 11
    assert simulators.args[:7] == (
        "simulate", "--per-sector", "--sectors", ",".join(SECTORS), "--rate", "110", "--seed"
    )  # fmt: skip


def test_a_scenario_goes_to_its_sector_only_and_a_bare_one_to_all() -> None:
    """The plan passes both on; per sector, spike:health reaches health alone (simulate)."""
    plan = SimulatorPlan(scenarios=("spike:health", "silent"), scenario_after=5.0)
    (simulators,) = [c for c in platform_children(SECTORS, simulate=plan) if c.members]
    args = simulators.args
    assert args[args.index("--scenario") + 1] == "spike:health" and "silent" in args
    assert args[-2:] == ("--scenario-after", "5")
    only_traffic = platform_children(SECTORS, simulate=plan, only=["sim-traffic"])
    assert "spike:health" not in only_traffic[0].args and "silent" in only_traffic[0].args


def test_no_simulate_and_only() -> None:
    """--no-simulate drops the simulators; --only keeps the named ones; unknown names fail."""
    assert len(platform_children(SECTORS, simulate=None)) == 6
    everything = platform_children(SECTORS, simulate=SimulatorPlan(), only=["worker", "simulators"])
    assert [c.name for c in everything] == ["worker", "simulators"]
    assert len(everything[1].members) == 11
    with pytest.raises(SettingsError, match="unknown component 'wroker'"):
        platform_children(SECTORS, simulate=None, only=["wroker"])
    with pytest.raises(SettingsError, match="unknown component 'sim-health'"):
        platform_children(SECTORS, simulate=None, only=["sim-health"])


def test_only_some_sectors_keep_their_share_of_the_rate_and_status_file() -> None:
    """`--only sim-health,sim-traffic`: one process for the two, each at 1/11 of the rate."""
    plan = SimulatorPlan(rate=110.0, status_file="/s/simulators.json")
    (simulators,) = platform_children(SECTORS, simulate=plan, only=["sim-health", "sim-traffic"])
    assert simulators.name == "simulators"
    assert simulators.members == ("sim-health", "sim-traffic")
    args = simulators.args
    assert args[args.index("--sectors") + 1] == "health,traffic"
    assert args[args.index("--rate") + 1] == "20"  # 10 ev/s each, as with all 11
    assert args[-2:] == ("--status-file", "/s/simulators.json")
