"""Alerts in the real `ioc worker`: a burst fires a critical alert, it escalates, an officer's
ack (published by `ioc alerts ack`) stops the escalation, quiet data resolves it; a SIGKILL of
the worker in the middle neither loses nor changes a transition."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from producers.sdk import Publisher
from tests.plugins.services import CliResult, ConsumedRecord, eventually, read_records
from tests.plugins.worker import ShortCatalog, WorkerProcess

pytestmark = pytest.mark.integration

StartWorker = Callable[[], WorkerProcess]


def _reading(short: ShortCatalog, n: int, ts: float) -> dict[str, Any]:
    return {
        "event_id": f"{short.sector}-alert-{n}",
        "source": f"{short.sector}-a",
        "sector": short.sector,
        "type": "reading",
        "occurred_at": datetime.fromtimestamp(ts, UTC).isoformat(),
        "value": 1.0,
    }


async def _transitions(
    bootstrap: str, sector: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """This test's alert transitions on ioc.alerts, duplicates (same fingerprint#seq) dropped."""

    def mine(record: ConsumedRecord) -> bool:
        return bool(json.loads(record.value)["labels"]["sector"] == sector)

    def unique(records: list[ConsumedRecord]) -> list[dict[str, Any]]:
        by_key: dict[tuple[str, int], dict[str, Any]] = {}
        for record in records:
            value = json.loads(record.value)
            key = (value["fingerprint"], value["seq"])
            # A replay may publish a transition again; it must be the very same one.
            assert by_key.setdefault(key, value) == value, (by_key[key], value)
            by_key[key] = value
        return sorted(by_key.values(), key=lambda v: v["seq"])

    records = await read_records(
        bootstrap, "ioc.alerts", keep=mine, until=lambda rs: until(unique(rs)), timeout=timeout
    )
    return unique(records)


def _has(kind: str, **fields: Any) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda ts: any(
        t["transition"] == kind and all(t[k] == v for k, v in fields.items()) for t in ts
    )


async def test_fire_escalate_ack_resolve_across_a_worker_kill(
    stream_workers: StartWorker,
    short_catalog: ShortCatalog,
    kafka_bootstrap: str,
    ioc_cli: Callable[..., CliResult],
) -> None:
    """Every transition arrives once, in order (seq 1, 2, 3…), though the worker was SIGKILLed."""
    worker = stream_workers()
    worker.wait_ready()
    async with Publisher(bootstrap_servers=kafka_bootstrap, catalog=short_catalog.catalog) as pub:
        await eventually(lambda: time.time() % 5 <= 1.0, 6, "the start of a 5 s window")
        burst_at = time.time()
        reports = await pub.send_many([_reading(short_catalog, n, burst_at) for n in range(40)])
        assert all(r.ok for r in reports)

        fired = await _transitions(kafka_bootstrap, short_catalog.sector, _has("fire"), 60)
        fire = next(t for t in fired if t["transition"] == "fire")
        assert fire["severity"] == "critical" and fire["state"] == "firing"
        assert fire["value"] > 30 and fire["message_vi"].startswith("Số bản ghi")
        fingerprint = fire["fingerprint"]

        worker.kill()  # mid-scenario: the alert stage resumes from its checkpoint
        worker = stream_workers()
        worker.wait_ready(timeout=90)

        # Unacknowledged and critical: level 1 after 3 s (the test catalog's policy).
        await _transitions(
            kafka_bootstrap, short_catalog.sector, _has("escalate", escalation_level=1), 60
        )
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
        # Refused by the engine (no such alert): the command says it was not applied.
        unknown = ioc_cli("alerts", "ack", "0" * 16, "--by", "Nguyễn Văn An", "--wait", "3",
                          env=env)  # fmt: skip
        assert unknown.returncode == 1
        assert unknown.stderr.startswith("ioc: error [action_not_confirmed] chưa thấy ack 0000")
        ack = ioc_cli("alerts", "ack", fingerprint, "--by", "Nguyễn Văn An", env=env)
        assert ack.returncode == 0, ack.stderr
        assert f"đã áp dụng · applied: {fingerprint} đã tiếp nhận · acknowledged" in ack.stdout
        await _transitions(
            kafka_bootstrap, short_catalog.sector,
            _has("ack", acknowledged_by="Nguyễn Văn An"), 60,
        )  # fmt: skip

        # A quiet window: its final count (2) is at or below the clear level (10).
        await eventually(lambda: time.time() - burst_at > 6, 10, "a later window")
        quiet_at = time.time()
        await pub.send_many([_reading(short_catalog, 100 + n, quiet_at) for n in range(2)])

    done = await _transitions(kafka_bootstrap, short_catalog.sector, _has("resolve"), 60)
    mine = [t for t in done if t["fingerprint"] == fingerprint]
    assert [t["seq"] for t in mine] == list(range(1, len(mine) + 1))  # none lost, none twice
    kinds = [t["transition"] for t in mine]
    assert kinds.index("fire") < kinds.index("escalate") < kinds.index("ack")
    assert kinds[-1] == "resolve" and mine[-1]["state"] == "resolved"
    after_ack = kinds[kinds.index("ack") :]
    assert "escalate" not in after_ack  # the ack stopped the escalation
