"""The Faust app of `ioc worker`: thin agents and timers around `StreamWorker` and `AlertStage`.

What the worker customises in Faust lives in `streams.faust_adapter` (manual
acknowledgement tied to the checkpoints; the transport with a short fetch wait).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.types import TP
from prometheus_client import CollectorRegistry

from alerts.engine import AlertEngine
from foundation.contract.catalog import Catalog
from foundation.contract.topics import ALERT_ACTIONS, ALERT_INPUT, KPI_PARTIALS, BrokerEpoch
from streams.alert_stage import AlertStage
from streams.checkpoints import CheckpointStore
from streams.faust_adapter import (
    Delivered,
    acknowledge,
    broker_urls,
    delivered_batches,
    is_current,
)
from streams.worker import StreamWorker
from streams.worker_metrics import WorkerMetrics

__all__ = ["BATCH_LINGER", "BATCH_RECORDS", "WorkerConfig", "create_app"]

log = logging.getLogger(__name__)

# A batch waits this long for more records when fewer than BATCH_RECORDS are queued: at
# high rates it fills meanwhile, at low rates it adds at most this to the KPI latency.
BATCH_LINGER = 0.005
BATCH_RECORDS = 1000


@dataclass(frozen=True)
class WorkerConfig:
    """What the Faust app needs to know (built from the settings by `ioc worker`)."""

    bootstrap_servers: str
    group: str
    epoch: BrokerEpoch
    partitions: int
    replication_factor: int
    data_dir: Path
    session_timeout: float = 10.0
    flush_interval: float = 0.1  # stage 1 hands panes on, stage 2 publishes due points
    alert_tick_interval: float = 1.0  # `for` durations, escalations, absences
    checkpoint_interval: float = 1.0
    checkpoint_stale_after: float = (
        30.0  # /healthz fails when no checkpoint succeeded for this long
    )
    broker_credentials: Any = None  # foundation.kafka_client.faust_broker_credentials
    compression: str | None = None  # the producer's compression type (None: none)
    # faust_adapter's transport (100 ms fetch wait) rather than Faust's own: for a broker that
    # answers a waiting fetch only when the wait ends (the embedded one).
    short_fetch_wait: bool = True


class _FaustSink:
    """Sends raw bytes with the app's producer (the worker's outputs need no Faust codec)."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> None:
        # Producer.send only buffers (aiokafka batches); Faust flushes it on commit and stop.
        await self._app.producer.send(topic, key, value, partition, None, None)

    async def flush(self) -> None:
        await self._app.producer.flush()


def create_app(
    config: WorkerConfig,
    *,
    catalog: Catalog,
    store: CheckpointStore,
    registry: CollectorRegistry,
) -> tuple[faust.App, StreamWorker, WorkerMetrics]:
    """Build the Faust app: stage 1 on the sector topics, stage 2 on the partials, the alert
    stage on its input, and the forwarder of officers' actions."""
    session_ms = config.session_timeout
    app = faust.App(
        config.group,
        broker=broker_urls(config.bootstrap_servers, short_fetch_wait=config.short_fetch_wait),
        broker_credentials=config.broker_credentials,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        store="memory://",
        datadir=str(config.data_dir),
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_ms,
        broker_heartbeat_interval=max(session_ms / 5, 0.5),
        broker_rebalance_timeout=max(session_ms * 2, 10.0),
        broker_request_timeout=max(session_ms * 3, 30.0),
        producer_acks=-1,
        # The worker sends in bursts (partials per partition, then KPI points): a few ms of
        # linger makes each burst one batch per partition, and the embedded broker keeps
        # ~1 KB per batch on top of the records.
        producer_linger=0.005,
        producer_compression_type=config.compression,
        # A revoke must not wait for records held until the next checkpoint.
        stream_wait_empty=False,
        table_standby_replicas=0,
    )
    metrics = WorkerMetrics.create(registry)
    partitions = config.partitions

    def current(token: Any) -> bool:
        return is_current(app, token)

    alerts = AlertStage(
        engine=AlertEngine(catalog),
        store=store,
        sink=_FaustSink(app),
        metrics=metrics,
        watched_kpis={f"{s.id}.{r.kpi}" for s in catalog.sectors for r in s.alerts if r.kpi},
        sectors={s.id for s in catalog.sectors},
        group=config.group,
        epoch=config.epoch,
        acknowledge=acknowledge,
        is_current=current,
    )
    worker = StreamWorker(
        catalog=catalog,
        store=store,
        sink=_FaustSink(app),
        metrics=metrics,
        partition_of=lambda key: (murmur2(key.encode()) & 0x7FFFFFFF) % partitions,
        group=config.group,
        epoch=config.epoch,
        alert_feed=alerts,
        acknowledge=acknowledge,
        is_current=current,
    )

    def raw_topic(*names: str) -> Any:
        return app.topic(*names, key_serializer="raw", value_serializer="raw")

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types no async receiver
    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs["assigned"]
        tps = {(tp.topic, tp.partition) for tp in assigned}
        await worker.assign(tps)
        await alerts.assign(tps)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types no async receiver
    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs["revoked"]
        tps = {(tp.topic, tp.partition) for tp in revoked}
        for stage in (worker, alerts):
            try:
                await stage.revoke(tps)
            except Exception:  # the next owner then resumes from the previous checkpoint
                log.exception("checkpoint on revoke failed")

    def batches(stream: Any) -> AsyncIterator[list[Delivered]]:
        return delivered_batches(app, stream, max_records=BATCH_RECORDS, linger=BATCH_LINGER)

    @app.agent(raw_topic(*catalog.sector_topics))
    async def stage1(stream: Any) -> None:
        async for records in batches(stream):
            await worker.on_event_records(records)

    @app.agent(raw_topic(KPI_PARTIALS))
    async def stage2(stream: Any) -> None:
        async for records in batches(stream):
            await worker.on_partial_records(records)

    @app.agent(raw_topic(ALERT_INPUT))
    async def alert_stage(stream: Any) -> None:
        async for records in batches(stream):
            await alerts.on_input_records(records)

    # Officers' actions are only forwarded (no state): each is acknowledged once forwarded.
    @app.agent(raw_topic(ALERT_ACTIONS))
    async def forward_actions(stream: Any) -> None:
        async for event in stream.events():
            await alerts.forward_action(event.message.value or b"")

    @app.timer(interval=config.flush_interval)  # type: ignore[untyped-decorator]
    async def flush() -> None:  # one timer: each tick of a Faust timer has its own cost
        await worker.flush_stage1()
        await worker.flush_stage2()
        await alerts.flush_feed()

    @app.timer(interval=config.alert_tick_interval)  # type: ignore[untyped-decorator]
    async def alert_tick() -> None:
        await alerts.tick()

    @app.timer(interval=config.checkpoint_interval)  # type: ignore[untyped-decorator]
    async def checkpoint() -> None:
        try:
            await worker.checkpoint()
            await alerts.checkpoint()
        except Exception as exc:  # database down or slow: keep running, state stays in memory
            metrics.checkpoint_failures.inc()
            failing = time.time() - worker.last_checkpoint_ok
            level = logging.ERROR if failing > config.checkpoint_stale_after else logging.WARNING
            log.log(
                level,
                "checkpoint failed for %.0f s, retrying: %s: %s",
                failing,
                type(exc).__name__,
                exc,
            )

    return app, worker, metrics
