"""Gateway cold start: the writer's tables in real PostgreSQL, then the Kafka replay on top."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

import psycopg
import pytest

from consumers.migrations import migrate
from ioc.topics import create_topics
from tests.integration.test_gateway import is_type, subscribe
from tests.plugins.gateway import (
    GatewayTopics,
    Producer,
    alert_transition,
    kpi_point,
    make_token,
)

pytestmark = pytest.mark.integration

SERIES = "health.bed_occupancy_pct|*"


async def default_kpi_partition(conn: psycopg.AsyncConnection[Any]) -> None:
    """Plain PostgreSQL path: the writer's upkeep creates weekly partitions; a default
    partition stands in for them here."""
    cursor = await conn.execute("SELECT relkind FROM pg_class WHERE relname = 'kpi_points'")
    row = await cursor.fetchone()
    if row is not None and row[0] == "p":
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS kpi_points_test PARTITION OF kpi_points DEFAULT"
        )


async def insert_rows(url: str, *, now: float, window: float) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await default_kpi_partition(conn)
        for start, value, revision, final in (
            (window - 900, 85.0, 2, True),
            (window, 88.0, 1, False),
        ):
            await conn.execute(
                "INSERT INTO kpi_points (series, kpi, sector, grp, window_start, window_end, value,"
                " sample_count, final, revision, emitted_at) VALUES (%s,"
                " 'health.bed_occupancy_pct', 'health', '*', to_timestamp(%s), to_timestamp(%s),"
                " %s, 12, %s, %s,"
                " to_timestamp(%s))",
                # Emission times must differ even within a minute of a window boundary
                # (the sparkline keeps one sample per time): 120 s and 60 s ago at the latest.
                (
                    SERIES,
                    start,
                    start + 900,
                    value,
                    final,
                    revision,
                    min(now - (120 if start < window else 60), start + 900),
                ),
            )
        for alert in (
            alert_transition(
                "fp-open",
                seq=2,
                state="acknowledged",
                transition="ack",
                acknowledged_by="Trần Thị Bình",
            ),
            alert_transition("fp-resolved", seq=3, state="resolved", transition="resolve"),
        ):
            await conn.execute(
                "INSERT INTO alerts_current (fingerprint, seq, state, severity, sector, rule,"
                " started_at, updated_at, record) VALUES (%s, %s, %s, %s, 'health', %s,"
                " to_timestamp(%s), to_timestamp(%s), %s::jsonb)",
                (
                    alert["fingerprint"],
                    alert["seq"],
                    alert["state"],
                    alert["severity"],
                    alert["rule"],
                    alert["started_at"],
                    alert["at"],
                    json.dumps(alert),
                ),
            )
        await conn.execute(
            "INSERT INTO source_freshness (source, sector, state, last_seen, changed_at,"
            " stale_after) VALUES ('his-bvdk-tinh', 'health', 'stale', to_timestamp(%s),"
            " to_timestamp(%s), 180)",
            (now - 720, now - 540),
        )


async def test_cold_start_loads_the_database_then_follows_kafka_without_duplicates(
    fresh_database: str, start_gateway, producer: Producer, ws_client
):
    """Database rows and replayed Kafka records merge: newest wins, nothing twice, no reopen."""
    await migrate(fresh_database, connect_timeout=30)
    now = time.time()
    window = now - now % 900
    await insert_rows(fresh_database, now=now, window=window)
    # Kafka still holds older copies of what the writer stored, and one newer revision.
    await producer.kpi(
        kpi_point(value=88.0, revision=1, window_start=window),  # same as the row
        kpi_point(value=87.0, revision=0, window_start=window),  # older
        kpi_point(value=90.0, revision=2, window_start=window),  # newer than the row
    )
    await producer.alerts(
        alert_transition("fp-open", seq=1),  # older than the row (acknowledged)
        alert_transition("fp-resolved", seq=2),  # older: must not reopen a resolved alert
    )

    gateway = await start_gateway(database_url=fresh_database)
    client = await ws_client(gateway.ws_url(make_token()))
    await client.recv_until(is_type("hello"))
    snapshots = await subscribe(client, "kpi:health", "alerts", "freshness")

    (point,) = snapshots["kpi:health"]["items"]
    assert (point["series"], point["value"], point["revision"]) == (SERIES, 90.0, 2)
    assert [v for _t, v in point["spark"]] == [85.0, 88.0, 90.0]
    alerts = snapshots["alerts"]["items"]
    assert [(a["fingerprint"], a["seq"], a["state"]) for a in alerts] == [
        ("fp-open", 2, "acknowledged")
    ]
    fresh = {r["source"]: r for r in snapshots["freshness"]["items"] if r["kind"] == "freshness"}
    assert fresh["his-bvdk-tinh"]["state"] == "stale"
    # Only the newer revision was news: the channel's sequence counted it once.
    assert snapshots["kpi:health"]["seq"] == 1
    assert snapshots["alerts"]["seq"] == 0

    # A repeat of a stored revision is dropped; the next real change comes next in sequence.
    await producer.kpi(kpi_point(value=90.0, revision=2, window_start=window))
    await producer.kpi(kpi_point(value=91.0, revision=3, window_start=window))
    update = await client.recv_until(is_type("update", "kpi:health"))
    assert (update["from"], [i["revision"] for i in update["items"]]) == (2, [3])


async def test_database_without_the_writer_tables_is_not_fatal(
    fresh_database: str, start_gateway, producer: Producer, ws_client
):
    """Before the writer's migration ran, the gateway serves from the Kafka replay alone."""
    await producer.kpi(kpi_point(value=55.0))
    gateway = await start_gateway(database_url=fresh_database)
    client = await ws_client(gateway.ws_url(make_token()))
    await client.recv_until(is_type("hello"))
    snapshot: dict[str, Any] = (await subscribe(client, "kpi:health"))["kpi:health"]
    assert [i["value"] for i in snapshot["items"]] == [55.0]


