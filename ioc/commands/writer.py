"""`ioc writer`: events, KPI points, alerts and dead letters into PostgreSQL/TimescaleDB."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

from foundation.settings import Settings
from ioc.commands import flags_to_settings

if TYPE_CHECKING:
    from consumers.storage import StoragePolicy

__all__ = ["register", "storage_policy"]

log = logging.getLogger("ioc.writer")


def register(commands: Any) -> None:
    writer = commands.add_parser(
        "writer",
        help="store the stream in PostgreSQL/TimescaleDB (several share the partitions)",
    )
    writer.add_argument(
        "--metrics-port", type=int, help="port of /metrics and /healthz (IOC_WRITER_METRICS_PORT)"
    )
    writer.set_defaults(
        run=_cmd_writer,
        overrides=flags_to_settings(metrics_port="writer_metrics_port"),
    )


def storage_policy(settings: Settings) -> StoragePolicy:
    """Retention and partitions-ahead from the settings."""
    from consumers.storage import StoragePolicy

    return StoragePolicy(
        retention_days={
            "events": settings.retention_events_days,
            "kpi_points": settings.retention_kpi_points_days,
            "dead_letters": settings.retention_dead_letters_days,
        },
        partitions_ahead_days=settings.partitions_ahead_days,
    )


async def _cmd_writer(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import CollectorRegistry

    from consumers.migrations import migrate
    from consumers.storage import StorageWriter, WriterConfig, WriterMetrics
    from foundation.contract.catalog import load_catalog
    from foundation.health import DependencyWatch
    from foundation.kafka_client import kafka_client_options
    from foundation.observability import start_observability_server
    from ioc.runtime import resolve_bootstrap_servers, resolve_database_url
    from ioc.topics import contract_topics, create_topics

    catalog = load_catalog(settings.catalog)
    bootstrap = resolve_bootstrap_servers(settings)
    database_url = resolve_database_url(settings)
    report = await migrate(
        database_url, connect_timeout=settings.connect_timeout, storage=settings.storage_path
    )
    # Subscribing to a missing topic would auto-create it with the broker's partition count.
    await create_topics(
        bootstrap,
        contract_topics(catalog),
        partitions=settings.partitions_per_topic,
        replication_factor=settings.topic_replication_factor,
        timeout=settings.connect_timeout,
        kafka_options=kafka_client_options(settings),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    registry = CollectorRegistry()
    config = WriterConfig(
        bootstrap_servers=bootstrap,
        database_url=database_url,
        group=settings.writer_group,
        batch_rows=settings.writer_batch_rows,
        linger=settings.writer_linger,
        maintenance_interval=settings.writer_maintenance_interval,
        retry_max=settings.writer_retry_max,
        session_timeout=settings.session_timeout(settings.writer_session_timeout),
        connect_timeout=settings.connect_timeout,
        kafka_options=kafka_client_options(settings),
    )
    writer = StorageWriter(
        config,
        catalog=catalog,
        policy=storage_policy(settings),
        metrics=WriterMetrics.create(registry),
    )
    watch = DependencyWatch.from_settings(
        settings, bootstrap_servers=bootstrap, database_url=database_url
    )
    watch.start()
    runner, port = await start_observability_server(
        registry,
        host=settings.writer_metrics_host,
        port=settings.writer_metrics_port,
        healthy=writer.healthy,
        dependencies=watch,
    )
    print(f"writer metrics: http://{settings.writer_metrics_host}:{port}/metrics", flush=True)
    task = asyncio.create_task(writer.run(stop), name="writer")
    try:
        ready = asyncio.create_task(writer.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if writer.ready.is_set():
            print(
                f"writer ready: storage path {writer.path}, group {settings.writer_group},"
                f" {len(report.applied)} migrations applied",
                flush=True,
            )
        await task
    finally:
        stop.set()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
        await watch.close()
    log.info("writer stopped")
    return 0
