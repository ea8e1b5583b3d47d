"""Topic names of the contract (ARCHITECTURE.md, "The contract")."""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALERTS",
    "ALERT_ACTIONS",
    "DEADLETTER",
    "EVENTS_PREFIX",
    "INTERNAL_TOPICS",
    "KPI",
    "KPI_PARTIALS",
    "PLATFORM_TOPICS",
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
INTERNAL_TOPICS: Final = (KPI_PARTIALS,)


def event_topic(sector_id: str) -> str:
    """The topic a sector's events travel on."""
    return f"{EVENTS_PREFIX}{sector_id}"