def minute_revisions(now: float, *, minutes: int, size: float = 900.0) -> list[dict[str, Any]]:
    """Bed occupancy as the worker publishes it: a point a minute, from `minutes` ago to a
    minute ago, each a revision of its 15-minute window (a window's last one final)."""
    points: list[dict[str, Any]] = []
    for age in range(minutes, 0, -1):
        emitted = now - 60 * age
        start = emitted - emitted % size
        revision = 0
        if points and points[-1]["window_start"] == start:
            revision = points[-1]["revision"] + 1
        elif points:
            points[-1]["final"] = True
        points.append(
            kpi_point(
                value=70.0 + age % 7 + age / 10,
                window_start=start,
                size=size,
                revision=revision,
                emitted_at=emitted,
            )
        )
    return points


def hop_finals(now: float, *, hops: int) -> list[dict[str, Any]]:
    """Emergency admissions per hour (1 h windows hopping every 5 min): the final point of
    each window that ended in the last `hops` × 5 min, emitted as it ended, then the open one."""
    hop = 300.0
    # The last final 2 minutes at least before the open window's point: each its own minute.
    last_end = (now - 120) - (now - 120) % hop
    points = [
        kpi_point(
            kpi="er_admissions_per_hour",
            value=float(100 + 7 * i),
            window_start=end - 3600,
            size=3600.0,
            revision=5,
            final=True,
            emitted_at=end + 1,
        )
        for i, end in enumerate(last_end - hop * k for k in range(hops, -1, -1))
    ]
    points.append(
        kpi_point(
            kpi="er_admissions_per_hour",
            value=150.0,
            window_start=last_end + hop - 3600,
            size=3600.0,
            revision=2,
            emitted_at=now - 1,
        )
    )
    return points


async def store_as_the_writer(url: str, points: Iterable[dict[str, Any]]) -> None:
    """kpi_points as the writer keeps them: one row per (series, window), its highest revision."""
    rows: dict[tuple[str, float], dict[str, Any]] = {}
    for point in points:
        known = rows.get((point["series"], point["window_start"]))
        if known is None or point["revision"] > known["revision"]:
            rows[(point["series"], point["window_start"])] = point
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await default_kpi_partition(conn)
        for p in rows.values():
            await conn.execute(
                "INSERT INTO kpi_points (series, kpi, sector, grp, window_start, window_end, value,"
                " sample_count, final, revision, emitted_at) VALUES (%s, %s, %s, %s,"
                " to_timestamp(%s), to_timestamp(%s), %s, %s, %s, %s, to_timestamp(%s))",
                (
                    p["series"], p["kpi"], p["sector"], p["group"], p["window_start"],
                    p["window_end"], p["value"], p["count"], p["final"], p["revision"],
                    p["emitted_at"],
                ),
            )  # fmt: skip


async def sparklines(gateway: Any, ws_client: Any) -> dict[str, list[list[float]]]:
    """The sparkline of every health series in a newly connected wall's snapshot."""
    client = await ws_client(gateway.ws_url(make_token()))
    await client.recv_until(is_type("hello"))
    snapshot = (await subscribe(client, "kpi:health"))["kpi:health"]
    await client.close()
    return {item["series"]: item["spark"] for item in snapshot["items"]}


