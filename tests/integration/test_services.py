"""Round trips through the real embedded broker and the real PostgreSQL."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ioc.topics import create_topics

pytestmark = pytest.mark.integration


async def _consume(bootstrap: str, topic: str, group: str, expected: int) -> list[bytes]:
    """Read `expected` records as member of `group`, commit, and leave."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(values) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    values.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
        # Nothing more than what was produced arrives.
        extra = await consumer.getmany(timeout_ms=300)
        values.extend(r.value for records in extra.values() for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return values


async def test_produce_consume_with_group_and_committed_offsets(
    kafka_bootstrap: str, topic_name: str
) -> None:
    """A group member reads every record; after its commit, the group resumes after them."""
    await create_topics(
        kafka_bootstrap, [topic_name], partitions=4, replication_factor=1, timeout=10
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, linger_ms=5, request_timeout_ms=10000
    )
    await producer.start()
    try:
        for i in range(200):
            await producer.send(topic_name, key=f"src-{i % 7}".encode(), value=f"e{i}".encode())
        await producer.flush()
        first = await _consume(kafka_bootstrap, topic_name, "g-roundtrip", 200)
        assert sorted(first) == sorted(f"e{i}".encode() for i in range(200))

        for i in range(200, 210):
            await producer.send(topic_name, key=b"src-x", value=f"e{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    second = await _consume(kafka_bootstrap, topic_name, "g-roundtrip", 10)
    assert sorted(second) == sorted(f"e{i}".encode() for i in range(200, 210))

    # The committed offsets sum to everything produced (read back from the broker).
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id="g-roundtrip")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic_name, p) for p in range(4)]
        committed = [await consumer.committed(tp) or 0 for tp in partitions]
    finally:
        await consumer.stop()
    assert sum(committed) == 210


def test_postgres_round_trip(fresh_database: str) -> None:
    """Rows written in one connection are read, with Vietnamese text intact, in another."""
    with psycopg.connect(fresh_database) as conn:
        conn.execute("CREATE TABLE note (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO note VALUES (1, %s)", ("Sở Y tế Bình Phước",))
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT body FROM note WHERE id = 1").fetchone()
    assert row == ("Sở Y tế Bình Phước",)
