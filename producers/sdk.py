"""Publisher SDK for department systems: validate, batch per source, send, report per event.

    async with Publisher(bootstrap_servers="127.0.0.1:9092", catalog=load_catalog()) as pub:
        report = await pub.send({"event_id": "…", "source": "his-bvdk-tinh", …})

`publish()` returns at once with a future per event; events of one source that arrive
within `linger` travel as one Kafka record (a JSON array, ≤ 1,000 events, ≤ 1 MiB).
With `linger=0` each event is its own record (a JSON object).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from foundation.contract.catalog import Catalog
from foundation.contract.envelope import (
    MAX_BATCH_EVENTS,
    MAX_RECORD_BYTES,
    ContractIndex,
    Event,
    Rejection,
    validate_event,
)
from foundation.contract.topics import event_topic
from foundation.errors import BrokerUnreachableError

__all__ = ["DeliveryReport", "Publisher"]

log = logging.getLogger(__name__)

Status = Literal["delivered", "rejected", "failed"]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The fate of one event: where it landed, or why it did not."""

    event_id: str | None
    source: str | None
    status: Status
    reason: str | None = None
    detail: str = ""
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    index: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "delivered"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event_id": self.event_id, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
            out["detail"] = self.detail
        if self.topic is not None:
            out.update(topic=self.topic, partition=self.partition, offset=self.offset)
            if self.index is not None:
                out["index"] = self.index
        return out


@dataclass
class _Pending:
    """Events of one source waiting for their record to be sent."""

    topic: str
    encoded: list[bytes] = field(default_factory=list)
    futures: list[asyncio.Future[DeliveryReport]] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    size: int = 2  # the brackets of the JSON array
    timer: asyncio.TimerHandle | None = None


def _encode(obj: Mapping[str, Any]) -> bytes | None:
    """The event as it travels (UTF-8 JSON, finite numbers), or None when it cannot be."""
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode()
    except (ValueError, TypeError, RecursionError):  # NaN, a surrogate, a non-JSON value
        return None


def _validate(
    obj: dict[str, Any], index: ContractIndex, *, now: float, position: int | None = None
) -> tuple[Event, bytes] | Rejection:
    """The envelope's verdict and the event's bytes; an event the envelope accepts but JSON
    cannot carry (a value that is no JSON type, nesting too deep) is `bad_field:data`."""
    encoded = _encode(obj)
    outcome = validate_event(
        obj, index, now=now, size=len(encoded) if encoded is not None else 0, position=position
    )
    if isinstance(outcome, Rejection):
        return outcome
    if encoded is None:
        return Rejection(
            "bad_field:data", position, "not encodable as JSON", outcome.source, outcome.event_id
        )
    return outcome, encoded


