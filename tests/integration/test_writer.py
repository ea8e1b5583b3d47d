"""`ioc writer` against the real broker and PostgreSQL: every table, duplicates, re-reads."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.migrations import StoragePath
from foundation.contract.alerts import AlertState, AlertTransition, Fingerprint
from foundation.contract.catalog import Catalog
from foundation.contract.topics import ALERTS, DEADLETTER, KPI
from tests.plugins.services import BOTH_PATHS, IocProcess
from tests.plugins.storage import WriterFactory, arows, produce, until

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return int(response.status), response.read().decode()


def _event(catalog: Catalog, event_id: str, at: float, value: float = 1.0) -> dict[str, Any]:
    sector = catalog.sectors[0]
    kind = next(t for t in sector.event_types if t.measurement)
    return {
        "event_id": event_id,
        "source": sector.sources[0].id,
        "sector": sector.id,
        "type": kind.id,
        "occurred_at": datetime.fromtimestamp(at, tz=UTC).isoformat(),
        "value": value,
        "district": catalog.districts[0].code,
        "data": {"note": "ghi chú", "nul": "a\\u0000b"},  # a backslash: text, kept exactly
    }


def _point(series: str, start: float, revision: int, value: float, final: bool) -> dict[str, Any]:
    return {
        "kind": "kpi",
        "series": series,
        "kpi": "bed_occupancy_pct",
        "sector": "health",
        "group": "*",
        "window_start": start,
        "window_end": start + 300,
        "value": value,
        "count": 10 + revision,
        "final": final,
        "revision": revision,
        "emitted_at": start + 300 + revision,
        "newest": start + 299,
    }


def _alert(fingerprint: str, seq: int, state: AlertState, at: float) -> bytes:
    return AlertTransition(
        fingerprint=Fingerprint(fingerprint),
        seq=seq,
        transition="pending" if seq == 1 else "fire",
        state=state,
        previous_state=None if seq == 1 else "pending",
        rule="bed_occupancy_high",
        severity="critical",
        labels={"sector": "health"},
        at=at,
        started_at=at - seq,
        value=97.0,
        message_vi="Công suất giường bệnh 97% vượt ngưỡng 95%",
        message_en="Bed occupancy 97% above 95%",
    ).encode()


def _dead_letter(event_id: str, received_at: float) -> dict[str, Any]:
    return {
        "reason": "unknown_type",
        "detail": "x is not an event type of health",
        "source": "his-bvdk-tinh",
        "event_id": event_id,
        "topic": "ioc.events.health",
        "partition": 1,
        "offset": 42,
        "index": 3,
        "received_at": received_at,
        "original_b64": base64.b64encode(b'{"event_id":"' + event_id.encode() + b'"}').decode(),
    }


@BOTH_PATHS
async def test_every_table_from_real_topics_duplicates_and_rereads(
    kafka_bootstrap: str,
    storage_database: str,
    storage_path: StoragePath,
    writer_factory: WriterFactory,
    storage_catalog: Catalog,
) -> None:
    """Real records of every kind land once in their tables; duplicates, older revisions and
    older alert seqs change nothing, an event re-sent with a corrected occurred_at replaces its
    first copy, also when a second writer group re-reads everything."""
    tag = uuid.uuid4().hex[:8]
    now = time.time()
    sector = storage_catalog.sectors[0]
    topic, source = sector.topic, sector.sources[0].id
    ev1, ev2, ev3 = (_event(storage_catalog, f"{tag}-{n}", now - 60 + n, n) for n in (1, 2, 3))
    bad = dict(ev2)
    del bad["event_id"]
    corrected = _event(storage_catalog, f"{tag}-3", now - 30, 3)  # ev3, its time corrected
    series = f"health.bed_occupancy_pct|{tag}"
    hour = now - now % 3600  # windows in two past hours (a point dated ahead is refused)
    window_a, window_b = hour - 7200, hour - 3600
    fingerprint = f"fp-{tag}"
    placed = await produce(
        kafka_bootstrap,
        [
            (topic, source, ev1),  # one-event record
            (topic, source, [ev2, bad, ev3]),  # a batch with a bad event in the middle
            (topic, source, ev1),  # the same event again
            (topic, source, corrected),  # ev3 re-sent with another occurred_at
            (topic, source, b"{not json"),
            (KPI, series, _point(series, window_a, 0, 50.0, False)),
            (KPI, series, _point(series, window_a, 2, 70.0, True)),
            (KPI, series, _point(series, window_a, 2, 70.0, True)),  # same revision again
            (KPI, series, _point(series, window_a, 1, 60.0, False)),  # older after newer
            (KPI, series, _point(series, window_b, 0, 90.0, False)),
            (
                KPI,
                f"freshness|src-{tag}",
                {
                    "kind": "freshness",
                    "source": f"src-{tag}",
                    "sector": "health",
                    "state": "stale",
                    "last_seen": now - 900,
                    "changed_at": now - 10,
                    "stale_after": 600.0,
                },
            ),
            (
                KPI,
                f"freshness|src-{tag}",
                {
                    "kind": "freshness",
                    "source": f"src-{tag}",
                    "sector": "health",
                    "state": "fresh",
                    "last_seen": now - 950,
                    "changed_at": now - 950,
                    "stale_after": 600.0,
                },
            ),
            (
                KPI,
                f"sector|s-{tag}",
                {
                    "kind": "sector_seen",
                    "sector": f"s-{tag}",
                    "last_seen": now - 5,
                    "emitted_at": now - 4,
                },
            ),
            (KPI, "x", {"kind": "kpi", "series": 5}),  # broken: skipped
            (ALERTS, fingerprint, _alert(fingerprint, 1, "pending", now - 120)),
            (ALERTS, fingerprint, _alert(fingerprint, 2, "firing", now - 60)),
            (ALERTS, fingerprint, _alert(fingerprint, 2, "firing", now - 60)),  # duplicate
            (ALERTS, fingerprint, _alert(fingerprint, 1, "pending", now - 120)),  # late, older
            (DEADLETTER, "his-bvdk-tinh", _dead_letter(f"{tag}-dl", now - 30)),
        ],
    )

    async def events() -> list[tuple[Any, ...]]:
        return await arows(
            storage_database,
            "SELECT event_id, topic, partition, \"offset\", idx, value, data->>'nul',"
            " extract(epoch FROM occurred_at)::float8 FROM events WHERE event_id LIKE %s"
            " ORDER BY event_id",
            [f"{tag}-%"],
        )

    async def count(query: str, key: str) -> int:
        return len(await arows(storage_database, query, [key]))

    async def settled() -> bool:
        stored = await events()
        return (
            len(stored) == 3
            and stored[2][7] == pytest.approx(now - 30, abs=1e-3)
            and await count(
                "SELECT 1 FROM alerts_current WHERE fingerprint = %s AND seq = 2", fingerprint
            )
            == 1
            and await count("SELECT 1 FROM dead_letters WHERE event_id = %s", f"{tag}-dl") == 1
            and await count("SELECT 1 FROM kpi_rollup_1h WHERE series = %s", series) == 2
            and await count("SELECT 1 FROM sector_last_seen WHERE sector = %s", f"s-{tag}") == 1
            and await count(
                "SELECT 1 FROM source_freshness WHERE source = %s AND state = 'stale'",
                f"src-{tag}",
            )
            == 1
        )

    async with writer_factory(storage_database) as first:
        await until(settled, timeout=120, what="every table written")

        async def counted() -> bool:  # the broken records may come in a later batch
            return (
                first.metric("ioc_writer_records_skipped_total", reason="kpi:bad_field:series") >= 1
                and first.metric("ioc_writer_events_rejected_total", reason="bad_json") >= 1
            )

        await until(counted, timeout=60, what="the broken records counted")
        assert first.metric("ioc_storage_path", path=storage_path) == 1
        if storage_path == "timescaledb":  # TimescaleDB's jobs keep it, not the writer's loop
            assert first.metric("ioc_writer_partitions_created_total", table="events") == 0
            assert first.metric("ioc_writer_rollup_hours_total") == 0
        assert (
            first.metric("ioc_writer_events_rejected_total", reason="missing_field:event_id") >= 1
        )
        assert first.metric("ioc_writer_events_rejected_total", reason="bad_json") >= 1
        assert first.metric("ioc_writer_records_skipped_total", reason="kpi:bad_field:series") >= 1
        assert first.metric("ioc_writer_rows_written_total", table="events") >= 3
        assert first.metric("ioc_writer_rows_unchanged_total", table="events") >= 1
        assert first.metric("ioc_writer_database_up") == 1
        read_first = sum(
            first.metric("ioc_writer_records_in_total", topic=t)
            for t in [*(s.topic for s in storage_catalog.sectors), KPI, ALERTS, DEADLETTER]
        )

    async def check_tables() -> None:
        # (partition, offset) of ev1's first copy, of the batch and of the corrected ev3;
        # idx = place in the batch. The note's six characters `\u0000` are kept exactly.
        (p1, o1), (p2, o2), (p3, o3) = placed[0], placed[1], placed[3]
        assert [row[:7] for row in await events()] == [
            (f"{tag}-1", topic, p1, o1, None, 1.0, "a\\u0000b"),
            (f"{tag}-2", topic, p2, o2, 0, 2.0, "a\\u0000b"),
            (f"{tag}-3", topic, p3, o3, None, 3.0, "a\\u0000b"),
        ]
        points = await arows(
            storage_database,
            "SELECT extract(epoch FROM window_start)::float8, value, sample_count, final, revision"
            " FROM kpi_points WHERE series = %s ORDER BY window_start",
            [series],
        )
        assert points == [(window_a, 70.0, 12, True, 2), (window_b, 90.0, 10, False, 0)]
        assert await arows(
            storage_database,
            "SELECT state, extract(epoch FROM changed_at)::float8 FROM source_freshness"
            " WHERE source = %s",
            [f"src-{tag}"],
        ) == [("stale", pytest.approx(now - 10, abs=1e-3))]
        assert await arows(
            storage_database,
            "SELECT seq, state, transition FROM alert_transitions WHERE fingerprint = %s"
            " ORDER BY seq",
            [fingerprint],
        ) == [(1, "pending", "pending"), (2, "firing", "fire")]
        current = await arows(
            storage_database,
            "SELECT seq, state, severity, sector, rule, record->>'message_vi', record->>'seq'"
            " FROM alerts_current WHERE fingerprint = %s",
            [fingerprint],
        )
        assert current == [
            (
                2,
                "firing",
                "critical",
                "health",
                "bed_occupancy_high",
                "Công suất giường bệnh 97% vượt ngưỡng 95%",
                "2",
            ),
        ]
        assert await arows(
            storage_database,
            'SELECT reason, source, topic, partition, "offset", idx, original'
            " FROM dead_letters WHERE event_id = %s",
            [f"{tag}-dl"],
        ) == [
            (
                "unknown_type",
                "his-bvdk-tinh",
                "ioc.events.health",
                1,
                42,
                3,
                b'{"event_id":"' + f"{tag}-dl".encode() + b'"}',
            ),
        ]
        hourly = await arows(
            storage_database,
            "SELECT extract(epoch FROM bucket)::float8, points, value_avg, value_last, samples"
            " FROM kpi_rollup_1h WHERE series = %s ORDER BY bucket",
            [series],
        )
        assert hourly == [(window_a, 1, 70.0, 70.0, 12), (window_b, 1, 90.0, 90.0, 10)]

    await check_tables()

    # A second group re-reads every record (a redelivery of all of them): nothing changes.
    async with writer_factory(storage_database) as second:

        async def reread() -> bool:
            return read_first <= sum(
                second.metric("ioc_writer_records_in_total", topic=t)
                for t in [*(s.topic for s in storage_catalog.sectors), KPI, ALERTS, DEADLETTER]
            )

        await until(reread, timeout=120, what="the second writer re-read everything")
    assert second.metric("ioc_writer_rows_unchanged_total", table="alert_transitions") >= 2
    await check_tables()


# The command's own plumbing (migrate, ready line, /metrics, /healthz, SIGTERM), once: the
# storage behind it is the previous test's, on both paths.
async def test_ioc_writer_command_serves_metrics_and_health(
    kafka_bootstrap: str,
    storage_database: str,
    storage_path: StoragePath,
    ioc_process: Any,
    storage_catalog: Catalog,
) -> None:
    """`ioc writer` migrates, says which storage path it uses, stores events, exports metrics."""
    tag = uuid.uuid4().hex[:8]
    process: IocProcess = ioc_process(
        "writer",
        env={
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DATABASE_URL": storage_database,
            "IOC_WRITER_METRICS_PORT": "0",
            "IOC_WRITER_GROUP": f"test-cli-{tag}",
            "IOC_WRITER_LINGER": "0.1",
        },
    )
    process.wait_for_output(f"writer ready: storage path {storage_path}", timeout=60)
    url = next(
        line.split("writer metrics: ", 1)[1].strip()
        for line in process.output().splitlines()
        if line.startswith("writer metrics: ")
    )
    sector = storage_catalog.sectors[0]
    await produce(
        kafka_bootstrap,
        [(sector.topic, sector.sources[0].id, _event(storage_catalog, f"{tag}-cli", time.time()))],
    )

    async def stored() -> bool:
        query = "SELECT 1 FROM events WHERE event_id = %s"
        return await arows(storage_database, query, [f"{tag}-cli"]) != []

    await until(stored, timeout=60, what="the event stored by ioc writer")
    status, text = await asyncio.to_thread(_get, url)
    assert status == 200
    assert f'ioc_storage_path{{path="{storage_path}"}} 1.0' in text
    assert 'ioc_writer_rows_written_total{table="events"}' in text
    status, _ = await asyncio.to_thread(_get, url.replace("/metrics", "/healthz"))
    assert status == 200
    process.proc.terminate()
    assert process.proc.wait(30) == 0
