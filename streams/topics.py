"""Topic names of the contract (ARCHITECTURE.md, "The contract")."""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALERTS",
    "ALERT_ACTIONS",
    "DEADLETTER",
    "EVENTS_PREFIX",
    "KPI",
    "PLATFORM_TOPICS",
    "event_topic",
]

EVENTS_PREFIX: Final = "ioc.events."
DEADLETTER: Final = "ioc.deadletter"
KPI: Final = "ioc.kpi"
ALERTS: Final = "ioc.alerts"
ALERT_ACTIONS: Final = "ioc.alert-actions"

PLATFORM_TOPICS: Final = (DEADLETTER, KPI, ALERTS, ALERT_ACTIONS)


def event_topic(sector_id: str) -> str:
    """The topic a sector's events travel on."""
    return f"{EVENTS_PREFIX}{sector_id}"
