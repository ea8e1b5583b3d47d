"""Which `ioc` processes `ioc up` supervises, and with which arguments (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from foundation.errors import SettingsError
from ioc.supervisor import ChildSpec

__all__ = ["SERVICES", "SimulatorPlan", "platform_children"]

# The long-running components, in start order (each finds the services via the state dir).
SERVICES: tuple[ChildSpec, ...] = (
    ChildSpec("worker", ("worker",)),
    ChildSpec("writer", ("writer",)),
    ChildSpec("notifier", ("notifier",)),
    ChildSpec("gateway", ("gateway",)),
    ChildSpec("ingest-api", ("ingest-api",)),
    ChildSpec("reporter", ("reporter",)),
)


@dataclass(frozen=True, slots=True)
class SimulatorPlan:
    """The simulators' arguments: one process per sector, the rate shared evenly."""

    rate: float = 50.0
    scenarios: tuple[str, ...] = ()
    scenario_after: float | None = None
    seed: int = 1


def platform_children(
    sectors: Sequence[str],
    *,
    simulate: SimulatorPlan | None,
    only: Iterable[str] | None = None,
) -> list[ChildSpec]:
    """The children of `ioc up`: services, then a simulator per sector (`sim-<sector>`).

    `only` keeps the named children ("simulators" stands for all simulators); an unknown
    name is a bad setting, not silence.
    """
    children = list(SERVICES)
    if simulate is not None:
        children.extend(_simulators(sectors, simulate))
    if only is None:
        return children
    wanted = {name.strip() for name in only if name.strip()}
    known = {c.name for c in children} | {"simulators"}
    unknown = sorted(wanted - known)
    if unknown:
        raise SettingsError(
            f"--only: unknown component {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    return [
        c
        for c in children
        if c.name in wanted or ("simulators" in wanted and c.name.startswith("sim-"))
    ]


def _simulators(sectors: Sequence[str], plan: SimulatorPlan) -> list[ChildSpec]:
    per_sector = plan.rate / max(1, len(sectors))
    specs = []
    for index, sector in enumerate(sectors):
        args = ["simulate", "--sectors", sector, "--rate", f"{per_sector:g}"]
        args += ["--seed", str(plan.seed + index)]
        for scenario in plan.scenarios:
            # NAME[:SECTOR[:SOURCE]]: a scenario without a sector goes to every simulator.
            parts = scenario.split(":")
            if len(parts) == 1 or parts[1] == sector:
                args += ["--scenario", scenario]
        if plan.scenario_after is not None and any(a == "--scenario" for a in args):
            args += ["--scenario-after", f"{plan.scenario_after:g}"]
        specs.append(ChildSpec(f"sim-{sector}", tuple(args)))
    return specs
