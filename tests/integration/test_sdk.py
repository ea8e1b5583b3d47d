"""The publisher SDK against the real broker: validation first, batching per source, reports."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from foundation.contract.catalog import load_catalog
from producers.sdk import Publisher
from tests.plugins.services import CliResult, ConsumedRecord, events_in, read_records

pytestmark = pytest.mark.integration

CATALOG = load_catalog()
TOPIC = "ioc.events.health"


def _event(run: str, n: int, source: str = "his-bvdk-tinh", **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"{run}-{source}-{n}",
        "source": source,
        "sector": "health",
        "type": "bed_occupancy",
        "occurred_at": datetime.now(UTC).isoformat(),
        "value": 80.0 + n % 10,
        "district": "dong-xoai",
    }
    event.update(changes)
    return event


def _mine(run: str) -> Callable[[ConsumedRecord], bool]:
    return lambda record: run.encode() in record.value


async def test_events_of_a_source_within_the_linger_travel_as_one_record(
    kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """80 events from two sources sent at once become one array record per source."""
    run = uuid.uuid4().hex[:8]
    async with Publisher(bootstrap_servers=kafka_bootstrap, catalog=CATALOG, linger=0.2) as pub:
        futures = [await pub.publish(_event(run, n)) for n in range(50)]
        futures += [await pub.publish(_event(run, n, source="his-ttyt-huyen")) for n in range(30)]
        reports = [await f for f in futures]
    assert all(r.ok for r in reports), [r for r in reports if not r.ok][:3]

    records = await read_records(
        kafka_bootstrap,
        TOPIC,
        keep=_mine(run),
        until=lambda rs: sum(len(events_in(r)) for r in rs) >= 80,
    )
    assert sorted(r.key or b"" for r in records) == [b"his-bvdk-tinh", b"his-ttyt-huyen"]
    by_key = {r.key: r for r in records}
    assert [e["event_id"] for e in events_in(by_key[b"his-bvdk-tinh"])] == [
        f"{run}-his-bvdk-tinh-{n}" for n in range(50)
    ]
    # Each report points at the record and the index where its event is.
    for report in reports:
        record = by_key[(report.source or "").encode()]
        assert (report.topic, report.partition, report.offset) == (
            TOPIC,
            record.partition,
            record.offset,
        )
        assert report.index is not None
        assert events_in(record)[report.index]["event_id"] == report.event_id


async def test_gzip_compressed_batches_read_back_the_same(
    kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """compression="gzip": the broker keeps the batch compressed; readers get the same events."""
    run = uuid.uuid4().hex[:8]
    async with Publisher(
        bootstrap_servers=kafka_bootstrap, catalog=CATALOG, linger=0.1, compression="gzip"
    ) as pub:
        futures = [await pub.publish(_event(run, n)) for n in range(40)]
        reports = [await f for f in futures]
    assert all(r.ok for r in reports)
    records = await read_records(
        kafka_bootstrap,
        TOPIC,
        keep=_mine(run),
        until=lambda rs: sum(len(events_in(r)) for r in rs) >= 40,
    )
    events = [e["event_id"] for r in records for e in events_in(r)]
    assert events == [f"{run}-his-bvdk-tinh-{n}" for n in range(40)]


async def test_linger_zero_sends_each_event_alone(
    kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """With linger 0 every event is its own record, a JSON object."""
    run = uuid.uuid4().hex[:8]
    async with Publisher(bootstrap_servers=kafka_bootstrap, catalog=CATALOG, linger=0) as pub:
        reports = await pub.send_many([_event(run, n) for n in range(5)])
    assert all(r.ok and r.index is None for r in reports)
    records = await read_records(
        kafka_bootstrap, TOPIC, keep=_mine(run), until=lambda rs: len(rs) >= 5
    )
    assert len(records) == 5
    assert all(isinstance(json.loads(r.value), dict) for r in records)


async def test_invalid_events_are_refused_before_sending(
    kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """A department learns of its mistake at once, with the reason code; nothing is sent."""
    run = uuid.uuid4().hex[:8]
    async with Publisher(bootstrap_servers=kafka_bootstrap, catalog=CATALOG) as pub:
        bad = await pub.send_many(
            [
                _event(run, 1, type="teleport"),
                _event(run, 2, value=float("nan")),
                _event(run, 3, source="camera-ql13"),
                _event(run, 4, unit="ca"),
            ]
        )
        good = await pub.send(_event(run, 5))
    assert [r.reason for r in bad] == [
        "unknown_type",
        "not_finite",
        "unknown_source",
        "unit_mismatch",
    ]
    assert all(r.status == "rejected" and r.offset is None for r in bad)
    assert good.ok
    records = await read_records(
        kafka_bootstrap, TOPIC, keep=_mine(run), until=lambda rs: len(rs) >= 1
    )
    assert [e["event_id"] for r in records for e in events_in(r)] == [f"{run}-his-bvdk-tinh-5"]


async def test_send_record_lands_the_good_events_as_one_record(
    kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """A mixed batch lands its valid events in one record and reports the bad with their index."""
    run = uuid.uuid4().hex[:8]
    batch = [
        _event(run, 0),
        _event(run, 1, value="high"),
        _event(run, 2),
        _event(run, 3, district="hue"),
    ]
    async with Publisher(bootstrap_servers=kafka_bootstrap, catalog=CATALOG) as pub:
        reports = await pub.send_record(batch)
    assert [(r.status, r.reason) for r in reports] == [
        ("delivered", None),
        ("rejected", "bad_field:value"),
        ("delivered", None),
        ("rejected", "unknown_district"),
    ]
    records = await read_records(
        kafka_bootstrap, TOPIC, keep=_mine(run), until=lambda rs: len(rs) >= 1
    )
    assert len(records) == 1
    assert [e["event_id"] for e in events_in(records[0])] == [
        f"{run}-his-bvdk-tinh-0",
        f"{run}-his-bvdk-tinh-2",
    ]


def test_ioc_publish_prints_where_the_event_landed(
    ioc_cli: Callable[..., CliResult], kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """`ioc publish` delivers a valid event and refuses an invalid one with its code."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    ok = ioc_cli(
        "publish", "--source", "his-bvdk-tinh", "--type", "bed_occupancy", "--value", "91.5",
        "--district", "binh-long", env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("delivered ") and "ioc.events.health[" in ok.stdout

    bad = ioc_cli(
        "publish", "--source", "his-bvdk-tinh", "--type", "bed_occupancy", "--json", env=env
    )
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["reason"] == "missing_field:value"
    assert "Traceback" not in bad.stderr

    unknown = ioc_cli("publish", "--source", "his-bvdk-tnh", "--type", "x", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("ioc: error [unknown_source] --source: 'his-bvdk-tnh'")
    assert "did you mean his-bvdk-tinh" in unknown.stderr
