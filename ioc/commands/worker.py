"""`ioc worker`: the Faust stream worker (validation, KPI windows, freshness)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

from foundation.settings import Settings
from ioc.commands import flags_to_settings

__all__ = ["register"]

log = logging.getLogger("ioc.worker")

# IOC_WORKER_TRANSPORT: what `auto` chose (or what was set), as the start line says it.
_TRANSPORTS = {
    True: "short-wait (Faust's aiokafka transport with a 100 ms fetch wait)",
    False: "faust (Faust's own aiokafka transport)",
}


def register(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="run the stream worker (several share the partitions of one consumer group)"
    )
    worker.add_argument(
        "--metrics-port", type=int, help="port of /metrics and /healthz (IOC_WORKER_METRICS_PORT)"
    )
    worker.set_defaults(
        run=_cmd_worker,
        overrides=flags_to_settings(metrics_port="worker_metrics_port"),
    )


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust
    from prometheus_client import CollectorRegistry

    from consumers.migrations import migrate
    from foundation.contract.catalog import load_catalog
    from foundation.health import DependencyWatch
    from foundation.kafka_client import (
        faust_broker_credentials,
        kafka_client_options,
        producer_compression,
    )
    from foundation.observability import start_observability_server
    from foundation.state_dir import ensure_state_dir
    from ioc.embedded.broker import CLUSTER_ID
    from ioc.runtime import resolve_bootstrap_servers, resolve_database_url
    from ioc.topics import cluster_id, ensure_epoch
    from streams.checkpoints import PostgresCheckpointStore
    from streams.faust_app import WorkerConfig, create_app

    catalog = load_catalog(settings.catalog)
    bootstrap = resolve_bootstrap_servers(settings)
    database_url = resolve_database_url(settings)
    state_dir = ensure_state_dir(settings.state_dir)
    # The checkpoint table must exist before the first assignment.
    asyncio.run(migrate(database_url, connect_timeout=settings.connect_timeout))
    epoch = asyncio.run(
        ensure_epoch(
            bootstrap,
            timeout=settings.connect_timeout,
            kafka_options=kafka_client_options(settings),
        )
    )
    short_fetch_wait = settings.worker_transport == "short-wait"
    if settings.worker_transport == "auto":
        found = asyncio.run(
            cluster_id(
                bootstrap,
                timeout=settings.connect_timeout,
                kafka_options=kafka_client_options(settings),
            )
        )
        short_fetch_wait = found == CLUSTER_ID
    print(f"worker transport: {_TRANSPORTS[short_fetch_wait]}", flush=True)
    asyncio.set_event_loop(asyncio.new_event_loop())  # Faust runs on the current loop

    registry = CollectorRegistry()
    store = PostgresCheckpointStore(database_url, timeout=settings.connect_timeout)
    config = WorkerConfig(
        bootstrap_servers=bootstrap,
        group=settings.worker_group,
        epoch=epoch,
        partitions=settings.partitions_per_topic,
        replication_factor=settings.topic_replication_factor,
        data_dir=state_dir / "faust",
        session_timeout=settings.session_timeout(settings.worker_session_timeout),
        checkpoint_interval=settings.worker_checkpoint_interval,
        broker_credentials=faust_broker_credentials(settings),
        compression=producer_compression(settings),
        short_fetch_wait=short_fetch_wait,
    )
    app, worker, _metrics = create_app(config, catalog=catalog, store=store, registry=registry)

    def healthy() -> bool:
        checkpointed = time.time() - worker.last_checkpoint_ok <= config.checkpoint_stale_after
        return not app.should_stop and checkpointed

    @app.task  # type: ignore[untyped-decorator]
    async def serve_metrics() -> None:
        # On Faust's loop; this task probes until Faust cancels it at shutdown.
        watch = DependencyWatch.from_settings(
            settings, bootstrap_servers=bootstrap, database_url=database_url
        )
        _runner, port = await start_observability_server(
            registry,
            host=settings.worker_metrics_host,
            port=settings.worker_metrics_port,
            healthy=healthy,
            dependencies=watch,
        )
        print(f"worker metrics: http://{settings.worker_metrics_host}:{port}/metrics", flush=True)
        await watch.run()

    log.info("stream worker starting on %s", bootstrap)
    faust_worker = faust.Worker(
        app,
        loglevel=settings.log_level if settings.log_level != "warning" else "warn",
        quiet=True,
        # Our start lines (metrics URL) are output, not warnings in Faust's log.
        redirect_stdouts=False,
    )
    try:
        faust_worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
