"""Prometheus metrics of the stream worker, declared once from an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics"]


@dataclass(frozen=True)
class WorkerMetrics:
    """Every metric `ioc worker` exports on /metrics."""

    records_in: Counter
    events_in: Counter
    rejects: Counter
    late_events: Counter
    kpi_points_out: Counter
    freshness_changes: Counter
    event_to_kpi_latency: Histogram
    stale_sources: Gauge
    owned_partitions: Gauge
    checkpoint_failures: Counter
    checkpoint_seconds: Histogram
    records_lost: Counter
    poison_records: Counter
    alert_transitions: Counter
    escalations: Counter
    open_alerts: Gauge
    alert_actions: Counter
    alert_feed_dropped: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WorkerMetrics:
        return cls(
            records_in=Counter(
                "ioc_worker_records_in",
                "Kafka records read from event topics",
                ["sector"],
                registry=registry,
            ),
            events_in=Counter(
                "ioc_worker_events_in", "Valid events taken in", ["sector"], registry=registry
            ),
            rejects=Counter(
                "ioc_worker_rejects",
                "Events sent to the dead letters",
                ["reason"],
                registry=registry,
            ),
            late_events=Counter(
                "ioc_worker_late_events",
                "Events too late for every window they belong to",
                registry=registry,
            ),
            kpi_points_out=Counter(
                "ioc_worker_kpi_points_out", "KPI points published", ["final"], registry=registry
            ),
            freshness_changes=Counter(
                "ioc_worker_freshness_changes",
                "Source freshness transitions published",
                ["state"],
                registry=registry,
            ),
            event_to_kpi_latency=Histogram(
                "ioc_worker_event_to_kpi_latency_seconds",
                "From taking in the newest event of a KPI point to publishing the point",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                registry=registry,
            ),
            stale_sources=Gauge(
                "ioc_worker_stale_sources",
                "Sources of the owned partitions that are stale",
                registry=registry,
            ),
            owned_partitions=Gauge(
                "ioc_worker_owned_partitions",
                "Partitions this worker owns",
                ["stage"],
                registry=registry,
            ),
            records_lost=Counter(
                "ioc_worker_records_lost",
                "Records a checkpoint needed that the broker no longer had (retention, a lost "
                "broker): counted, logged with their offsets, shown on the wall as a data gap",
                ["topic"],
                registry=registry,
            ),
            poison_records=Counter(
                "ioc_worker_poison_records",
                "Records of the worker's internal topics that break their format: stepped over",
                ["topic"],
                registry=registry,
            ),
            checkpoint_failures=Counter(
                "ioc_worker_checkpoint_failures",
                "Checkpoint writes that failed (retried)",
                registry=registry,
            ),
            checkpoint_seconds=Histogram(
                "ioc_worker_checkpoint_seconds",
                "Time to write one round of checkpoints",
                registry=registry,
            ),
            alert_transitions=Counter(
                "ioc_alert_transitions",
                "Alert transitions published on ioc.alerts",
                ["transition", "severity", "sector"],
                registry=registry,
            ),
            escalations=Counter(
                "ioc_alert_escalations",
                "Escalations of unacknowledged alerts to the next level",
                ["sector"],
                registry=registry,
            ),
            open_alerts=Gauge(
                "ioc_alerts_open",
                "Alerts not resolved, by state, severity and sector (on the alert stage's owner)",
                ["state", "severity", "sector"],
                registry=registry,
            ),
            alert_actions=Counter(
                "ioc_alert_actions",
                "Officers' actions taken in, by action and outcome (applied or a reason)",
                ["action", "outcome"],
                registry=registry,
            ),
            alert_feed_dropped=Counter(
                "ioc_alert_feed_dropped",
                "KPI records not handed to the alert stage because its feed was full",
                registry=registry,
            ),
        )
