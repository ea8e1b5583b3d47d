"""Which `ioc` processes `ioc up` supervises, and with which arguments (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from foundation.errors import SettingsError
from ioc.supervisor import ChildSpec

__all__ = [
    "SERVICES",
    "SIMULATORS",
    "SIMULATORS_STATUS_FILE",
    "SimulatorPlan",
    "platform_children",
]

# The long-running components, in start order (each finds the services via the state dir).
SERVICES: tuple[ChildSpec, ...] = (
    ChildSpec("worker", ("worker",)),
    ChildSpec("writer", ("writer",)),
    ChildSpec("notifier", ("notifier",)),
    ChildSpec("gateway", ("gateway",)),
    ChildSpec("ingest-api", ("ingest-api",)),
    ChildSpec("reporter", ("reporter",)),
)


SIMULATORS = "simulators"  # the one process that runs every sector's simulator
SIMULATORS_STATUS_FILE = "simulators.json"  # in the state dir: each sector's state


@dataclass(frozen=True, slots=True)
class SimulatorPlan:
    """The simulators' arguments: the rate of all sectors together, scenarios, where to report.

    One process runs them (`ioc simulate --per-sector`): each sector with its own seed (seed +
    its position in the catalog), an equal share of the rate and the scenarios that name it
    or no sector, restarted alone when it fails.
    """

    rate: float = 50.0
    scenarios: tuple[str, ...] = ()
    scenario_after: float | None = None
    seed: int = 1
    status_file: str | None = None


def platform_children(
    sectors: Sequence[str],
    *,
    simulate: SimulatorPlan | None,
    only: Iterable[str] | None = None,
) -> list[ChildSpec]:
    """The children of `ioc up`: the services, then one `simulators` process for the sectors.

    `only` keeps the named children: "simulators" stands for every sector, `sim-<sector>` for
    one (the simulators process then runs only those); an unknown name is a bad setting, not
    silence.
    """
    wanted = None if only is None else {name.strip() for name in only if name.strip()}
    if wanted is not None:
        known = {c.name for c in SERVICES}
        if simulate is not None:
            known |= {SIMULATORS, *(f"sim-{s}" for s in sectors)}
        unknown = sorted(wanted - known)
        if unknown:
            raise SettingsError(
                f"--only: unknown component {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
    children = [c for c in SERVICES if wanted is None or c.name in wanted]
    if simulate is None:
        return children
    chosen = [s for s in sectors if wanted is None or SIMULATORS in wanted or f"sim-{s}" in wanted]
    if chosen:
        children.append(_simulators(sectors, chosen, simulate))
    return children


def _simulators(sectors: Sequence[str], chosen: Sequence[str], plan: SimulatorPlan) -> ChildSpec:
    # Each sector keeps the share of the rate it has when all run: `--only sim-health` gives
    # health the same events per second as a full `ioc up` does.
    rate = plan.rate / max(1, len(sectors)) * len(chosen)
    args = ["simulate", "--per-sector", "--sectors", ",".join(chosen), "--rate", f"{rate:g}"]
    args += ["--seed", str(plan.seed)]
    for scenario in plan.scenarios:
        # NAME[:SECTOR[:SOURCE]]: a scenario without a sector goes to every simulated sector.
        parts = scenario.split(":")
        if len(parts) == 1 or parts[1] in chosen:
            args += ["--scenario", scenario]
    if plan.scenario_after is not None and "--scenario" in args:
        args += ["--scenario-after", f"{plan.scenario_after:g}"]
    if plan.status_file is not None:
        args += ["--status-file", plan.status_file]
    members = tuple(f"sim-{sector}" for sector in chosen)
    return ChildSpec(SIMULATORS, tuple(args), members=members)