class Publisher:
    """Validates before sending, keys by source, batches per source, retries with backoff."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        catalog: Catalog,
        # batching
        linger: float = 0.020,
        max_batch_events: int = MAX_BATCH_EVENTS,
        max_batch_bytes: int = MAX_RECORD_BYTES,
        max_pending_events: int = 100_000,
        # delivery
        retries: int = 5,
        retry_backoff: float = 0.2,
        request_timeout: float = 30.0,
        acks: Literal[0, 1, "all"] = "all",
        client_id: str = "ioc-publisher",
        # security (foundation.kafka_client.kafka_client_options)
        kafka_options: dict[str, Any] | None = None,
        compression: Literal["gzip"] | None = None,
    ) -> None:
        if (
            not 0 < max_batch_events <= MAX_BATCH_EVENTS
            or not 0 < max_batch_bytes <= MAX_RECORD_BYTES
        ):
            raise ValueError("batch limits are at most 1,000 events and 1 MiB")
        self._index = ContractIndex(catalog)
        self._linger = linger
        self._max_events = max_batch_events
        self._max_bytes = max_batch_bytes
        self._retries = retries
        self._backoff = retry_backoff
        self._bootstrap = bootstrap_servers
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks=acks,
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=2 * MAX_RECORD_BYTES,
            request_timeout_ms=int(request_timeout * 1000),
            compression_type=compression,
            **(kafka_options or {}),
        )
        self._pending: dict[str, _Pending] = {}
        self._capacity = asyncio.Semaphore(max_pending_events)
        self._sends: set[asyncio.Task[None]] = set()
        self._started = False

    async def start(self) -> None:
        """Connect; BrokerUnreachableError (with the producer closed) when no broker answers."""
        try:
            await self._producer.start()
        except (KafkaError, OSError) as exc:
            await self._producer.stop()  # a producer that failed to start is still open
            why = "no broker answers" if isinstance(exc, KafkaConnectionError) else repr(exc)
            raise BrokerUnreachableError(f"cannot reach Kafka at {self._bootstrap}: {why}") from exc
        self._started = True

    async def stop(self) -> None:
        """Send what is pending, wait for every delivery, close the connection."""
        if not self._started:
            return
        await self.flush()
        await self._producer.stop()
        self._started = False

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def publish(self, event: Mapping[str, Any]) -> asyncio.Future[DeliveryReport]:
        """Validate and queue one event; the future resolves when its record is acknowledged."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[DeliveryReport] = loop.create_future()
        verdict = _validate(dict(event), self._index, now=time.time())
        if isinstance(verdict, Rejection):
            future.set_result(
                DeliveryReport(
                    verdict.event_id, verdict.source, "rejected", verdict.reason, verdict.detail
                )
            )
            return future
        outcome, encoded = verdict
        await self._capacity.acquire()
        future.add_done_callback(lambda _f: self._capacity.release())
        source = outcome.source
        if self._linger <= 0:
            batch = _Pending(topic=event_topic(outcome.sector), encoded=[encoded], futures=[future])
            batch.event_ids.append(outcome.event_id)
            self._launch(source, batch, single=True)
            return future
        pending = self._pending.get(source)
        if pending is not None and (
            len(pending.encoded) >= self._max_events
            or pending.size + len(encoded) + 1 > self._max_bytes
        ):
            self._send_now(source)
            pending = None
        if pending is None:
            pending = _Pending(topic=event_topic(outcome.sector))
            pending.timer = loop.call_later(self._linger, self._send_now, source)
            self._pending[source] = pending
        pending.encoded.append(encoded)
        pending.futures.append(future)
        pending.event_ids.append(outcome.event_id)
        pending.size += len(encoded) + 1
        return future

    async def send(self, event: Mapping[str, Any]) -> DeliveryReport:
        """Publish one event and wait for its report."""
        return await (await self.publish(event))

    async def send_many(self, events: Iterable[Mapping[str, Any]]) -> list[DeliveryReport]:
        """Publish events (batched per source) and wait for every report, in order."""
        futures = [await self.publish(event) for event in events]
        return list(await asyncio.gather(*futures))

    async def send_record(self, events: Sequence[Mapping[str, Any]]) -> list[DeliveryReport]:
        """Validate events of one source and send the valid ones as exactly one record.

        This is what the HTTP ingest API does with a posted batch: one Kafka record per
        request and source, reports in the order of `events` (rejections keep their index).
        """
        loop = asyncio.get_running_loop()
        now = time.time()
        reports: list[DeliveryReport | None] = [None] * len(events)
        by_source: dict[str, _Pending] = {}
        positions: dict[str, list[int]] = {}
        for position, event in enumerate(events):
            verdict = _validate(dict(event), self._index, now=now, position=position)
            if isinstance(verdict, Rejection):
                reports[position] = DeliveryReport(
                    verdict.event_id, verdict.source, "rejected", verdict.reason, verdict.detail,
                    index=position,
                )  # fmt: skip
                continue
            outcome, encoded = verdict
            pending = by_source.setdefault(
                outcome.source, _Pending(topic=event_topic(outcome.sector))
            )
            pending.encoded.append(encoded)
            pending.futures.append(loop.create_future())
            pending.event_ids.append(outcome.event_id)
            pending.size += len(encoded) + 1
            positions.setdefault(outcome.source, []).append(position)
        for source, pending in by_source.items():
            if pending.size > self._max_bytes or len(pending.encoded) > MAX_BATCH_EVENTS:
                for future, event_id in zip(pending.futures, pending.event_ids, strict=True):
                    future.set_result(
                        DeliveryReport(
                            event_id, source, "rejected", "too_large", "batch over 1 MiB"
                        )
                    )
            else:
                await self._deliver(source, pending, single=False)
            for position, future in zip(positions[source], pending.futures, strict=True):
                reports[position] = future.result()
        return [report for report in reports if report is not None]

    async def flush(self) -> None:
        """Send every pending batch now and wait until all sends finished."""
        for source in list(self._pending):
            self._send_now(source)
        while self._sends:
            await asyncio.gather(*list(self._sends), return_exceptions=True)

    def _send_now(self, source: str) -> None:
        pending = self._pending.pop(source, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        self._launch(source, pending, single=False)

    def _launch(self, source: str, pending: _Pending, *, single: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(source, pending, single))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _deliver(self, source: str, pending: _Pending, single: bool) -> None:
        value = pending.encoded[0] if single else b"[" + b",".join(pending.encoded) + b"]"
        error = ""
        for attempt in range(self._retries + 1):
            try:
                metadata = await (
                    await self._producer.send(pending.topic, value=value, key=source.encode())
                )
            except KafkaError as exc:
                error = f"{type(exc).__name__}: {exc}"
                delay = self._backoff * 2**attempt
                log.warning(
                    "send to %s failed (%s); retry %d in %.1f s",
                    pending.topic,
                    error,
                    attempt + 1,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            for index, (future, event_id) in enumerate(
                zip(pending.futures, pending.event_ids, strict=True)
            ):
                if not future.done():
                    future.set_result(
                        DeliveryReport(
                            event_id,
                            source,
                            "delivered",
                            topic=metadata.topic,
                            partition=metadata.partition,
                            offset=metadata.offset,
                            index=None if single else index,
                        )
                    )
            return
        for future, event_id in zip(pending.futures, pending.event_ids, strict=True):
            if not future.done():
                future.set_result(DeliveryReport(event_id, source, "failed", "send_failed", error))
