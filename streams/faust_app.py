"""The Faust app of `ioc worker`: thin agents and timers around `StreamWorker`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.consumer import ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from prometheus_client import CollectorRegistry

from alerts.engine import AlertEngine
from foundation.contract.catalog import Catalog
from foundation.contract.topics import ALERT_ACTIONS, ALERT_INPUT, KPI_PARTIALS
from streams.alert_stage import AlertStage
from streams.checkpoints import CheckpointStore
from streams.worker import EventRecord, StreamWorker
from streams.worker_metrics import WorkerMetrics

__all__ = ["WorkerConfig", "create_app"]

log = logging.getLogger(__name__)

# Faust creates its consumer with fetch_max_wait_ms=1500, fixed. A Kafka broker answers a
# waiting fetch as soon as data arrives; the embedded Tansu broker does not (measured: a
# record sent while a fetch waits arrives up to ~450 ms late with 1,500 ms, ~20 ms with
# 100 ms). A short wait bounds the delay on both; on Kafka it only adds idle fetches.
FETCH_MAX_WAIT_MS = 100
_original_create_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _original_create_consumer(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start()
    return consumer


AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]

# Faust rewinds every partition to its committed offset when a fetch spans a rebalance (it
# drops that fetch) and when streams resume. No offset is committed for the worker's topics:
# the worker's checkpoints stand in. For a worker app, this asks its stages where each
# partition must resume and seeks there, after Faust's own seek for the other topics.
_original_seek_to_committed = ThreadDelegateConsumer.seek_to_committed
_RESUME_ATTRIBUTE = "ioc_resume_offsets"  # set on a worker's app by create_app


async def _seek_to_committed(self: ThreadDelegateConsumer) -> Mapping[TP, int]:
    committed = dict(await _original_seek_to_committed(self))
    resume: Callable[[], dict[tuple[str, int], int]] | None = getattr(
        self.app, _RESUME_ATTRIBUTE, None
    )
    if resume is None:
        return committed
    try:
        assigned = self.assignment()
        ours = {
            tp: offset
            for tp, offset in ((TP(t, p), o) for (t, p), o in resume().items())
            if tp in assigned
        }
        if ours:
            await self.seek_wait(ours)
            committed.update(ours)
    except Exception as exc:  # never break Faust's rebalance; the stages' own seeks stand
        log.warning("cannot rewind to the checkpoints' offsets: %s: %s", type(exc).__name__, exc)
    return committed


ThreadDelegateConsumer.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]

# Faust drops a fetched record whose offset is below the partition's "read offset" (the last
# one it delivered, or a seek's target). After a seek back, an earlier fetch still being
# delivered raises that mark again and the record sought is dropped: the partition then waits
# for it in vain. The worker's stages filter by offset themselves (exact seek target, then
# the state's next offset), so for their topics Faust's filter is switched off.
_UNFILTERED_ATTRIBUTE = "ioc_unfiltered_topics"  # set on a worker's app by create_app
_original_consumer_init = FaustConsumer.__init__


class _ReadOffsets(defaultdict[TP, int | None]):
    """Faust's read offsets, always None (nothing to drop) for the given topics."""

    def __init__(self, topics: frozenset[str]) -> None:
        super().__init__(lambda: None)
        self._topics = topics

    def __getitem__(self, tp: TP) -> int | None:
        if tp.topic in self._topics:
            return None
        return super().__getitem__(tp)


def _consumer_init(self: FaustConsumer, *args: Any, **kwargs: Any) -> None:
    _original_consumer_init(self, *args, **kwargs)
    topics: frozenset[str] | None = getattr(self.app, _UNFILTERED_ATTRIBUTE, None)
    if topics:
        self._read_offset = _ReadOffsets(topics)


FaustConsumer.__init__ = _consumer_init  # type: ignore[method-assign]


