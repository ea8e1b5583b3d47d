"""Simulator spike → worker → alert → notifier → webhook, e-mail, Telegram, Zalo: every
notifying transition reaches every channel exactly once, though worker and notifier are both
SIGKILLed and restarted in the middle of the scenario."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ioc.topics import create_topics
from tests.plugins.notify import ROUTING, LocalServers, NotifyCase, deliveries, notifier_env
from tests.plugins.services import ConsumedRecord, IocProcess, eventually, read_records
from tests.plugins.worker import SHORT_CATALOG, WorkerProcess

pytestmark = pytest.mark.integration

CHANNELS = ("webhook", "email", "telegram", "zalo")
NOTIFYING = {"fire", "refire", "resolve"}  # what the duty officer hears of (warning severity)

# The short catalog with a rate-of-change rule: a count that doubles from one 5 s window to
# the next. The simulator's spike aims at exactly this rule (×3 the rate).
SURGE_RULE = """\
      - {{id: burst_surge, kind: rate_of_change, kpi: n_short, change_pct: 100, over: 5s,
         severity: warning, message_vi: "Số bản ghi tăng {{change:.0f}}%",
         message_en: "Count up {{change:.0f}}%"}}
"""


def _catalog(tmp_path: Path, sector: str) -> Path:
    text = SHORT_CATALOG.format(sector=sector)
    head, _sep, _old_rules = text.partition("    alerts:\n")
    path = tmp_path / "catalog.yaml"
    path.write_text(head + "    alerts:\n" + SURGE_RULE.format(), encoding="utf-8")
    return path


def _mine(sector: str) -> Callable[[ConsumedRecord], bool]:
    return lambda r: json.loads(r.value)["labels"]["sector"] == sector


def _unique(records: list[ConsumedRecord]) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, int], dict[str, Any]] = {}
    for record in records:
        value = json.loads(record.value)
        by_key.setdefault((value["fingerprint"], value["seq"]), value)
    return sorted(by_key.values(), key=lambda v: (v["fingerprint"], v["seq"]))


async def test_spike_alert_reaches_every_channel_once_across_kills(
    tmp_path: Path,
    kafka_bootstrap: str,
    contract_topics: list[str],
    fresh_database: str,
    notify_servers: LocalServers,
    ioc_process: Callable[..., IocProcess],
) -> None:
    """Fire (and its resolve) are delivered once per channel; nothing lost, nothing twice."""
    sector = f"t{uuid.uuid4().hex[:8]}"
    catalog = _catalog(tmp_path, sector)
    await create_topics(
        kafka_bootstrap, [f"ioc.events.{sector}"], partitions=4, replication_factor=1, timeout=15
    )
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING.format(sector=sector), encoding="utf-8")
    case = NotifyCase(sector, routing, f"notifier-{uuid.uuid4().hex[:8]}", fresh_database)
    # Uncompressed (every other test runs the default, gzip): the simulator's batches and
    # the worker's partials, points and alert input as plain records.
    base = {
        "IOC_CATALOG": str(catalog),
        "IOC_STATE_DIR": str(tmp_path / "state"),
        "IOC_KAFKA_COMPRESSION": "none",
    }
    worker_env = {
        **base,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": fresh_database,
        "IOC_WORKER_GROUP": f"g-{uuid.uuid4().hex[:8]}",
        "IOC_WORKER_METRICS_PORT": "0",
        "IOC_WORKER_SESSION_TIMEOUT": "4",
        "IOC_WORKER_CHECKPOINT_INTERVAL": "0.5",
    }
    notify_env = {**notifier_env(case, notify_servers, kafka_bootstrap), **base}

    workers = [WorkerProcess(worker_env, tmp_path / "worker-0.log")]
    workers[0].wait_ready(timeout=90)
    notifier = ioc_process("notifier", env=notify_env)
    notifier.wait_for_output("ready:", timeout=90)
    simulator = ioc_process(
        "simulate", "--sectors", sector, "--rate", "40", "--duration", "120",
        "--scenario", f"spike:{sector}", "--scenario-after", "15", "--scenario-for", "60",
        env={**base, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )  # fmt: skip
    try:
        fired = _unique(
            await read_records(
                kafka_bootstrap,
                "ioc.alerts",
                keep=_mine(sector),
                timeout=90,
                until=lambda rs: any(t["transition"] == "fire" for t in _unique(rs)),
            )
        )
        fingerprint = next(t["fingerprint"] for t in fired if t["transition"] == "fire")

        # Both consumers of the alert die at once, mid-scenario, and come back.
        workers[0].kill()
        notifier.proc.kill()
        notifier.proc.wait(10)
        workers.append(WorkerProcess(worker_env, tmp_path / "worker-1.log"))
        workers[1].wait_ready(timeout=90)
        notifier = ioc_process("notifier", env=notify_env)
        notifier.wait_for_output("ready:", timeout=90)

        transitions = _unique(
            await read_records(
                kafka_bootstrap,
                "ioc.alerts",
                keep=_mine(sector),
                timeout=120,
                until=lambda rs: any(
                    t["fingerprint"] == fingerprint and t["transition"] == "resolve"
                    for t in _unique(rs)
                ),
            )
        )
    finally:
        simulator.proc.terminate()
        for worker in workers:
            worker.stop()

    mine = [t for t in transitions if t["fingerprint"] == fingerprint]
    assert [t["seq"] for t in mine] == list(range(1, len(mine) + 1))
    wanted = {f"{t['fingerprint']}#{t['seq']}" for t in transitions if t["transition"] in NOTIFYING}

    def all_sent() -> bool:
        sent = {(r["idempotency_key"], r["channel"]) for r in deliveries(fresh_database)
                if r["status"] == "sent"}  # fmt: skip
        return all((key, channel) in sent for key in wanted for channel in CHANNELS)

    await eventually(all_sent, 60, "every notifying transition sent on every channel", interval=0.2)
    rows = [r for r in deliveries(fresh_database) if r["idempotency_key"] in wanted]
    per_channel = Counter(r["channel"] for r in rows if r["status"] == "sent")
    assert per_channel == dict.fromkeys(CHANNELS, len(wanted)), per_channel
    # What the servers got: one message per sent digest, none repeated after the kills.
    for channel in CHANNELS:
        digests = {r["digest_id"] for r in rows if r["channel"] == channel}
        got = [m for m in notify_servers.received(channel) if fingerprint in (m.text + m.subject)]
        assert len(got) == len(digests), (channel, [m.text for m in got])
