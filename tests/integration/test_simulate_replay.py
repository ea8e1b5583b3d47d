"""`ioc simulate` and `ioc replay` as a user runs them, against the real broker."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from foundation.contract.catalog import load_catalog
from foundation.contract.envelope import ContractIndex, parse_record
from tests.plugins.services import CliResult

pytestmark = pytest.mark.integration

Cli = Callable[..., CliResult]
SECTOR_TOPICS = load_catalog().sector_topics


async def read_all(
    bootstrap: str,
    topics: list[str],
    *,
    keep: Callable[[str, bytes], bool],
    until: Callable[[list[tuple[str, bytes]]], bool],
    timeout: float = 30,
) -> list[tuple[str, bytes]]:
    """(topic, value) of the kept records of `topics`, read from the start until `until` holds.

    Polls until the condition holds (end offsets are wrong on the embedded broker).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    kept: list[tuple[str, bytes]] = []
    try:
        assignment = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or range(4))
        ]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        async with asyncio.timeout(timeout):
            while not until(kept):
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                for partition, records in batch.items():
                    for record in records:
                        if record.value is not None and keep(partition.topic, record.value):
                            kept.append((partition.topic, record.value))
    finally:
        await consumer.stop()
    return kept


def events_of(records: list[tuple[str, bytes]], prefix: str) -> dict[str, tuple[str, Any]]:
    """event_id → (topic, event) for the events whose id starts with `prefix`."""
    found: dict[str, tuple[str, Any]] = {}
    for topic, value in records:
        decoded = json.loads(value)
        for event in decoded if isinstance(decoded, list) else [decoded]:
            if str(event.get("event_id", "")).startswith(prefix):
                found[event["event_id"]] = (topic, event)
    return found


def run_id(output: str) -> str:
    match = re.search(r"run (sim\S+)", output)
    assert match, output
    return match.group(1)


async def test_simulated_events_land_on_their_sectors_topics(
    ioc_cli: Cli, kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """`ioc simulate --count N` delivers N events, each on ioc.events.<its sector>."""
    result = ioc_cli(
        "simulate", "--count", "400", "--seed", "1", "--rate", "400",
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "delivered 400 · rejected 0 · failed 0" in result.stdout, result.stdout
    prefix = run_id(result.stdout) + "-"
    records = await read_all(
        kafka_bootstrap,
        SECTOR_TOPICS,
        keep=lambda _t, value: prefix.encode() in value,
        until=lambda kept: len(events_of(kept, prefix)) >= 400,
    )
    found = events_of(records, prefix)
    assert len(found) == 400
    for topic, event in found.values():
        assert topic == f"ioc.events.{event['sector']}"
    assert len({event["sector"] for _, event in found.values()}) >= 5


async def test_replaying_a_simulated_file_lands_the_same_events(
    ioc_cli: Cli, kafka_bootstrap: str, contract_topics: list[str], tmp_path: Path
) -> None:
    """`ioc simulate --out` then `ioc replay` publishes exactly the file's events."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    path = tmp_path / "run.jsonl"
    written = ioc_cli("simulate", "--out", str(path), "--count", "300", "--seed", "2", env=env)
    assert written.returncode == 0, written.stderr
    recorded = {e["event_id"]: e for e in map(json.loads, path.read_text().splitlines())}
    assert len(recorded) == 300

    replayed = ioc_cli("replay", str(path), "--speed", "0", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "300 of 300 events sent" in replayed.stdout
    assert "delivered 300 · rejected 0 · failed 0" in replayed.stdout
    prefix = run_id(written.stdout) + "-"
    records = await read_all(
        kafka_bootstrap,
        SECTOR_TOPICS,
        keep=lambda _t, value: prefix.encode() in value,
        until=lambda kept: len(events_of(kept, prefix)) >= 300,
    )
    found = events_of(records, prefix)
    assert {k: event for k, (_, event) in found.items()} == recorded


async def test_replay_counts_bad_lines_and_refused_events_without_a_traceback(
    ioc_cli: Cli, kafka_bootstrap: str, contract_topics: list[str], tmp_path: Path
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    path = tmp_path / "broken.jsonl"
    written = ioc_cli(
        "simulate", "--out", str(path), "--count", "400", "--seed", "4", "--sectors", "health",
        "--scenario", "malformed", "--scenario-after", "0", "--raw-malformed", env=env,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    replayed = ioc_cli("replay", str(path), "--speed", "0", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert "Traceback" not in replayed.stderr
    assert re.search(r"rejected \d+ \(.*bad_json \d+", replayed.stdout), replayed.stdout
    assert re.search(r"bad lines \(bad_json\): \d+ at line \d+", replayed.stdout)


async def test_raw_malformed_records_reach_the_topic_for_the_dead_letter_path(
    ioc_cli: Cli, kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """With --raw-malformed, invalid envelopes and non-JSON records go onto the topic."""
    result = ioc_cli(
        "simulate", "--count", "1000", "--seed", "3", "--rate", "1000", "--sectors", "health",
        "--scenario", "malformed:health", "--scenario-after", "0", "--raw-malformed",
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    raw_sent = re.search(r"raw records (\d+)", result.stdout)
    assert raw_sent, result.stdout
    prefix = run_id(result.stdout).encode()
    index = ContractIndex(load_catalog())
    reasons: set[str] = set()

    def classify(kept: list[tuple[str, bytes]]) -> bool:
        for _topic, value in kept[len(seen) :]:
            seen.append(value)
            outcome = parse_record(value, index)
            reasons.update(r.reason for r in outcome.rejections)
        return {"bad_json", "not_object", "unknown_type"} <= reasons

    seen: list[bytes] = []
    await read_all(
        kafka_bootstrap,
        ["ioc.events.health"],
        keep=lambda _t, value: prefix in value,
        until=classify,
    )
    assert {"bad_json", "not_object", "unknown_type"} <= reasons