@dataclass(frozen=True)
class WorkerConfig:
    """What the Faust app needs to know (built from the settings by `ioc worker`)."""

    bootstrap_servers: str
    group: str
    epoch: str
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
    """Build the Faust app: one agent on every sector topic (stage 1), one on partials (stage 2)."""
    session_ms = config.session_timeout
    app = faust.App(
        config.group,
        broker=[f"kafka://{host}" for host in config.bootstrap_servers.split(",")],
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
        stream_wait_empty=False,
        table_standby_replicas=0,
    )
    metrics = WorkerMetrics.create(registry)
    partitions = config.partitions
    alerts = AlertStage(
        engine=AlertEngine(catalog),
        store=store,
        sink=_FaustSink(app),
        metrics=metrics,
        watched_kpis={f"{s.id}.{r.kpi}" for s in catalog.sectors for r in s.alerts if r.kpi},
        sectors={s.id for s in catalog.sectors},
        group=config.group,
        epoch=config.epoch,
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
    )

    # acks=False: Faust never commits offsets for these topics. A stage's checkpoint holds the
    # offset its state covers; a committed offset without a checkpoint would make a restarted
    # worker resume mid-stream with empty state. Without a checkpoint it reads from the start.
    # Officers' actions are only forwarded (no state): Faust's commits are right for them.
    def raw_topic(*names: str, acks: bool = False) -> Any:
        return app.topic(*names, key_serializer="raw", value_serializer="raw", acks=acks)

    event_topics = raw_topic(*catalog.sector_topics)
    partial_topic = raw_topic(KPI_PARTIALS)
    action_topic = raw_topic(ALERT_ACTIONS, acks=True)
    alert_input = raw_topic(ALERT_INPUT)
    # Attributes Faust's App does not declare, read by the patches above.
    setattr(app, _RESUME_ATTRIBUTE, lambda: {**worker.resume_offsets(), **alerts.resume_offsets()})
    setattr(
        app, _UNFILTERED_ATTRIBUTE, frozenset({*catalog.sector_topics, KPI_PARTIALS, ALERT_INPUT})
    )

    async def seek(tp: tuple[str, int], offset: int) -> int:
        """Seek to offset, or to the earliest record left if retention dropped it; say where.

        (This once raced with Faust's read-offset bookkeeping: Faust had committed an offset
        past the checkpoint, the consumer fetched from there before the seek took effect, and
        the records between were then dropped as already read. No worker topic is committed
        by Faust any more, so what comes before the seek starts at the earliest record.)
        """
        partition = TP(tp[0], tp[1])
        try:
            earliest = (await app.consumer.earliest_offsets(partition)).get(partition, 0)
        except Exception as exc:  # the broker may not say; the checkpoint's offset then stands
            log.warning("cannot read the earliest offset of %s:%d: %s", tp[0], tp[1], exc)
            earliest = 0
        landed = max(offset, earliest or 0)
        # seek_wait runs in the consumer's own thread; a plain seek from here races its fetcher.
        await app.consumer.seek_wait({partition: landed})
        return landed

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types no async receiver
    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs["assigned"]
        tps = {(tp.topic, tp.partition) for tp in assigned}
        await worker.assign(tps, seek)
        await alerts.assign(tps, seek)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types no async receiver
    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs["revoked"]
        tps = {(tp.topic, tp.partition) for tp in revoked}
        for stage in (worker, alerts):
            try:
                await stage.revoke(tps)
            except Exception:  # the next owner then resumes from the previous checkpoint
                log.exception("checkpoint on revoke failed")

    @app.agent(event_topics)
    async def stage1(stream: Any) -> None:
        async for records in record_batches(app, stream.channel):
            await worker.on_event_records(records)

    @app.agent(partial_topic)
    async def stage2(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await worker.on_partial_record(message.partition, message.offset, message.value)

    @app.agent(action_topic)
    async def forward_actions(stream: Any) -> None:
        async for event in stream.events():
            await alerts.forward_action(event.message.value)

    @app.agent(alert_input)
    async def alert_stage(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await alerts.on_input_record(
                message.partition, message.offset, message.value, message.timestamp
            )

    @app.timer(interval=config.flush_interval)  # type: ignore[untyped-decorator]
    async def flush() -> None:  # one timer: each tick of a Faust timer has its own cost
        await worker.flush_stage1()
        await worker.flush_stage2()
        await alerts.flush_feed()

    @app.timer(interval=config.alert_tick_interval)  # type: ignore[untyped-decorator]
    async def alert_tick() -> None:
        await alerts.tick()

    @app.timer(interval=SEEK_WATCH_INTERVAL)  # type: ignore[untyped-decorator]
    async def watch_seeks() -> None:  # its own timer: a slow seek must not delay checkpoints
        for watch in (worker.watch_seeks, alerts.watch_seek):
            try:
                await watch()
            except Exception as exc:  # the broker did not answer: the next tick asks again
                log.warning("repeating a seek failed: %s: %s", type(exc).__name__, exc)

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


SEEK_WATCH_INTERVAL = 2.0  # how often the seek watchdog looks (it acts after 10 s)

# A batch waits this long for more records when fewer than BATCH_RECORDS are queued: at
# high rates it fills meanwhile, at low rates it adds at most this to the KPI latency.
BATCH_LINGER = 0.005
BATCH_RECORDS = 1000


async def record_batches(
    app: faust.App,
    channel: Any,
    *,
    max_records: int = BATCH_RECORDS,
    linger: float = BATCH_LINGER,
) -> AsyncIterator[list[EventRecord]]:
    """The records delivered to an agent's channel, in batches.

    A Faust stream pays its iteration, sensors and acking for every record: on one-event
    records that was a third of the worker's time. This takes what the consumer queued for
    the agent in one go. As the stream does, it drops records fetched under an earlier
    consumer generation (before a rebalance) or while the flow is suspended. The channel's
    topics must have acks disabled: nothing here acks, and no Faust commit is wanted.
    """
    queue = channel.queue
    while True:
        try:
            first = await channel.get()
        except StopAsyncIteration:  # the channel is closed: the app stops
            return
        if queue.qsize() < max_records:
            await asyncio.sleep(linger)
        events = [first]
        while len(events) < max_records and not queue.empty():
            events.append(queue.get_nowait())
        if not app.flow_control.is_active():
            continue
        generation = app.consumer_generation_id
        records = [
            (m.topic, m.partition, m.offset, m.key, m.value)
            for m in (event.message for event in events)
            if m.generation_id == generation
        ]
        if records:
            yield records
