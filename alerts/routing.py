"""Who hears of which alert transition, on which channel: the notifier's routing (pure).

The routing file names recipients (people, or shared endpoints such as a Telegram group or
an integration webhook) with their channel addresses, groups of recipients, and routes: a
route gives the recipients of an escalation *role* (the catalog's `escalation.levels`:
level 0 duty officers, level 1 the sector's Vice-Chairman, level 2 the Chairman) for some
sectors from a minimum severity up.

Which transitions notify whom (`plan_deliveries`):

| transition        | recipients                                                          |
|-------------------|---------------------------------------------------------------------|
| fire, refire      | the routes of every level up to the alert's `escalation_level` (0) |
| escalate          | the routes of the new level only                                    |
| resolve           | everyone notified of this alert before (sent or still pending)      |
| ack               | everyone notified before, a short note (`notify_ack: false`: nobody)|
| any other         | nobody (pending, cancel, assign, note, flapping, stale, silence)    |

A transition with `flapping` or `silenced_by` set is *held*: its deliveries are recorded as
held, never sent. So is one for a channel with no credentials configured.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foundation.contract.alerts import SEVERITY_RANK, AlertTransition, Severity
from foundation.contract.catalog.yaml_lines import LineMap, read_yaml_file
from foundation.errors import RoutingError

__all__ = [
    "CHANNELS",
    "ChannelName",
    "PlannedDelivery",
    "Recipient",
    "ReportRoute",
    "Route",
    "Routing",
    "Target",
    "check_roles",
    "check_teams",
    "default_routing_path",
    "load_routing",
    "needs_history",
    "plan_deliveries",
]

ChannelName = Literal["webhook", "email", "telegram", "zalo"]
CHANNELS: tuple[ChannelName, ...] = ("webhook", "email", "telegram", "zalo")
_ID = r"^[a-z0-9][a-z0-9_.-]*$"
ANY_SECTOR = "*"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Recipient(_Strict):
    """A person or a shared endpoint, with an address per channel it can be reached on."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    telegram: str | None = Field(default=None, min_length=1, description="chat id")
    zalo: str | None = Field(default=None, min_length=1, description="user id of the OA")
    webhook: str | None = Field(default=None, min_length=1, description="path or URL")

    def addresses(self) -> list[tuple[ChannelName, str]]:
        found = [(c, getattr(self, c)) for c in CHANNELS]
        return [(channel, address) for channel, address in found if address]

    @model_validator(mode="after")
    def _reachable(self) -> Recipient:
        if not self.addresses():
            raise ValueError("a recipient needs at least one of email, telegram, zalo, webhook")
        return self


class Group(_Strict):
    """Several recipients under one name (routes may name groups)."""

    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    members: list[str] = Field(min_length=1)


class Route(_Strict):
    """The recipients of one escalation role, for some sectors, from a severity up."""

    role: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    sectors: list[str] = Field(default_factory=lambda: [ANY_SECTOR], min_length=1)
    min_severity: Severity = "info"
    notify: list[str] = Field(min_length=1)
    channels: list[ChannelName] | None = None  # None: every channel the recipient has

    def matches(self, role: str, sector: str, severity: str) -> bool:
        return (
            role == self.role
            and (ANY_SECTOR in self.sectors or sector in self.sectors)
            and SEVERITY_RANK[severity] >= SEVERITY_RANK[self.min_severity]
        )


_EDITIONS: tuple[Literal["daily", "weekly"], ...] = ("daily", "weekly")


class ReportRoute(_Strict):
    """Who receives an analysis team's report (`ioc reporter`), on which channels."""

    team: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    notify: list[str] = Field(min_length=1)
    channels: list[ChannelName] | None = None  # None: every channel the recipient has
    editions: list[Literal["daily", "weekly"]] = Field(
        default_factory=lambda: list(_EDITIONS), min_length=1
    )