async def test_a_restarted_gateway_serves_the_sparklines_the_wall_had(
    fresh_database: str, start_gateway, producer: Producer, ws_client
):
    """After a restart (the revisions still on Kafka, the writer's row per window in
    PostgreSQL), a new wall gets every minute of the sparkline the first gateway served."""
    await migrate(fresh_database, connect_timeout=30)
    revisions = minute_revisions(time.time(), minutes=9)
    first = await start_gateway(database_url=fresh_database)
    watcher = await ws_client(first.ws_url(make_token()))
    await watcher.recv_until(is_type("hello"))
    await subscribe(watcher, "kpi:health")
    await producer.kpi(*revisions)
    await watcher.recv_until(
        lambda m: (
            m["type"] == "update"
            and any(i["emitted_at"] == revisions[-1]["emitted_at"] for i in m["items"])
        ),
        what="the last revision, live",
    )
    before = (await sparklines(first, ws_client))[SERIES]
    assert [v for _t, v in before] == [p["value"] for p in revisions]
    await store_as_the_writer(fresh_database, revisions)
    await first.stop()

    second = await start_gateway(database_url=fresh_database)
    assert (await sparklines(second, ws_client))[SERIES] == before


async def test_after_a_broker_roll_the_sparklines_come_from_postgresql(
    fresh_database: str,
    kafka_bootstrap: str,
    gateway_topics: GatewayTopics,
    start_gateway,
    producer: Producer,
    ws_client,
):
    """With the KPI topic empty (a rolled broker), the stored points of the sparkline's span
    give a new wall the sparklines the live gateway had, and nothing older."""
    await migrate(fresh_database, connect_timeout=30)
    now = time.time()
    admissions = hop_finals(now, hops=10)
    old = kpi_point(value=99.0, window_start=now - 3 * 3600, emitted_at=now - 3 * 3600 + 900)
    revisions = minute_revisions(now, minutes=5)
    live = await start_gateway(database_url=fresh_database)
    await producer.kpi(old, *admissions, *revisions)
    await store_as_the_writer(fresh_database, [old, *admissions, *revisions])
    deadline = time.monotonic() + 30
    lines = await sparklines(live, ws_client)
    while len(lines.get("health.er_admissions_per_hour|*", [])) < len(admissions):
        assert time.monotonic() < deadline, "the live gateway got every point"
        lines = await sparklines(live, ws_client)
    await live.stop()

    rolled = f"{gateway_topics.kpi}.rolled"
    await create_topics(kafka_bootstrap, [rolled], partitions=4, replication_factor=1, timeout=30)
    after = await sparklines(
        await start_gateway(database_url=fresh_database, kpi_topic=rolled), ws_client
    )
    admissions_line = lines["health.er_admissions_per_hour|*"]
    assert [v for _t, v in admissions_line] == [p["value"] for p in admissions]
    assert after["health.er_admissions_per_hour|*"] == admissions_line
    # A tumbling window's minutes between its stored revisions are not in PostgreSQL:
    # the stored (latest) revision of each window is.
    stored = {p["window_start"]: p for p in revisions}
    assert [v for _t, v in after[SERIES]] == [p["value"] for p in stored.values()]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_gateway_whose_database_is_down_starts_from_kafka_and_says_so(
    start_gateway, producer: Producer, ws_client, caplog: pytest.LogCaptureFixture
):
    """No database at start: the wall gets the live points and the log says why no history."""
    caplog.set_level(logging.INFO, logger="ioc.gateway")
    await producer.kpi(kpi_point(value=61.0))
    url = f"postgresql://ioc:secret@127.0.0.1:{closed_port()}/ioc"
    started = time.monotonic()
    gateway = await start_gateway(database_url=url, connect_timeout=5.0)
    assert time.monotonic() - started < 5.0 + 10.0
    assert [v for _t, v in (await sparklines(gateway, ws_client))[SERIES]] == [61.0]
    said = [r.getMessage() for r in caplog.records if "cold start" in r.getMessage()]
    assert any("live points only" in line and "secret" not in line for line in said), said
    assert not [r for r in caplog.records if r.exc_info], "no traceback"


async def test_the_replay_reads_its_last_seconds_of_kafka_before_serving(
    kafka_bootstrap: str, gateway_topics: GatewayTopics, start_gateway, ws_client
):
    """Records older than the replay window are not read; every one within it is applied
    before the first snapshot (the high watermark is the one seen at start)."""
    from aiokafka import AIOKafkaProducer

    revisions = minute_revisions(time.time(), minutes=30)
    sender = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=2)
    await asyncio.wait_for(sender.start(), 30)
    try:
        sent = [
            await sender.send(
                gateway_topics.kpi,
                json.dumps(p).encode(),
                key=SERIES.encode(),
                timestamp_ms=int(p["emitted_at"] * 1000),  # as if sent when emitted
            )
            for p in revisions
        ]
        await asyncio.wait_for(asyncio.gather(*sent), 30)
    finally:
        await sender.stop()
    gateway = await start_gateway(replay_seconds=600.0)
    started = time.time() - 600
    line = (await sparklines(gateway, ws_client))[SERIES]
    assert [v for _t, v in line] == [p["value"] for p in revisions if p["emitted_at"] >= started]
