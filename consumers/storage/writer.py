"""`ioc writer`: the stream's topics into PostgreSQL, in batches, losing and doubling nothing.

    writer = StorageWriter(config, catalog=catalog, policy=policy, metrics=metrics)
    await writer.run(stop)

A loop of: fetch records (consumer group `ioc-writer`, no auto-commit) until a batch is full or
its linger is over → decode them (`rows.py`) → write the batch in one transaction
(`sink.py`) → only then commit the Kafka offsets. A crash between the two commits re-reads
records whose rows are stored; the upserts make that harmless.

When the database fails, the writer pauses its partitions (so nothing more is fetched, while
staying in the group) and retries the same batch with exponential backoff until it succeeds
or the writer is stopped (then nothing is committed and the next owner re-reads the batch).
A row the database refuses outright (bad data, not a failure) is found by writing the batch
row by row, counted and left out; its neighbours are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from psycopg.rows import TupleRow

from consumers.migrations import StoragePath
from consumers.storage.maintenance import (
    apply_timescale_policies,
    read_storage_path,
    run_maintenance,
)
from consumers.storage.metrics import WriterMetrics
from consumers.storage.policy import StoragePolicy
from consumers.storage.rows import RecordDecoder, RowBatch
from consumers.storage.sink import StorageSink, WriteResult
from foundation.contract.catalog import Catalog
from foundation.contract.envelope import ContractIndex
from foundation.contract.topics import ALERTS, DEADLETTER, KPI, event_topic
from foundation.errors import BrokerUnreachableError, DatabaseError
from foundation.log_throttle import LogThrottle
from foundation.probes import redact_url

__all__ = ["StorageWriter", "WriterConfig", "writer_topics"]

log = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[TupleRow]

# Refused by the database for what the rows hold: retrying the same rows cannot help.
# (ProgramLimitExceeded: e.g. an index entry too large; psycopg files it as operational.)
_DATA_ERRORS = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """Where to read and write, and how to batch and retry (from the settings)."""

    bootstrap_servers: str
    database_url: str
    group: str = "ioc-writer"
    batch_rows: int = 5000
    linger: float = 0.5
    maintenance_interval: float = 30.0
    retry_initial: float = 0.2
    retry_max: float = 10.0
    session_timeout: float = 10.0
    connect_timeout: float = 10.0
    write_timeout: float = 60.0
    kafka_options: dict[str, Any] | None = None  # foundation.kafka_client.kafka_client_options


def writer_topics(catalog: Catalog) -> list[str]:
    """Every topic the writer stores: the sectors' events, KPI points, alerts, dead letters."""
    return [event_topic(sector.id) for sector in catalog.sectors] + [KPI, ALERTS, DEADLETTER]