class Routing(_Strict):
    """The whole routing file."""

    version: int = Field(ge=1, le=1)
    recipients: list[Recipient] = Field(min_length=1)
    groups: list[Group] = Field(default_factory=list)
    routes: list[Route] = Field(min_length=1)
    reports: list[ReportRoute] = Field(default_factory=list)
    notify_ack: bool = True

    @model_validator(mode="after")
    def _references(self) -> Routing:
        ids = [r.id for r in self.recipients] + [g.id for g in self.groups]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"recipient/group id {duplicates[0]!r} is defined twice")
        people = {r.id for r in self.recipients}
        for group in self.groups:
            for member in group.members:
                if member not in people:
                    raise ValueError(f"group {group.id!r}: unknown recipient {member!r}")
        known = set(ids)
        for index, route in enumerate(self.routes):
            for name in route.notify:
                if name not in known:
                    raise ValueError(f"routes[{index}]: unknown recipient or group {name!r}")
        for index, report in enumerate(self.reports):
            for name in report.notify:
                if name not in known:
                    raise ValueError(f"reports[{index}]: unknown recipient or group {name!r}")
        return self

    def recipient(self, recipient_id: str) -> Recipient | None:
        return next((r for r in self.recipients if r.id == recipient_id), None)

    def targets(self, role: str, sector: str, severity: str) -> list[Target]:
        """Every (recipient, channel, address) the matching routes name, each once."""
        found: dict[tuple[str, str], Target] = {}
        groups = {g.id: g for g in self.groups}
        for route in self.routes:
            if not route.matches(role, sector, severity):
                continue
            for name in route.notify:
                members = groups[name].members if name in groups else [name]
                for member in members:
                    recipient = self.recipient(member)
                    if recipient is None:  # checked at load; kept for a hand-built Routing
                        continue
                    for channel, address in recipient.addresses():
                        if route.channels is None or channel in route.channels:
                            found.setdefault(
                                (recipient.id, channel), Target(recipient.id, channel, address)
                            )
        return list(found.values())

    def report_targets(self, team: str, edition: str) -> list[Target]:
        """Every (recipient, channel, address) of a team's report edition, each once."""
        found: dict[tuple[str, str], Target] = {}
        groups = {g.id: g for g in self.groups}
        for route in self.reports:
            if route.team != team or edition not in route.editions:
                continue
            for name in route.notify:
                for member in groups[name].members if name in groups else [name]:
                    recipient = self.recipient(member)
                    if recipient is None:
                        continue
                    for channel, address in recipient.addresses():
                        if route.channels is None or channel in route.channels:
                            found.setdefault(
                                (recipient.id, channel), Target(recipient.id, channel, address)
                            )
        return sorted(found.values())

    def problems_with_roles(self, roles: Collection[str]) -> list[str]:
        """Routes whose role the catalog's escalation levels do not define."""
        return [
            f"routes[{i}].role: {r.role!r} is not a role of the catalog's escalation levels "
            f"({', '.join(roles)})"
            for i, r in enumerate(self.routes)
            if r.role not in roles
        ]


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One address of one recipient."""

    recipient: str
    channel: ChannelName
    address: str


HoldReason = str  # "flapping", "silenced:<id>", "channel_not_configured", "rate_limited"


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A delivery the notifier must record for a transition: pending (to send) or held."""

    target: Target
    hold_reason: HoldReason | None = None

    @property
    def status(self) -> Literal["pending", "held"]:
        return "pending" if self.hold_reason is None else "held"


def needs_history(transition: AlertTransition) -> bool:
    """Whether routing this transition needs the recipients notified of the alert before."""
    return transition.transition in ("resolve", "ack")


def plan_deliveries(
    transition: AlertTransition,
    routing: Routing,
    *,
    roles: list[str],
    notified_before: Iterable[Target] = (),
    enabled_channels: Collection[str] = CHANNELS,
) -> list[PlannedDelivery]:
    """The deliveries of one transition (see the module's table); held ones say why.

    `roles[level]` is the role of escalation level `level` (from the catalog); a level past
    the last one uses the last role.
    """
    kind = transition.transition
    level = max(0, transition.escalation_level)
    targets: list[Target]
    if kind in ("fire", "refire"):
        found: dict[tuple[str, str], Target] = {}
        for lvl in range(min(level, len(roles) - 1) + 1):
            for t in routing.targets(roles[lvl], transition.sector, transition.severity):
                found.setdefault((t.recipient, t.channel), t)
        targets = list(found.values())
    elif kind == "escalate":
        role = roles[min(level, len(roles) - 1)]
        targets = routing.targets(role, transition.sector, transition.severity)
    elif kind == "resolve" or (kind == "ack" and routing.notify_ack):
        targets = sorted(set(notified_before))
    else:
        targets = []
    hold: HoldReason | None = None
    if transition.flapping:
        hold = "flapping"
    elif transition.silenced_by:
        hold = f"silenced:{transition.silenced_by}"
    return [
        PlannedDelivery(
            t,
            hold if hold or t.channel in enabled_channels else "channel_not_configured",
        )
        for t in targets
    ]


def default_routing_path() -> Path:
    """The demo routing of Bình Phước shipped with the package (placeholder addresses)."""
    return Path(str(files("alerts") / "routing_binh_phuoc.yaml"))


def load_routing(path: Path | None = None) -> Routing:
    """Load and validate a routing file; RoutingError lists every problem as file:line."""
    path = path or default_routing_path()
    data, lines = read_yaml_file(path, what="routing", error=RoutingError)
    try:
        return Routing.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(path, lines, e["loc"], str(e["msg"])) for e in exc.errors()]
        raise RoutingError(f"routing {path} has {len(problems)} problem(s)", problems) from exc


def _problem(path: Path, lines: LineMap, loc: Iterable[object], message: str) -> str:
    where = tuple(part for part in loc if isinstance(part, str | int))
    line = 1
    for end in range(len(where), -1, -1):
        if where[:end] in lines:
            line = lines[where[:end]]
            break
    dotted = ".".join(str(p) for p in where) or "(top)"
    return f"{path}:{line}: {dotted}: {message.removeprefix('Value error, ')}"


def check_teams(routing: Routing, teams: Collection[str], *, path: Path | None = None) -> None:
    """RoutingError when a report route names a team the catalog does not have."""
    problems = [
        f"reports[{i}].team: {r.team!r} is not a team of the catalog ({', '.join(teams)})"
        for i, r in enumerate(routing.reports)
        if r.team not in teams
    ]
    if problems:
        where = path or default_routing_path()
        raise RoutingError(
            f"routing {where} has {len(problems)} problem(s)", [f"{where}: {p}" for p in problems]
        )


def check_roles(routing: Routing, roles: Collection[str], *, path: Path | None = None) -> None:
    """RoutingError when a route names a role the catalog does not have."""
    problems = routing.problems_with_roles(roles)
    if problems:
        where = path or default_routing_path()
        raise RoutingError(
            f"routing {where} has {len(problems)} problem(s)", [f"{where}: {p}" for p in problems]
        )
