"""Prometheus metrics of the history API, declared once from an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["HistoryMetrics"]


@dataclass(frozen=True)
class HistoryMetrics:
    """Requests by endpoint and status; database time by endpoint; series by table."""

    requests: Counter
    query_seconds: Histogram
    series_source: Counter

    @classmethod
    def create(
        cls, registry: CollectorRegistry, *, namespace: str = "ioc_history"
    ) -> HistoryMetrics:
        """Register every metric in registry (tests pass a fresh one)."""
        return cls(
            requests=Counter(
                "requests",
                "History API requests answered, by endpoint and HTTP status",
                ["endpoint", "status"],
                namespace=namespace,
                registry=registry,
            ),
            query_seconds=Histogram(
                "query_seconds",
                "Time spent in the database per history request, by endpoint",
                ["endpoint"],
                namespace=namespace,
                registry=registry,
                buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            ),
            series_source=Counter(
                "series_source",
                "Series requests by the table that answered (kpi_points or a rollup)",
                ["table"],
                namespace=namespace,
                registry=registry,
            ),
        )
