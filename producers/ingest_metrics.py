"""Prometheus metrics of the HTTP ingest API, declared once from an injected registry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["IngestMetrics"]


@dataclass(frozen=True)
class IngestMetrics:
    """Requests by status, events by outcome, reason and sector, requests in flight."""

    requests: Counter
    request_seconds: Histogram
    in_flight: Gauge
    events_accepted: Counter
    events_rejected: Counter
    events_failed: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry, *, namespace: str = "ioc_ingest") -> IngestMetrics:
        """Register every metric in registry (tests pass a fresh one)."""
        return cls(
            requests=Counter(
                "requests",
                "HTTP requests answered, by status code",
                ["status"],
                namespace=namespace,
                registry=registry,
            ),
            request_seconds=Histogram(
                "request_seconds",
                "Time to answer a POST /v1/events",
                namespace=namespace,
                registry=registry,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            ),
            in_flight=Gauge(
                "requests_in_flight",
                "POST /v1/events being handled",
                namespace=namespace,
                registry=registry,
            ),
            events_accepted=Counter(
                "events_accepted",
                "Events published to Kafka, by sector",
                ["sector"],
                namespace=namespace,
                registry=registry,
            ),
            events_rejected=Counter(
                "events_rejected",
                "Events refused by validation, by reason (field suffix dropped) and sector",
                ["reason", "sector"],
                namespace=namespace,
                registry=registry,
            ),
            events_failed=Counter(
                "events_failed",
                "Valid events Kafka did not acknowledge, by sector",
                ["sector"],
                namespace=namespace,
                registry=registry,
            ),
        )

    def observe_results(self, sector: str, results: Iterable[Mapping[str, Any]]) -> None:
        """Count each event of one request by its outcome."""
        accepted = failed = 0
        for result in results:
            status = result["status"]
            if status == "accepted":
                accepted += 1
            elif status == "failed":
                failed += 1
            else:
                # `missing_field:value` → `missing_field`: field names come from clients and
                # would make the label set unbounded.
                reason = str(result["reason"]).partition(":")[0]
                self.events_rejected.labels(reason=reason, sector=sector).inc()
        if accepted:
            self.events_accepted.labels(sector=sector).inc(accepted)
        if failed:
            self.events_failed.labels(sector=sector).inc(failed)
