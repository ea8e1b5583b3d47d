"""Prometheus metrics of `ioc writer`, declared once from an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WriterMetrics"]


@dataclass(frozen=True)
class WriterMetrics:
    """Every metric `ioc writer` exports on /metrics."""

    storage_path: Gauge
    records_in: Counter
    rows_written: Counter
    rows_unchanged: Counter
    events_replaced: Counter
    events_rejected: Counter
    records_skipped: Counter
    poison_records: Counter
    batch_rows: Histogram
    write_seconds: Histogram
    lag: Gauge
    retries: Counter
    commit_failures: Counter
    database_up: Gauge
    partitions_created: Counter
    partitions_dropped: Counter
    rollup_hours: Counter
    event_ids_pruned: Counter
    maintenance_failures: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WriterMetrics:
        return cls(
            storage_path=Gauge(
                "ioc_storage_path",
                "1 for the storage path this database uses (plain-postgresql or timescaledb)",
                ["path"],
                registry=registry,
            ),
            records_in=Counter(
                "ioc_writer_records_in", "Kafka records read", ["topic"], registry=registry
            ),
            rows_written=Counter(
                "ioc_writer_rows_written",
                "Rows inserted or changed, by table",
                ["table"],
                registry=registry,
            ),
            rows_unchanged=Counter(
                "ioc_writer_rows_unchanged",
                "Rows already stored (duplicates, older KPI revisions, older alert seqs)",
                ["table"],
                registry=registry,
            ),
            events_replaced=Counter(
                "ioc_writer_events_replaced",
                "Stored events replaced by a later copy with a corrected occurred_at",
                registry=registry,
            ),
            events_rejected=Counter(
                "ioc_writer_events_rejected",
                "Events on event topics the envelope refuses (the worker dead-letters them)",
                ["reason"],
                registry=registry,
            ),
            records_skipped=Counter(
                "ioc_writer_records_skipped",
                "Records or rows left out: broken records, past retention, refused by the database",
                ["reason"],
                registry=registry,
            ),
            poison_records=Counter(
                "ioc_writer_poison_records",
                "Records that are no record of their topic's contract (not JSON, wrong types,"
                " non-finite numbers, …): logged once a minute per topic and stepped over",
                ["topic"],
                registry=registry,
            ),
            batch_rows=Histogram(
                "ioc_writer_batch_rows",
                "Rows per database write",
                buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
                registry=registry,
            ),
            write_seconds=Histogram(
                "ioc_writer_write_seconds",
                "Duration of one successful batch write (COPY + upsert + commit)",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
                registry=registry,
            ),
            lag=Gauge(
                "ioc_writer_lag_records",
                "Records on the broker not yet in the database (high watermark - committed)",
                ["topic"],
                registry=registry,
            ),
            retries=Counter(
                "ioc_writer_retries",
                "Batch writes retried after a database failure",
                ["reason"],
                registry=registry,
            ),
            commit_failures=Counter(
                "ioc_writer_commit_failures",
                "Kafka offset commits that failed (the rows are stored; records are re-read)",
                registry=registry,
            ),
            database_up=Gauge(
                "ioc_writer_database_up",
                "1 while the last database write succeeded, 0 while retrying",
                registry=registry,
            ),
            partitions_created=Counter(
                "ioc_writer_partitions_created",
                "Partitions created (plain path)",
                ["table"],
                registry=registry,
            ),
            partitions_dropped=Counter(
                "ioc_writer_partitions_dropped",
                "Partitions dropped by retention (plain path)",
                ["table"],
                registry=registry,
            ),
            rollup_hours=Counter(
                "ioc_writer_rollup_hours",
                "Series-hours whose rollups were recomputed (plain path)",
                registry=registry,
            ),
            event_ids_pruned=Counter(
                "ioc_writer_event_ids_pruned",
                "event_ids rows deleted past the events' retention (plain path)",
                registry=registry,
            ),
            maintenance_failures=Counter(
                "ioc_writer_maintenance_failures",
                "Maintenance runs that failed (retried at the next interval)",
                registry=registry,
            ),
        )
