"""`ioc worker` against the real broker and PostgreSQL: KPI points, freshness, dead letters,
a SIGKILL mid-stream, and two workers sharing the partitions."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from producers.sdk import Publisher
from tests.plugins.services import ConsumedRecord, eventually, read_records
from tests.plugins.worker import ShortCatalog, WorkerProcess

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerProcess]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _reading(short: ShortCatalog, n: int, ts: float, *, source: str = "a", value: float = 1.0,
             district: str = "dong-xoai") -> dict[str, Any]:  # fmt: skip
    return {
        "event_id": f"{short.sector}-{source}-{n}",
        "source": f"{short.sector}-{source}",
        "sector": short.sector,
        "type": "reading",
        "occurred_at": _iso(ts),
        "value": value,
        "district": district,
    }


def _json(record: ConsumedRecord) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(record.value)
    return value


def _kpi_of(short: ShortCatalog, kpi: str) -> Callable[[ConsumedRecord], bool]:
    prefix = f"{short.sector}.{kpi}|".encode()
    return lambda record: (record.key or b"").startswith(prefix)


def _latest(points: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, Any]]:
    """The highest revision of each (series, window start)."""
    latest: dict[tuple[str, float], dict[str, Any]] = {}
    for point in points:
        key = (point["series"], point["window_start"])
        if key not in latest or point["revision"] > latest[key]["revision"]:
            latest[key] = point
    return latest


@pytest.mark.parametrize("transport", ["auto", "faust"])
async def test_events_become_provisional_then_final_points(
    stream_workers: StartWorker, short_catalog: ShortCatalog, kafka_bootstrap: str, transport: str
) -> None:
    """A window's first point is provisional; the final one comes by timer, with no new event.

    On either transport: `auto` picks the short fetch wait on the embedded broker (Faust's own
    transport on Kafka), and `faust` runs Faust's aiokafka transport unchanged.
    """
    worker = stream_workers(IOC_WORKER_TRANSPORT=transport)
    worker.wait_ready()
    short = transport == "auto" and not os.environ.get("IOC_TEST_KAFKA")
    assert f"worker transport: {'short-wait' if short else 'faust'} (" in worker.output()
    async with Publisher(bootstrap_servers=kafka_bootstrap, catalog=short_catalog.catalog) as pub:
        # Start early in a 5 s window, so that it is still open when we look.
        await eventually(lambda: time.time() % 5 <= 0.5, 6, "the start of a window")
        now = time.time()
        reports = await pub.send_many([_reading(short_catalog, n, now) for n in range(5)])
    assert all(r.ok for r in reports)

    def final_with_all(records: list[ConsumedRecord]) -> bool:
        return any(_json(r)["final"] and _json(r)["count"] == 5 for r in records)

    records = await read_records(
        kafka_bootstrap,
        "ioc.kpi",
        keep=_kpi_of(short_catalog, "n_short"),
        until=final_with_all,
        timeout=30,
    )
    points = [_json(r) for r in records]
    window = math.floor(now / 5) * 5.0
    mine = [p for p in points if p["window_start"] == window]
    assert mine[0]["final"] is False
    assert mine[-1]["final"] is True and mine[-1]["value"] == 5.0
    assert [p["revision"] for p in mine] == sorted(p["revision"] for p in mine)
    assert mine[-1]["window_end"] == window + 5.0
    # Open hopping windows that never published are in the state too: it must still save.
    await eventually(
        lambda: worker.metric("ioc_worker_checkpoint_seconds_count") >= 2, 10, "checkpoints"
    )
    assert worker.metric("ioc_worker_checkpoint_failures_total") == 0


async def test_a_silent_source_turns_stale_and_back(
    stream_workers: StartWorker, short_catalog: ShortCatalog, kafka_bootstrap: str
) -> None:
    """Cadence 1 s × factor 3: three silent seconds make it stale; its next event, fresh."""
    stream_workers().wait_ready()
    key = f"freshness|{short_catalog.sector}-a".encode()
    async with Publisher(
        bootstrap_servers=kafka_bootstrap, catalog=short_catalog.catalog, linger=0
    ) as pub:
        assert (await pub.send(_reading(short_catalog, 1, time.time()))).ok

        def states(records: list[ConsumedRecord]) -> list[str]:
            return [_json(r)["state"] for r in records]

        def saw(*sequence: str) -> Callable[[list[ConsumedRecord]], bool]:
            def check(records: list[ConsumedRecord]) -> bool:
                seen = states(records)
                return any(seen[i : i + len(sequence)] == list(sequence) for i in range(len(seen)))

            return check

        keep = lambda record: record.key == key  # noqa: E731
        await read_records(
            kafka_bootstrap, "ioc.kpi", keep=keep, until=saw("fresh", "stale"), timeout=20
        )
        assert (await pub.send(_reading(short_catalog, 2, time.time()))).ok
        records = await read_records(
            kafka_bootstrap, "ioc.kpi", keep=keep, until=saw("fresh", "stale", "fresh"), timeout=20
        )
    stale = next(_json(r) for r in records if _json(r)["state"] == "stale")
    assert stale["stale_after"] == 3.0
    assert stale["changed_at"] - stale["last_seen"] >= 3.0
    # The sector's last-seen time follows its sources' latest event.
    latest = _json(records[-1])["last_seen"]
    sector_key = f"sector|{short_catalog.sector}".encode()
    await read_records(
        kafka_bootstrap,
        "ioc.kpi",
        keep=lambda record: record.key == sector_key,
        until=lambda rs: any(_json(r)["last_seen"] == latest for r in rs),
    )


async def test_malformed_records_go_to_dead_letters_while_valid_events_flow(
    stream_workers: StartWorker, short_catalog: ShortCatalog, kafka_bootstrap: str
) -> None:
    """Bad JSON, bad events in a batch and unknown types get codes; the good ones count."""
    stream_workers().wait_ready()
    source = f"{short_catalog.sector}-b"
    now = time.time()
    good = _reading(short_catalog, 1, now, source="b")
    bad_type = dict(_reading(short_catalog, 2, now, source="b"), type="teleport")
    no_value = {
        k: v for k, v in _reading(short_catalog, 3, now, source="b").items() if k != "value"
    }
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for value in (b"{not json", json.dumps([good, bad_type, no_value]).encode(), b"\xff\xfe"):
            await producer.send_and_wait(short_catalog.topic, key=source.encode(), value=value)
    finally:
        await producer.stop()

    def mine(record: ConsumedRecord) -> bool:
        return _json(record).get("source") == source

    letters = await read_records(
        kafka_bootstrap, "ioc.deadletter", keep=mine, until=lambda rs: len(rs) >= 4
    )
    by_reason = {_json(r)["reason"]: _json(r) for r in letters}
    assert set(by_reason) == {"bad_json", "unknown_type", "missing_field:value"}
    assert (
        by_reason["unknown_type"]["index"] == 1 and by_reason["missing_field:value"]["index"] == 2
    )
    assert by_reason["unknown_type"]["topic"] == short_catalog.topic
    assert "offset" in by_reason["bad_json"] and by_reason["bad_json"]["index"] is None
    points = await read_records(
        kafka_bootstrap, "ioc.kpi", keep=_kpi_of(short_catalog, "n_long"),
        until=lambda rs: any(_json(r)["count"] >= 1 for r in rs),
    )  # fmt: skip
    assert _latest([_json(r) for r in points])  # the valid event made it through


def _expected(short: ShortCatalog, events: list[dict[str, Any]]) -> dict[tuple[str, float], float]:
    """Recompute n_long, total_by_district, mean_hopping and p95_long from the events."""
    sums: dict[tuple[str, float], list[float]] = defaultdict(list)
    for event in events:
        ts = datetime.fromisoformat(event["occurred_at"]).timestamp()
        minute = math.floor(ts / 60) * 60.0
        sums[(f"{short.sector}.n_long|*", minute)].append(1.0)
        sums[(f"{short.sector}.total_by_district|{event['district']}", minute)].append(
            event["value"]
        )
        sums[(f"{short.sector}.p95_long|*", minute)].append(event["value"])
        for start in (minute - 60, minute):
            sums[(f"{short.sector}.mean_hopping|*", start)].append(event["value"])
    out: dict[tuple[str, float], float] = {}
    for (series, start), values in sums.items():
        if ".mean_hopping|" in series:
            out[(series, start)] = math.fsum(values) / len(values)
        elif ".p95_long|" in series:  # nearest rank
            out[(series, start)] = sorted(values)[math.ceil(0.95 * len(values)) - 1]
        else:
            out[(series, start)] = math.fsum(values)
    return out


def _converged(
    short: ShortCatalog, expected: dict[tuple[str, float], float]
) -> Callable[[list[ConsumedRecord]], bool]:
    def check(records: list[ConsumedRecord]) -> bool:
        latest = _latest([_json(r) for r in records])
        return all(
            key in latest and latest[key]["value"] == pytest.approx(value)
            for key, value in expected.items()
        )

    return check


def _mine(short: ShortCatalog) -> Callable[[ConsumedRecord], bool]:
    prefix = f"{short.sector}.".encode()
    return lambda record: (record.key or b"").startswith(prefix)


async def _recomputed(
    bootstrap: str, short: ShortCatalog, expected: dict[tuple[str, float], float]
) -> dict[tuple[str, float], dict[str, Any]]:
    """Read ioc.kpi until every expected (series, window) has its recomputed value; the latest."""
    records = await read_records(
        bootstrap, "ioc.kpi", keep=_mine(short), until=_converged(short, expected), timeout=90
    )
    return _latest([_json(r) for r in records])


async def _stream(pub: Publisher, events: list[dict[str, Any]]) -> None:
    """One event per record, about 2,000 a second."""
    for start in range(0, len(events), 100):
        assert all(r.ok for r in await pub.send_many(events[start : start + 100]))
        await asyncio.sleep(0.05)


def _events(short: ShortCatalog, count: int, *, exact: bool = True) -> list[dict[str, Any]]:
    # Two minutes whose every window (hopping ones too) closed ≥ 20 s ago, well within the
    # 10 min grace: every point is final, and revised as events come. Not `exact`: values
    # with many digits, so that an average counting a record twice shows.
    base = math.floor((time.time() - 200) / 60) * 60.0
    return [
        _reading(
            short, n, base + (n % 120) + 0.25, source="abcd"[n % 4],
            value=float(n % 7) if exact else round(math.sin(n) * 1000, 6),
            district=("dong-xoai", "binh-long")[n % 3 % 2],
        )
        for n in range(count)
    ]  # fmt: skip


async def test_sigkill_mid_stream_neither_loses_nor_double_counts(
    stream_workers: StartWorker, short_catalog: ShortCatalog, kafka_bootstrap: str
) -> None:
    """Kill -9 the worker mid-stream, restart it: final values equal a recomputation."""
    first = stream_workers()
    first.wait_ready()
    events = _events(short_catalog, 3000)
    async with Publisher(
        bootstrap_servers=kafka_bootstrap, catalog=short_catalog.catalog, linger=0
    ) as pub:
        producing = asyncio.create_task(_stream(pub, events))
        await eventually(
            lambda: first.metric("ioc_worker_events_in_total") >= 1200, 30, "1,200 events in"
        )
        first.kill()  # mid-stream: offsets committed, checkpoints and sends all lag behind
        assert not producing.done()
        await producing

    second = stream_workers()
    second.wait_ready()
    expected = _expected(short_catalog, events)
    latest = await _recomputed(kafka_bootstrap, short_catalog, expected)
    assert "restored from checkpoints" in second.output()
    assert second.metric("ioc_worker_checkpoint_failures_total") == 0
    for key, value in expected.items():
        assert latest[key]["value"] == pytest.approx(value), key
        assert latest[key]["final"] is True
    assert second.stop() == 0


async def test_two_workers_share_partitions_and_agree_with_a_recomputation(
    stream_workers: StartWorker, short_catalog: ShortCatalog, kafka_bootstrap: str
) -> None:
    """A second worker joins mid-stream; after the rebalance each owns partitions and the
    results stay exact (records in flight at the rebalance are neither lost nor doubled)."""
    first = stream_workers()
    first.wait_ready()
    events = _events(short_catalog, 3000)
    async with Publisher(
        bootstrap_servers=kafka_bootstrap, catalog=short_catalog.catalog, linger=0
    ) as pub:
        joined = asyncio.Event()

        async def stream() -> None:
            """One event per record: 2,000/s, 200/s while the second worker joins, the last
            500 only once it owns partitions (so records flow before, during and after)."""
            sent = 0
            while sent < len(events):
                if not joined.is_set() and sent >= len(events) - 500:
                    await asyncio.sleep(0.05)
                    continue
                size = 100 if joined.is_set() or sent < 600 else 10
                assert all(r.ok for r in await pub.send_many(events[sent : sent + size]))
                sent += size
                await asyncio.sleep(0.05)

        producing = asyncio.create_task(stream())
        await eventually(
            lambda: first.metric("ioc_worker_events_in_total") >= 600, 30, "600 events in"
        )
        second = stream_workers()
        await asyncio.to_thread(second.wait_ready)
        joined.set()
        await producing
    latest = await _recomputed(kafka_bootstrap, short_catalog, _expected(short_catalog, events))
    assert latest
    owned = [w.metric('ioc_worker_owned_partitions{stage="events"}') for w in (first, second)]
    assert all(count > 0 for count in owned) and sum(owned) == 4
    assert first.stop() == 0 and second.stop() == 0


async def _committed(bootstrap: str, group: str, topics: list[str]) -> dict[TopicPartition, int]:
    """The offsets the consumer group has committed on these topics (4 partitions each)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        found = {}
        for tp in (TopicPartition(topic, p) for topic in topics for p in range(4)):
            offset = await asyncio.wait_for(consumer.committed(tp), 10)
            if offset is not None:
                found[tp] = offset
        return found
    finally:
        await consumer.stop()


