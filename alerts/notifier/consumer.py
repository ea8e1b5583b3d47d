"""Reads `ioc.alerts` (consumer group `ioc-notifier`) and records the deliveries it implies.

Offsets are committed by hand, only after the batch's deliveries are in the delivery log;
a crash before the commit re-reads the batch, and the log's unique key drops the repeats.
A database outage stops the consumer (no commit) until the database answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from alerts.notifier.metrics import NotifierMetrics
from alerts.notifier.store import DeliveryStore, Planner, is_database_error
from foundation.contract.alerts import AlertTransition, RecordError
from foundation.contract.topics import ALERTS
from foundation.errors import BrokerUnreachableError
from foundation.log_throttle import LogThrottle

__all__ = ["AlertConsumer"]

log = logging.getLogger(__name__)


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assigned: Callable[[int], None]) -> None:
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._on_assigned(len(assigned))


class AlertConsumer:
    """One aiokafka consumer in the notifier's group; `run` until stop."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group: str,
        session_timeout: float,
        connect_timeout: float,
        store: DeliveryStore,
        plan: Planner,
        group_wait: float,
        max_age: float,
        metrics: NotifierMetrics,
        on_recorded: Callable[[], None] = lambda: None,
        on_assigned: Callable[[int], None] = lambda _n: None,
        clock: Callable[[], float] = time.time,
        topic: str = ALERTS,
        kafka_options: dict[str, Any] | None = None,
    ) -> None:
        self._kafka_options = kafka_options or {}
        self._bootstrap = bootstrap_servers
        self._group = group
        self._session_timeout = session_timeout
        self._connect_timeout = connect_timeout
        self._store = store
        self._plan = plan
        self._group_wait = group_wait
        self._max_age = max_age
        self._metrics = metrics
        self._on_recorded = on_recorded
        self._on_assigned = on_assigned
        self._clock = clock
        self._topic = topic
        self._log = LogThrottle(log)
        self.last_ok = 0.0  # monotonic time of the last successful poll

    async def run(self, stop: asyncio.Event) -> None:
        session_ms = int(self._session_timeout * 1000)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            client_id="ioc-notifier",
            enable_auto_commit=False,
            # A new group starts at the beginning; max_age keeps old history from paging
            # anyone (and the embedded broker's "latest" is wrong anyway, FACTS.md).
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 3),
            rebalance_timeout_ms=session_ms,
            fetch_max_wait_ms=100,  # the embedded broker answers a long-poll only at its end
            request_timeout_ms=max(40_000, session_ms + 5_000),
            **self._kafka_options,
        )
        consumer.subscribe([self._topic], listener=_Assignment(self._on_assigned))
        # start() also joins the group: after a member was killed, the join waits out its
        # session, so the bound is the connection timeout plus a few sessions.
        join_timeout = self._connect_timeout + 3 * self._session_timeout
        try:
            async with asyncio.timeout(join_timeout):
                if not await _unless_stopped(consumer.start(), stop):
                    await consumer.stop()
                    return
        except (TimeoutError, KafkaError) as exc:
            await consumer.stop()
            raise BrokerUnreachableError(
                f"notifier: cannot reach the broker at {self._bootstrap} and join group "
                f"{self._group} within {join_timeout:g} s: {type(exc).__name__} {exc}".rstrip()
            ) from exc
        try:
            while not stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=250, max_records=500)
                except KafkaError as exc:  # the client reconnects by itself; say it and go on
                    log.warning("fetching ioc.alerts failed (retrying): %s", exc)
                    await _sleep_unless(stop, 1.0)
                    continue
                self.last_ok = time.monotonic()
                if not batch:
                    continue
                transitions = self._decode(batch)
                if not await self._record(transitions, stop):
                    return  # stopping: the batch is not committed, it is read again later
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                try:
                    async with asyncio.timeout(self._connect_timeout):
                        await consumer.commit(offsets)
                except (TimeoutError, KafkaError) as exc:
                    # Rebalanced away, or the broker is slow: whoever reads these records
                    # next finds their deliveries already in the log.
                    log.warning("offset commit failed (records will be re-read): %s", exc)
        finally:
            await consumer.stop()

    def _decode(self, batch: dict[TopicPartition, list[object]]) -> list[AlertTransition]:
        now = self._clock()
        transitions: list[AlertTransition] = []
        for tp, records in batch.items():
            for record in records:
                raw = getattr(record, "value", None) or b""
                try:
                    transition = AlertTransition.decode(raw)
                except RecordError as exc:
                    reason = str(exc).split(":", 1)[0]
                    self._metrics.bad_records.labels(reason).inc()
                    self._metrics.poison_records.labels(tp.topic).inc()
                    self._log.warning(
                        f"poison:{tp.topic}",
                        "poison record at %s[%d]@%s stepped over: %s",
                        tp.topic,
                        tp.partition,
                        getattr(record, "offset", "?"),
                        reason,
                    )
                    continue
                self._metrics.transitions_in.labels(transition.transition).inc()
                if now - transition.at > self._max_age:
                    self._metrics.skipped.labels("too_old").inc()
                    continue
                transitions.append(transition)
        return transitions

    async def _record(self, transitions: list[AlertTransition], stop: asyncio.Event) -> bool:
        """Record the batch, retrying while the database is down; False when stopping first."""
        delay = 0.5
        while True:
            try:
                added = await self._store.record(
                    transitions, self._plan, now=self._clock(), group_wait=self._group_wait
                )
            except Exception as exc:
                if not is_database_error(exc):
                    raise
                self._metrics.database_errors.labels("record").inc()
                log.warning("cannot record deliveries (retrying in %.1f s): %s", delay, exc)
                if await _sleep_unless(stop, delay):
                    return False
                delay = min(delay * 2, 30.0)
                continue
            for row in added:
                if row.status == "held":
                    self._metrics.notifications.labels(row.channel, "held").inc()
            if any(row.status == "pending" for row in added):
                self._on_recorded()
            return True


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until stop; True when stopping."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run work unless stop comes first (then cancel it); True when work finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()  # raises what start() raised
    return True
