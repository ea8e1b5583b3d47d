"""Create the contract's topics, idempotently, before any worker or producer starts.

On the embedded broker this matters twice: a topic a client merely asks metadata for
is auto-created with 4 partitions, and a Faust table whose source topic has another
partition count crashes its agent (FACTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from foundation.contract.catalog import Catalog
from foundation.contract.topics import EPOCH, INTERNAL_TOPICS, PLATFORM_TOPICS, BrokerEpoch
from foundation.errors import BrokerUnreachableError, TopicError

__all__ = [
    "TopicResult",
    "cluster_id",
    "contract_topics",
    "create_topics",
    "ensure_epoch",
    "topic_configs",
]

_TOPIC_ALREADY_EXISTS = 36

# A record may carry a 1 MiB batch; Kafka's default limit (1 MiB + 12 bytes) leaves no room
# for the record's key and headers, so the contract's topics allow 2 MiB.
TOPIC_CONFIGS: dict[str, str] = {"max.message.bytes": str(2 * 1024 * 1024)}
# The epoch's first record must outlive every retention period (ensure_epoch reads it back).
TOPIC_OVERRIDES: dict[str, dict[str, str]] = {
    EPOCH: {"retention.ms": "-1", "retention.bytes": "-1"}
}


def topic_configs(name: str, replication_factor: int) -> dict[str, str]:
    """Configs of one contract topic: with 3 replicas a write (acks=all) needs 2 in sync."""
    min_insync = max(1, min(2, replication_factor - 1))
    return {
        **TOPIC_CONFIGS,
        "min.insync.replicas": str(min_insync),
        **TOPIC_OVERRIDES.get(name, {}),
    }


@dataclass(frozen=True)
class TopicResult:
    """What happened to one topic."""

    name: str
    outcome: Literal["created", "exists"]
    partitions: int
    wanted_partitions: int

    @property
    def mismatch(self) -> bool:
        return self.partitions != self.wanted_partitions


def contract_topics(catalog: Catalog) -> list[str]:
    """One topic per catalog sector, the platform's own topics, the worker's internal ones."""
    return [*catalog.sector_topics, *PLATFORM_TOPICS, *INTERNAL_TOPICS]


def _admin(
    bootstrap_servers: str, timeout: float, kafka_options: dict[str, Any] | None
) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=max(int(timeout * 1000), 1000),
        **(kafka_options or {}),
    )


async def create_topics(
    bootstrap_servers: str,
    names: list[str],
    *,
    partitions: int,
    replication_factor: int,
    timeout: float,
    kafka_options: dict[str, Any] | None = None,
) -> list[TopicResult]:
    """Create the missing topics; report existing ones with their partition count."""
    admin = _admin(bootstrap_servers, timeout, kafka_options)
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        raise BrokerUnreachableError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        partitions,
                        replication_factor,
                        topic_configs=topic_configs(name, replication_factor),
                    )
                    for name in names
                ]
            )
            created: set[str] = set()
            for name, code, message in response.topic_errors:
                if code == 0:
                    created.add(name)
                elif code != _TOPIC_ALREADY_EXISTS:
                    raise TopicError(f"{name}: broker error {code}: {message}")
            described = await admin.describe_topics(names)
    except TimeoutError as exc:
        raise BrokerUnreachableError(f"Kafka at {bootstrap_servers} stopped answering") from exc
    except KafkaError as exc:
        raise TopicError(f"creating topics failed: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    counts = {t["topic"]: len(t["partitions"]) for t in described}
    return [
        TopicResult(
            name=name,
            outcome="created" if name in created else "exists",
            partitions=counts.get(name, 0),
            wanted_partitions=partitions,
        )
        for name in names
    ]


async def ensure_epoch(
    bootstrap_servers: str, *, timeout: float, kafka_options: dict[str, Any] | None = None
) -> BrokerEpoch:
    """The broker's epoch (first record of `ioc.internal.epoch`), written if there is none yet.

    Two processes racing here may both write; everyone reads the first record, so all agree.
    """
    epoch = await _first_epoch(
        bootstrap_servers, timeout=min(timeout, 2.0), kafka_options=kafka_options
    )
    if epoch is not None:
        return epoch
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", **(kafka_options or {})
    )
    try:
        async with asyncio.timeout(timeout):
            await producer.start()
            value = json.dumps({"epoch": uuid.uuid4().hex, "created_at": time.time()}).encode()
            await producer.send_and_wait(EPOCH, value=value, partition=0)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise BrokerUnreachableError(
            f"cannot write the epoch to {bootstrap_servers}: {exc}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
    epoch = await _first_epoch(bootstrap_servers, timeout=timeout, kafka_options=kafka_options)
    if epoch is None:
        raise TopicError(f"{EPOCH}: the epoch record just written cannot be read back")
    return epoch


async def _first_epoch(
    bootstrap_servers: str, *, timeout: float, kafka_options: dict[str, Any] | None = None
) -> BrokerEpoch | None:
    # Never ask for end offsets (wrong on the embedded broker): read from the start, briefly.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **(kafka_options or {})
    )
    try:
        async with asyncio.timeout(timeout + 10):
            await consumer.start()
            partition = TopicPartition(EPOCH, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            # A fetch answers with the high watermark: 0 means an empty topic (a fresh broker),
            # so there is no need to wait out the whole timeout for a record.
            deadline = time.monotonic() + timeout
            batch = {}
            while time.monotonic() < deadline:
                batch = await consumer.getmany(partition, timeout_ms=100, max_records=1)
                if batch or consumer.highwater(partition) == 0:
                    break
    except (TimeoutError, KafkaError, OSError) as exc:
        raise BrokerUnreachableError(
            f"cannot read {EPOCH} from {bootstrap_servers}: {exc}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    for records in batch.values():
        for record in records:
            try:
                first = json.loads(record.value or b"")
                created_at = float(first.get("created_at") or record.timestamp / 1000.0)
                return BrokerEpoch(str(first["epoch"]), int(created_at * 1000))
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
                continue
    return None


async def cluster_id(
    bootstrap_servers: str, *, timeout: float, kafka_options: dict[str, Any] | None = None
) -> str | None:
    """The cluster id the broker reports in its metadata (None if it reports none)."""
    admin = _admin(bootstrap_servers, timeout, kafka_options)
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            described = await admin.describe_cluster()
    except (TimeoutError, KafkaError, OSError) as exc:
        raise BrokerUnreachableError(
            f"cannot describe the cluster at {bootstrap_servers}: {exc}"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    found = described.get("cluster_id")
    return found if isinstance(found, str) and found else None