class StorageWriter:
    """Consumes the writer's topics into the database (see the module docstring)."""

    def __init__(
        self,
        config: WriterConfig,
        *,
        catalog: Catalog,
        policy: StoragePolicy,
        metrics: WriterMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._topics = writer_topics(catalog)
        self._decoder = RecordDecoder(ContractIndex(catalog), clock=clock)
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self._conn: Connection | None = None
        self._sink: StorageSink | None = None
        self._carry: list[Any] = []  # records fetched while paused, for the next batch
        self._committed: dict[TopicPartition, int] = {}
        self._lag_topics: set[str] = set()
        self._database_ok = False
        self._running = False
        self._poison_log = LogThrottle(log)
        self.path: StoragePath | None = None
        self.ready = asyncio.Event()

    def healthy(self) -> bool:
        """For /healthz: consuming, and the last database write succeeded."""
        return self._running and self._database_ok

    async def run(self, stop: asyncio.Event) -> None:
        """Until stop is set: read, write, commit."""
        conn = await self._connection_until(stop)
        if conn is None:
            return
        path = await read_storage_path(conn)
        if path is None:
            raise DatabaseError("the storage tables do not exist: run `ioc db migrate` first")
        self.path = path
        self._metrics.storage_path.labels(path).set(1)
        if path == "timescaledb":
            await apply_timescale_policies(conn, self._policy)
        self._sink = StorageSink(path=path, policy=self._policy, clock=self._clock)
        self._database_ok = True
        self._metrics.database_up.set(1)
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._config.bootstrap_servers,
            group_id=self._config.group,
            client_id="ioc-writer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self._config.session_timeout * 1000),
            heartbeat_interval_ms=max(int(self._config.session_timeout * 1000 / 3), 100),
            # The embedded broker answers a waiting fetch only at its max wait (README), and
            # each answer with data costs it in proportion to all it holds: the
            # writer lingers half a second anyway, so it fetches at that pace.
            fetch_max_wait_ms=500,
            request_timeout_ms=int(max(self._config.connect_timeout, 5) * 4000),
            **(self._config.kafka_options or {}),
        )
        try:
            async with asyncio.timeout(max(self._config.connect_timeout, 5) * 3):
                await consumer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise BrokerUnreachableError(
                f"cannot reach Kafka at {self._config.bootstrap_servers}: {exc}"
            ) from exc
        maintenance = asyncio.create_task(self._maintenance_loop(stop), name="writer-maintenance")
        self._running = True
        self.ready.set()
        log.info("writer on %d topics, storage path %s", len(self._topics), path)
        try:
            while not stop.is_set():
                batch, offsets = await self._collect(consumer, stop)
                if not offsets:
                    continue
                if not await self._write(consumer, batch, stop):
                    break  # stopped while the database was failing: commit nothing
                await self._commit(consumer, offsets)
                self._update_lag(consumer)
        finally:
            self._running = False
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._config.connect_timeout):
                    await consumer.stop()
            await self._drop_connection()

    async def _collect(
        self, consumer: AIOKafkaConsumer, stop: asyncio.Event
    ) -> tuple[RowBatch, dict[TopicPartition, int]]:
        """Records until the batch holds batch_rows rows or its linger has passed."""
        batch = RowBatch()
        offsets: dict[TopicPartition, int] = {}
        carried, self._carry = self._carry, []
        self._decode(carried, batch, offsets)
        loop = asyncio.get_running_loop()
        first = loop.time() if offsets else None
        while not stop.is_set() and batch.rows < self._config.batch_rows:
            if first is None:
                wait = 0.2  # idle: wake up often enough to notice stop
            else:
                wait = self._config.linger - (loop.time() - first)
                if wait <= 0:
                    break
            fetched = await consumer.getmany(
                timeout_ms=max(int(wait * 1000), 1), max_records=self._config.batch_rows
            )
            for records in fetched.values():
                self._decode(records, batch, offsets)
            if first is None and offsets:
                first = loop.time()
        return batch, offsets

    def _decode(
        self, records: list[Any], batch: RowBatch, offsets: dict[TopicPartition, int]
    ) -> None:
        for record in records:
            self._metrics.records_in.labels(record.topic).inc()
            try:
                poison = self._decoder.add(
                    batch,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    timestamp_ms=record.timestamp if record.timestamp is not None else -1,
                )
            except Exception:  # a bug must not turn one record into a crash loop
                if self._poison_log.warning(
                    f"bug:{record.topic}",
                    "cannot decode %s[%d]@%d (stepped over)",
                    record.topic,
                    record.partition,
                    record.offset,
                ):
                    log.exception("the decoder's error")
                batch.skipped["decode_error"] += 1
                poison = "decode_error"
            if poison is not None:
                self._metrics.poison_records.labels(record.topic).inc()
                self._poison_log.warning(
                    f"poison:{record.topic}",
                    "poison record at %s[%d]@%d stepped over: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    poison,
                )
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)

    async def _write(
        self, consumer: AIOKafkaConsumer, batch: RowBatch, stop: asyncio.Event
    ) -> bool:
        """Write batch, retrying until it is stored (True) or stop is set (False)."""
        attempt = 0
        while True:
            try:
                try:
                    await self._write_once(batch)
                except _DATA_ERRORS as exc:
                    log.warning("a batch was refused (%s): writing it row by row", _first_line(exc))
                    await self._write_row_by_row(batch)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                if self._database_ok or attempt % 10 == 0:
                    log.warning("database write failed (%s), retrying", _first_line(exc))
                self._set_database_ok(False)
                self._metrics.retries.labels(_retry_reason(exc)).inc()
                await self._drop_connection()
                attempt += 1
                delay = self._config.retry_initial * 2 ** min(attempt - 1, 20)
                if not await self._wait_paused(consumer, min(delay, self._config.retry_max), stop):
                    return False
                continue
            if not self._database_ok:
                log.info("database writes work again after %d retries", attempt)
            self._set_database_ok(True)
            if consumer.paused():
                consumer.resume(*consumer.paused())
            return True

    async def _write_once(self, batch: RowBatch) -> WriteResult:
        if self._sink is None:
            raise RuntimeError("the writer is not started")
        conn = await self._connection()
        started = time.perf_counter()
        async with asyncio.timeout(self._config.write_timeout):
            result = await self._sink.write(conn, batch)
        self._metrics.write_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_rows.observe(batch.rows)
        self._count(batch, result)
        return result

    async def _write_row_by_row(self, batch: RowBatch) -> None:
        self._count_skips(batch)
        for single in batch.split():
            try:
                await self._write_once(single)
            except _DATA_ERRORS as exc:
                self._metrics.records_skipped.labels("db_rejected").inc()
                log.warning("the database refused a row, left out: %s", _first_line(exc))

    def _count(self, batch: RowBatch, result: WriteResult) -> None:
        for table, count in result.written.items():
            if count:
                self._metrics.rows_written.labels(table).inc(count)
        for table, count in result.unchanged.items():
            if count:
                self._metrics.rows_unchanged.labels(table).inc(count)
        if result.events_replaced:
            self._metrics.events_replaced.inc(result.events_replaced)
        for name in result.partitions_created:
            self._metrics.partitions_created.labels(name.rsplit("_p", 1)[0]).inc()
        self._count_skips(batch)

    def _count_skips(self, batch: RowBatch) -> None:
        for reason, count in batch.rejected.items():
            self._metrics.events_rejected.labels(reason).inc(count)
        for reason, count in batch.skipped.items():
            self._metrics.records_skipped.labels(reason).inc(count)
        # Counted once: a retried or split batch must not count them again.
        batch.rejected.clear()
        batch.skipped.clear()

    async def _wait_paused(
        self, consumer: AIOKafkaConsumer, delay: float, stop: asyncio.Event
    ) -> bool:
        """Wait delay seconds with every partition paused, still polling (so the group keeps
        us); records of partitions assigned meanwhile are kept for the next batch."""
        deadline = asyncio.get_running_loop().time() + delay
        while not stop.is_set():
            consumer.pause(*consumer.assignment())
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return True
            fetched = await consumer.getmany(timeout_ms=max(int(min(remaining, 0.5) * 1000), 1))
            for records in fetched.values():
                self._carry.extend(records)
        return False

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        assigned = consumer.assignment()
        owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not owned:
            return
        try:
            async with asyncio.timeout(max(self._config.connect_timeout, 5) * 3):
                await consumer.commit(owned)
        except (KafkaError, TimeoutError) as exc:
            # The rows are stored; whoever owns the partitions next re-reads them harmlessly.
            self._metrics.commit_failures.inc()
            log.warning("offset commit failed (%s); the records will be re-read", exc)
            return
        self._committed.update(owned)

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        lag: dict[str, int] = dict.fromkeys(self._lag_topics, 0)
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            done = self._committed.get(tp)
            if high is not None and done is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(high - done, 0)
        for topic, value in lag.items():
            self._metrics.lag.labels(topic).set(value)
        self._lag_topics = set(lag)

    async def _maintenance_loop(self, stop: asyncio.Event) -> None:
        if self.path != "plain-postgresql":
            return  # TimescaleDB's jobs do it
        conn: Connection | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = await self._connect()
                    report = await run_maintenance(
                        conn, path=self.path, policy=self._policy, now=self._clock()
                    )
                    for name in report.created:
                        self._metrics.partitions_created.labels(name.rsplit("_p", 1)[0]).inc()
                    for name in report.dropped:
                        self._metrics.partitions_dropped.labels(name.rsplit("_p", 1)[0]).inc()
                        if self._sink is not None:
                            self._sink.known_partitions.discard(name)
                    self._metrics.rollup_hours.inc(report.rollup_hours)
                    self._metrics.event_ids_pruned.inc(report.event_ids_pruned)
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    self._metrics.maintenance_failures.inc()
                    log.warning("storage maintenance failed (%s); next try in %g s",
                                _first_line(exc), self._config.maintenance_interval)  # fmt: skip
                    if conn is not None:
                        await _close(conn)
                    conn = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._config.maintenance_interval):
                        await stop.wait()
        finally:  # also when cancelled at stop, in the middle of a run
            if conn is not None:
                await _close(conn)

    def _set_database_ok(self, ok: bool) -> None:
        self._database_ok = ok
        self._metrics.database_up.set(1 if ok else 0)

    async def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        return self._conn

    async def _connection_until(self, stop: asyncio.Event) -> Connection | None:
        """The first connection: the database may still be starting."""
        attempt = 0
        while not stop.is_set():
            try:
                return await self._connection()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                attempt += 1
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("cannot reach the database (%s); retrying", _first_line(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(0.2 * attempt, self._config.retry_max)):
                        await stop.wait()
        return None

    async def _connect(self) -> Connection:
        timeout = self._config.connect_timeout
        async with asyncio.timeout(timeout):
            return await psycopg.AsyncConnection.connect(
                self._config.database_url,
                autocommit=True,
                connect_timeout=max(int(timeout), 1),
                # A server that vanished (no RST) is noticed within ~25 s, not hours.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                application_name="ioc-writer",
            )

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close(conn)

    def __repr__(self) -> str:
        return f"StorageWriter({redact_url(self._config.database_url)}, group={self._config.group})"


async def _close(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await conn.close()


def _retry_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
        return "unavailable"
    return "error"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
