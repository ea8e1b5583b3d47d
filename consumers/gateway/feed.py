"""Follow `ioc.kpi` and `ioc.alerts` from Kafka into the hub (thin I/O around the state).

No consumer group: every gateway instance reads every partition. Where each partition starts
is decided once, at start: the first record of the last `replay_seconds` (see offsets.py);
the database load has everything older, and the state drops what both hold. Ready means
every partition's position has reached the high watermark seen when the feed started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumers.gateway.fanout import Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.offsets import first_offset_at
from consumers.gateway.records import PoisonRecordError, alert_item, kpi_topic_item
from consumers.gateway.state import Change
from foundation.contract.topics import ALERTS, KPI
from foundation.errors import BrokerUnreachableError
from foundation.log_throttle import LogThrottle

__all__ = ["KafkaFeed"]

log = logging.getLogger("ioc.gateway.feed")

# The embedded broker answers a waiting fetch only at its max wait, not when data arrives:
# this bounds the push latency from below. It also sets how often the broker serves us, and
# each fetch that finds data costs it in proportion to all the batches it holds (its CPU
# climbs with its age): 100 ms, like the worker, not 20 (bench/RESULTS.md, "The broker's CPU").
_FETCH_MAX_WAIT_MS = 100
_DEFAULT_PARTITIONS = 4


class KafkaFeed:
    """Reads all partitions of ioc.kpi and ioc.alerts and hands every record to the hub."""

    def __init__(
        self,
        hub: Hub,
        *,
        bootstrap_servers: str,
        replay_seconds: float,
        metrics: GatewayMetrics,
        timeout: float,
        kpi_topic: str = KPI,
        alerts_topic: str = ALERTS,
        clock: Callable[[], float] = time.time,
        kafka_options: dict[str, Any] | None = None,
        sectors: Collection[str] | None = None,
    ) -> None:
        """`sectors`: the catalog's; a record of another sector is poison (None: any)."""
        self._kafka_options = kafka_options or {}
        self._sectors = frozenset(sectors) if sectors is not None else None
        self._log = LogThrottle(log)
        self._hub = hub
        self._kpi_topic = kpi_topic
        self._alerts_topic = alerts_topic
        self._bootstrap = bootstrap_servers
        self._replay_seconds = replay_seconds
        self._metrics = metrics
        self._timeout = timeout
        self._clock = clock
        self.ready = asyncio.Event()
        self.records = 0
        self._in_kpi = metrics.records_in.labels(kpi_topic)
        self._in_alerts = metrics.records_in.labels(alerts_topic)

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=_FETCH_MAX_WAIT_MS,
            request_timeout_ms=int(self._timeout * 1000) + 5000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **self._kafka_options,
        )

    async def _start(self, consumer: AIOKafkaConsumer) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await consumer.start()
        except (KafkaError, TimeoutError, OSError) as exc:
            await consumer.stop()
            raise BrokerUnreachableError(
                f"cannot reach Kafka at {self._bootstrap}: {exc!r}"
            ) from exc

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        assignment = []
        for topic in (self._kpi_topic, self._alerts_topic):
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer.topics()  # a metadata refresh (creates it if auto-create is on)
                partitions = consumer.partitions_for_topic(topic) or set(range(_DEFAULT_PARTITIONS))
            assignment += [TopicPartition(topic, p) for p in sorted(partitions)]
        return assignment

    async def _start_offsets(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """(start offset, high watermark) per partition for the replay window."""
        target_ms = int((self._clock() - self._replay_seconds) * 1000)
        beginnings = await consumer.beginning_offsets(partitions)
        lows = {tp: beginnings.get(tp, 0) for tp in partitions}
        # One fetch round for all: which partitions hold records, and their high watermarks.
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, lows[tp])
        found: dict[TopicPartition, tuple[int, int]] = {}
        non_empty: dict[TopicPartition, int] = {}  # partition: its high watermark
        async with asyncio.timeout(self._timeout):
            while len(found) + len(non_empty) < len(partitions):
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    if records and tp not in found and tp not in non_empty:
                        # Read now: assign() below forgets what the fetches learnt.
                        non_empty[tp] = max(consumer.highwater(tp) or 0, records[0].offset + 1)
                for tp in partitions:
                    highwater = consumer.highwater(tp)
                    if tp not in non_empty and highwater is not None and highwater <= lows[tp]:
                        found[tp] = (lows[tp], lows[tp])
        for tp, high in non_empty.items():
            consumer.assign([tp])

            async def probe(offset: int, tp: TopicPartition = tp) -> tuple[int, int] | None:
                consumer.seek(tp, offset)
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                records = batch.get(tp) or []
                return (records[0].offset, records[0].timestamp) if records else None

            start = await first_offset_at(lows[tp], high, target_ms, probe)
            found[tp] = (start, high)
        return found

    async def run(self) -> None:
        """Follow the topics until cancelled."""
        consumer = self._consumer()
        await self._start(consumer)
        try:
            partitions = await self._partitions(consumer)
            started = time.monotonic()
            offsets = await self._start_offsets(consumer, partitions)
            consumer.assign(partitions)
            for tp, (start, _high) in offsets.items():
                consumer.seek(tp, start)
            backlog = sum(high - start for start, high in offsets.values())
            log.info(
                "feed: %d partitions, replaying %d records of the last %.0f s (found in %.2f s)",
                len(partitions),
                backlog,
                self._replay_seconds,
                time.monotonic() - started,
            )
            targets = {tp: high for tp, (_start, high) in offsets.items()}
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                changes = []
                for tp, records in batch.items():
                    for record in records:
                        changes.extend(self._decode(tp, record.offset, record.key, record.value))
                    if tp in targets and records and records[-1].offset + 1 >= targets[tp]:
                        del targets[tp]
                if changes:
                    try:
                        self._hub.publish(changes)
                    except Exception:  # a bug: records are checked before; never end the feed
                        log.exception("feed: a batch of %d changes was not published", len(changes))
                if not self.ready.is_set():
                    if targets and not batch:
                        for tp in list(targets):
                            if await consumer.position(tp) >= targets[tp]:
                                del targets[tp]
                    if not targets:
                        log.info(
                            "feed: caught up in %.2f s (%d records)",
                            time.monotonic() - started,
                            self.records,
                        )
                        self.ready.set()
                self._metrics.series.set(self._hub.state.series_count)
                self._metrics.open_alerts.set(self._hub.state.open_alert_count)
        finally:
            await consumer.stop()

    def _decode(
        self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None
    ) -> list[Change]:
        """The changes one record causes; none for a poison record (counted, logged)."""
        self.records += 1
        state = self._hub.state
        topic = tp.topic
        try:
            if topic == self._alerts_topic:
                self._in_alerts.inc()
                return state.apply_alert(alert_item(value, self._sectors))
            self._in_kpi.inc()
            item = kpi_topic_item(value, self._sectors)
            if item is None:
                return []
            return state.apply_record(key.decode("utf-8", "replace") if key else None, item)
        except PoisonRecordError as exc:
            self._metrics.poison_records.labels(topic).inc()
            self._log.warning(
                f"poison:{topic}",
                "feed: poison record at %s[%d]@%d stepped over: %s",
                topic,
                tp.partition,
                offset,
                exc.reason,
            )
            return []