async def test_a_worker_killed_before_its_first_checkpoint_starts_over(
    stream_workers: StartWorker, short_catalog: ShortCatalog, kafka_bootstrap: str
) -> None:
    """No checkpoint yet: the restarted worker reads from the start, not from a Faust commit.

    Faust commits offsets on its own every few seconds; had it done so here, the next worker
    would resume at the commit with empty state and the KPIs would restart from zero.
    """
    first = stream_workers(IOC_WORKER_CHECKPOINT_INTERVAL="60")  # no checkpoint in this test
    first.wait_ready()
    events = _events(short_catalog, 600)
    async with Publisher(bootstrap_servers=kafka_bootstrap, catalog=short_catalog.catalog) as pub:
        assert all(r.ok for r in await pub.send_many(events))
    expected = _expected(short_catalog, events)
    await _recomputed(kafka_bootstrap, short_catalog, expected)  # the first worker's points
    # Faust commits every 2.8 s (commit_interval): watch for longer than that. (Waiting for
    # something that must not happen has no condition to end on; the wait is the test.)
    topics = [short_catalog.topic, "ioc.internal.kpi-partials"]
    watch_until = time.monotonic() + 4.0
    while time.monotonic() < watch_until:
        assert await _committed(kafka_bootstrap, first.group, topics) == {}
        await asyncio.sleep(0.5)
    first.kill()

    second = stream_workers()
    second.wait_ready()
    await eventually(
        lambda: second.metric("ioc_worker_events_in_total") >= len(events), 60, "a full replay"
    )
    assert "(0 restored from checkpoints)" in second.output()
    await eventually(
        lambda: second.metric('ioc_worker_kpi_points_out_total{final="true"}') >= len(expected),
        60,
        "the replay's final points",
    )
    latest = await _recomputed(kafka_bootstrap, short_catalog, expected)
    for key, value in expected.items():
        assert latest[key]["value"] == pytest.approx(value), key
    assert second.stop() == 0


