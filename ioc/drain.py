"""Where each reader of the broker stands, for a drain before a broker roll.

High watermarks come from a consumer's fetch responses (`highwater()`), never from
ListOffsets: the embedded broker answers "latest" with about the base offset of the last
record batch (FACTS.md). The worker's positions are the offsets of its checkpoints (it commits
none to Kafka); the writer's and the notifier's are their groups' committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from foundation.errors import BrokerUnreachableError, DatabaseUnreachableError
from ioc.service_policy import TopicPartition as Tp

__all__ = ["Positions"]

log = logging.getLogger(__name__)


class Positions:
    """High watermarks of topics and the positions of the worker, the writer and the notifier."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        database_url: str,
        timeout: float,
        kafka_options: dict[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._database_url = database_url
        self._timeout = timeout
        self._options = kafka_options or {}
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._assigned: set[TopicPartition] = set()

    async def __aenter__(self) -> Positions:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=512 * 1024,  # buffered per partition while it reads
            **self._options,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            request_timeout_ms=max(int(self._timeout * 1000), 1000),
            **self._options,
        )
        try:
            async with asyncio.timeout(self._timeout):
                await consumer.start()
                await admin.start()
        except (TimeoutError, KafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
            raise BrokerUnreachableError(f"cannot reach the broker: {exc!r}") from exc
        self._consumer, self._admin = consumer, admin
        return self

    async def __aexit__(self, *_exc: object) -> None:
        consumer, admin = self._consumer, self._admin
        self._consumer = self._admin = None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Every partition of these topics (they must exist: asking would create them)."""
        if self._consumer is None:
            raise RuntimeError("Positions is not started")
        found: list[TopicPartition] = []
        for topic in topics:
            partitions = self._consumer.partitions_for_topic(topic)
            if partitions is None:
                await self._consumer.topics()  # a metadata refresh
                partitions = self._consumer.partitions_for_topic(topic) or set()
            found += [TopicPartition(topic, p) for p in sorted(partitions)]
        return found

    async def high_watermarks(
        self, topics: Iterable[str], *, start_at: Mapping[Tp, int] | None = None
    ) -> dict[Tp, int]:
        """Each partition's high watermark as a fetch response after this call began gave it.

        The consumer reads (and drops) what lies between its position and the end; a
        partition it reads for the first time starts at `start_at` (a reader's position:
        little to read) or 0.
        """
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("Positions is not started")
        wanted = await self.partitions(topics)
        new = [tp for tp in wanted if tp not in self._assigned]
        if new:
            self._assigned.update(new)
            consumer.assign(sorted(self._assigned, key=lambda tp: (tp.topic, tp.partition)))
            for tp in self._assigned:
                if tp in new:
                    consumer.seek(tp, (start_at or {}).get((tp.topic, tp.partition), 0))
        since_ms = int(time.time() * 1000)
        fresh: dict[Tp, int] = {}
        try:
            await self._read_to_end(consumer, wanted, since_ms, fresh)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise BrokerUnreachableError(
                f"no high watermark for {len(wanted) - len(fresh)} partitions within "
                f"{self._timeout:g} s: {exc!r}"
            ) from exc
        return fresh

    async def _read_to_end(
        self,
        consumer: AIOKafkaConsumer,
        wanted: list[TopicPartition],
        since_ms: int,
        fresh: dict[Tp, int],
    ) -> None:
        async with asyncio.timeout(self._timeout):
            while len(fresh) < len(wanted):
                await consumer.getmany(*wanted, timeout_ms=100, max_records=100_000)
                for tp in wanted:
                    stamp = consumer.last_poll_timestamp(tp)
                    high = consumer.highwater(tp)
                    if stamp is not None and stamp >= since_ms and high is not None:
                        position = await consumer.position(tp)
                        if position >= high:  # nothing buffered: the answer is the latest
                            fresh[(tp.topic, tp.partition)] = high

    async def committed(self, group: str, topics: Iterable[str]) -> dict[Tp, int]:
        """The group's committed offsets for these topics (partitions without one: absent)."""
        if self._admin is None:
            raise RuntimeError("Positions is not started")
        partitions = await self.partitions(topics)
        try:
            async with asyncio.timeout(self._timeout):
                offsets = await self._admin.list_consumer_group_offsets(
                    group, partitions=partitions
                )
        except (TimeoutError, KafkaError, OSError) as exc:
            raise BrokerUnreachableError(f"cannot read group {group}'s offsets: {exc!r}") from exc
        return {
            (tp.topic, tp.partition): meta.offset
            for tp, meta in offsets.items()
            if meta is not None and meta.offset >= 0
        }

    async def checkpoints(self, worker_group: str, *, since: float) -> dict[Tp, int]:
        """The worker's checkpointed offsets taken since `since` (unix time: the epoch's start).

        Older rows hold offsets of an earlier broker epoch's topics: left out.
        """
        try:
            async with asyncio.timeout(self._timeout):
                conn = await psycopg.AsyncConnection.connect(
                    self._database_url,
                    autocommit=True,
                    connect_timeout=max(int(self._timeout), 1),
                    application_name="ioc-drain",
                )
                async with conn:
                    cur = await conn.execute(
                        "SELECT topic, partition, next_offset FROM worker_checkpoints"
                        " WHERE consumer LIKE %s AND taken_at >= %s",
                        (f"{worker_group}/%", datetime.fromtimestamp(since, UTC)),
                    )
                    rows = await cur.fetchall()
        except (TimeoutError, psycopg.Error, OSError) as exc:
            raise DatabaseUnreachableError(f"cannot read the worker's checkpoints: {exc}") from exc
        return {(str(topic), int(partition)): int(offset) for topic, partition, offset in rows}
