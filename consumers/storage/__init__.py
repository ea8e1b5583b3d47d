"""Storage of the stream in PostgreSQL/TimescaleDB: the writer, its batch write, upkeep.

    writer = StorageWriter(WriterConfig(bootstrap_servers=…, database_url=…), catalog=…,
                           policy=StoragePolicy.default(), metrics=WriterMetrics.create(registry))
    await writer.run(stop)

The tables come from the migrations `0003_storage.sql` and `0006_event_ids.sql`; which storage
path a database uses (`timescaledb` or `plain-postgresql`) is recorded in its `storage_path`
table.
"""

from consumers.storage.maintenance import (
    JobsReport,
    MaintenanceReport,
    apply_timescale_policies,
    prune_event_ids,
    read_storage_path,
    refresh_rollups,
    run_maintenance,
)
from consumers.storage.metrics import WriterMetrics
from consumers.storage.policy import TIME_SERIES_TABLES, StoragePolicy, TimeSeriesTable
from consumers.storage.rows import RecordDecoder, RowBatch
from consumers.storage.sink import StorageSink, WriteResult
from consumers.storage.writer import StorageWriter, WriterConfig, writer_topics

__all__ = [
    "TIME_SERIES_TABLES",
    "JobsReport",
    "MaintenanceReport",
    "RecordDecoder",
    "RowBatch",
    "StoragePolicy",
    "StorageSink",
    "StorageWriter",
    "TimeSeriesTable",
    "WriteResult",
    "WriterConfig",
    "WriterMetrics",
    "apply_timescale_policies",
    "prune_event_ids",
    "read_storage_path",
    "refresh_rollups",
    "run_maintenance",
    "writer_topics",
]
