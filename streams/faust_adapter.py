"""Everything the worker changes in Faust, in one place, through Faust's extension points.

1. **Offsets follow the checkpoints** (public API). The stateful agents read with manual
   acknowledgement (`Stream.noack_take`) and acknowledge a record (`Event.ack`) only once a
   durable checkpoint covers it; Faust commits what is acknowledged, so its committed offset
   never runs ahead of a checkpoint. After an assignment Faust resumes at the committed
   offset, at or before the checkpoint; the stages skip (and acknowledge) what their restored
   state already covers, so no seek is needed. Records fetched under an earlier consumer
   generation (before a rebalance) are dropped unacknowledged: Faust delivers them again.
2. **A shorter fetch wait** (a substituted transport). Faust builds its consumer with
   `fetch_max_wait_ms=1500` and has no setting for it. Kafka answers a waiting fetch as soon
   as data arrives; the embedded Tansu broker only when the wait ends, so each hop of the
   pipeline could add up to 1.5 s (measured: a record sent every 0.37 s to an idle consumer
   arrived 418 ms late on median with Faust's transport, 25 ms with this one). The transport
   `ioc://` (registered in pyproject.toml under the `faust.transports` entry points, Faust's
   documented way to add a transport) builds the same consumer with a 100 ms wait. Faust
   offers no public hook for the consumer's arguments, so its two factory methods are
   overridden here (`_new_consumer_thread`, `_create_worker_consumer`): the arguments are
   restated from faust-streaming 0.15 with public configuration only, no private attribute
   is read or written, and nothing is patched. Re-check them when faust-streaming changes
   (pyproject pins it below 0.16). The transport is used only where it helps: `ioc worker`
   picks it on the embedded broker and Faust's own `kafka://` transport on Kafka
   (`IOC_WORKER_TRANSPORT`), so a cluster runs Faust unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiokafka
import faust
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from faust.exceptions import ImproperlyConfigured
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = [
    "FETCH_MAX_WAIT_MS",
    "TRANSPORT_SCHEME",
    "Delivered",
    "Transport",
    "acknowledge",
    "broker_urls",
    "delivered_batches",
    "is_current",
]

FETCH_MAX_WAIT_MS = 100
TRANSPORT_SCHEME = "ioc"


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with a consumer that waits at most FETCH_MAX_WAIT_MS."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        conf = self.app.conf
        if conf.broker_session_timeout > conf.broker_request_timeout:
            raise ImproperlyConfigured(
                f"broker_session_timeout={conf.broker_session_timeout} cannot be greater than "
                f"broker_request_timeout={conf.broker_request_timeout}"
            )
        # As Faust: its own assignor only where tables need it (the worker has none).
        tables = conf.table_standby_replicas > 0 or bool(self.app.tables.changelog_topics)
        assignor = self.app.assignor if tables else RoundRobinPartitionAssignor
        transactional = self.consumer.in_transaction
        return aiokafka.AIOKafkaConsumer(
            client_id=conf.broker_client_id,
            group_id=conf.id,
            group_instance_id=conf.consumer_group_instance_id,
            bootstrap_servers=faust_aiokafka.server_list(transport.url, transport.default_port),
            partition_assignment_strategy=[assignor],
            enable_auto_commit=False,
            auto_offset_reset=conf.consumer_auto_offset_reset,
            max_poll_records=conf.broker_max_poll_records,
            max_poll_interval_ms=int((conf.broker_max_poll_interval or 0) * 1000.0),
            max_partition_fetch_bytes=conf.consumer_max_fetch_size,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            check_crcs=conf.broker_check_crcs,
            session_timeout_ms=int(conf.broker_session_timeout * 1000.0),
            rebalance_timeout_ms=int(conf.broker_rebalance_timeout * 1000.0),
            heartbeat_interval_ms=int(conf.broker_heartbeat_interval * 1000.0),
            isolation_level="read_committed" if transactional else "read_uncommitted",
            metadata_max_age_ms=conf.consumer_metadata_max_age_ms,
            connections_max_idle_ms=conf.consumer_connections_max_idle_ms,
            **faust_aiokafka.credentials_to_aiokafka_auth(
                conf.broker_credentials, conf.ssl_context
            ),
        )


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the short fetch wait; broker URLs `ioc://host:port`."""

    Consumer = _Consumer


def broker_urls(bootstrap_servers: str, *, short_fetch_wait: bool) -> list[str]:
    """Faust broker URLs for `host:port[,host:port…]`: this module's transport with the short
    fetch wait, or Faust's own aiokafka transport (`kafka://`) unchanged."""
    scheme = TRANSPORT_SCHEME if short_fetch_wait else "kafka"
    return [f"{scheme}://{host.strip()}" for host in bootstrap_servers.split(",")]


@dataclass(frozen=True, slots=True)
class Delivered:
    """A record as the stages see it; `token` is the Faust event to acknowledge."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None
    token: Any


async def delivered_batches(
    app: faust.App, stream: Any, *, max_records: int, linger: float
) -> AsyncIterator[list[Delivered]]:
    """The agent's records in batches of up to `max_records`, waiting at most `linger` s.

    Nothing is acknowledged here. Records fetched under an earlier consumer generation are
    dropped unacknowledged (Faust delivers them again from the committed offset).
    """
    async for events in stream.noack_take(max_records, within=linger):
        generation = app.consumer_generation_id
        batch = []
        for event in events:
            message = event.message
            if message.generation_id != generation:
                continue
            batch.append(
                Delivered(
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    message.value if message.value is not None else b"",
                    message.timestamp,
                    event,
                )
            )
        if batch:
            yield batch


def is_current(app: faust.App, token: Any) -> bool:
    """The record behind `token` was fetched under the consumer's current generation."""
    return bool(token.message.generation_id == app.consumer_generation_id)


def acknowledge(token: Any) -> None:
    """Acknowledge a delivered record: Faust may commit past it."""
    token.ack()
