"""Gateway cold start: the writer's tables in real PostgreSQL, then the Kafka replay on top."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest

from consumers.migrations import migrate
from tests.integration.test_gateway import is_type, subscribe
from tests.plugins.gateway import Producer, alert_transition, kpi_point, make_token

pytestmark = pytest.mark.integration

SERIES = "health.bed_occupancy_pct|*"


async def insert_rows(url: str, *, now: float, window: float) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # Plain PostgreSQL path: the writer's upkeep creates weekly partitions; a default
        # partition stands in for them here.
        cursor = await conn.execute("SELECT relkind FROM pg_class WHERE relname = 'kpi_points'")
        row = await cursor.fetchone()
        if row is not None and row[0] == "p":
            await conn.execute("CREATE TABLE kpi_points_test PARTITION OF kpi_points DEFAULT")
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
