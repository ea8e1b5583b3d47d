"""Topic names of the contract (ARCHITECTURE.md, "The contract")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ALERTS",
    "ALERT_ACTIONS",
    "ALERT_INPUT",
    "DEADLETTER",
    "EPOCH",
    "EVENTS_PREFIX",
    "INTERNAL_TOPICS",
    "KPI",
    "KPI_PARTIALS",
    "PLATFORM_TOPICS",
    "BrokerEpoch",
    "event_topic",
]

EVENTS_PREFIX: Final = "ioc.events."
DEADLETTER: Final = "ioc.deadletter"
KPI: Final = "ioc.kpi"
ALERTS: Final = "ioc.alerts"
ALERT_ACTIONS: Final = "ioc.alert-actions"

PLATFORM_TOPICS: Final = (DEADLETTER, KPI, ALERTS, ALERT_ACTIONS)

# Internal to the stream worker: stage 1 sends pane partials keyed by series to stage 2.
KPI_PARTIALS: Final = "ioc.internal.kpi-partials"
# The first record of partition 0 names this broker's "epoch": a broker that lost its topics
# (the embedded one forgets everything on restart) gets a new one, so that worker checkpoints
# of the old topics' offsets are not applied to the new topics.
EPOCH: Final = "ioc.internal.epoch"
# The alert stage's one ordered input: KPI points and freshness changes (from the worker's
# stages) and officers' actions (forwarded from ioc.alert-actions), all on partition 0, so
# exactly one worker of the group owns the alert state and sees them in one order.
ALERT_INPUT: Final = "ioc.internal.alert-input"
INTERNAL_TOPICS: Final = (KPI_PARTIALS, EPOCH, ALERT_INPUT)


@dataclass(frozen=True, slots=True)
class BrokerEpoch:
    """The broker that offsets belong to: a broker that lost its topics has a new epoch.

    `generation` is the epoch's creation time in ms, so a later epoch has a higher one:
    KPI points and pane partials are ordered by it before their revision or offset.
    """

    id: str = ""
    generation: int = 0


def event_topic(sector_id: str) -> str:
    """The topic a sector's events travel on."""
    return f"{EVENTS_PREFIX}{sector_id}"