def _latest_checkpoint(database_url: str, group: str) -> float:
    """When the worker group's stage 1 last saved a checkpoint (0 when never)."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT coalesce(extract(epoch FROM max(taken_at)), 0)::float8"
            " FROM worker_checkpoints WHERE consumer = %s",
            (f"{group}/events",),
        ).fetchone()
    return float(row[0]) if row else 0.0


async def test_kills_right_after_checkpoints_keep_averages_and_percentiles_exact(
    stream_workers: StartWorker,
    short_catalog: ShortCatalog,
    kafka_bootstrap: str,
    fresh_database: str,
) -> None:
    """SIGKILL the worker just after it saved a checkpoint, twice, while events flow: the
    restored avg and p95 states hold exactly the records before the saved offsets."""
    events = _events(short_catalog, 3000, exact=False)
    worker = stream_workers(IOC_WORKER_CHECKPOINT_INTERVAL="0.3")
    worker.wait_ready()
    async with Publisher(
        bootstrap_servers=kafka_bootstrap, catalog=short_catalog.catalog, linger=0
    ) as pub:
        producing = asyncio.create_task(_stream(pub, events))
        for kill in range(2):
            group = worker.group
            seen = await asyncio.to_thread(_latest_checkpoint, fresh_database, group)

            def saved(seen: float = seen, group: str = group) -> bool:
                return _latest_checkpoint(fresh_database, group) > seen

            await eventually(
                saved,
                30,
                f"checkpoint before kill {kill + 1}",
                interval=0.02,
            )
            worker.kill()
            worker = stream_workers()
            await asyncio.to_thread(worker.wait_ready)
        await producing
    latest = await _recomputed(kafka_bootstrap, short_catalog, _expected(short_catalog, events))
    for key, value in _expected(short_catalog, events).items():
        assert latest[key]["value"] == pytest.approx(value), key
    assert worker.stop() == 0
