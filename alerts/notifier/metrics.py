"""Prometheus metrics of the notifier, declared once from an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["NotifierMetrics"]


@dataclass(frozen=True)
class NotifierMetrics:
    """Every metric `ioc notifier` exports on /metrics."""

    transitions_in: Counter
    bad_records: Counter
    poison_records: Counter
    skipped: Counter
    notifications: Counter
    messages: Counter
    digests: Counter
    retries: Counter
    delivery_latency: Histogram
    attempt_seconds: Histogram
    pending: Gauge
    database_errors: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NotifierMetrics:
        return cls(
            transitions_in=Counter(
                "ioc_notifier_transitions_in",
                "Alert transitions read from ioc.alerts",
                ["transition"],
                registry=registry,
            ),
            bad_records=Counter(
                "ioc_notifier_bad_records",
                "Records on ioc.alerts that break the contract (skipped)",
                ["reason"],
                registry=registry,
            ),
            poison_records=Counter(
                "ioc_notifier_poison_records",
                "Records stepped over because they break the contract, by topic (their"
                " reasons: ioc_notifier_bad_records_total)",
                ["topic"],
                registry=registry,
            ),
            skipped=Counter(
                "ioc_notifier_skipped",
                "Transitions not routed (too old: older than IOC_NOTIFIER_MAX_AGE)",
                ["reason"],
                registry=registry,
            ),
            notifications=Counter(
                "ioc_notifier_notifications",
                "Deliveries (one transition to one recipient on one channel) by final status",
                ["channel", "status"],
                registry=registry,
            ),
            messages=Counter(
                "ioc_notifier_messages",
                "Messages sent (a digest of several deliveries counts once)",
                ["channel"],
                registry=registry,
            ),
            digests=Counter(
                "ioc_notifier_digests",
                "Messages sent that carried more than one delivery",
                ["channel"],
                registry=registry,
            ),
            retries=Counter(
                "ioc_notifier_retries",
                "Failed attempts that will be retried",
                ["channel"],
                registry=registry,
            ),
            delivery_latency=Histogram(
                "ioc_notifier_delivery_latency_seconds",
                "From a transition (its `at`) to the message carrying it being sent",
                ["channel"],
                buckets=(0.5, 1, 2, 5, 10, 20, 30, 45, 60, 120, 300, 600, 1800),
                registry=registry,
            ),
            attempt_seconds=Histogram(
                "ioc_notifier_attempt_seconds",
                "Duration of one send attempt",
                ["channel"],
                buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=registry,
            ),
            pending=Gauge(
                "ioc_notifier_pending",
                "Deliveries waiting (group_wait or a retry)",
                registry=registry,
            ),
            database_errors=Counter(
                "ioc_notifier_database_errors",
                "Database calls that failed (retried)",
                ["operation"],
                registry=registry,
            ),
        )
