"""The published contract against real runs: every record the simulators and the worker
produce validates against its topic's JSON Schema, and `ioc contract export` writes them."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from jsonschema import Draft202012Validator

from foundation.contract.catalog import Catalog, load_catalog
from foundation.contract.envelope import ContractIndex, parse_record
from foundation.contract.published import record_kinds
from foundation.contract.schemas import schema_documents, topic_schema_path
from producers.sdk import Publisher
from tests.plugins.services import CliResult, ConsumedRecord, eventually, read_records
from tests.plugins.worker import ShortCatalog, WorkerProcess

pytestmark = pytest.mark.integration

Cli = Callable[..., CliResult]
FORMATS = Draft202012Validator.FORMAT_CHECKER
CODE_ONLY = {"source_mismatch", "too_large", "future_timestamp"}  # README: rules no schema has


def topic_validators(catalog: Catalog) -> dict[str, Draft202012Validator]:
    """topic → a validator of any record on it, from the documents of this catalog."""
    documents = schema_documents(catalog)
    topics = [
        *catalog.sector_topics,
        "ioc.kpi",
        "ioc.alerts",
        "ioc.alert-actions",
        "ioc.deadletter",
    ]
    return {
        topic: Draft202012Validator(documents[topic_schema_path(topic)], format_checker=FORMATS)
        for topic in topics
    }


def key_validators(catalog: Catalog) -> dict[str, Draft202012Validator]:
    """record kind (`kind` field, or the dead letter's name) → a validator of its Kafka key."""
    return {
        get_args(kind.fields["kind"].hint)[0] if "kind" in kind.fields else kind.name: (
            Draft202012Validator(kind.key)
        )
        for kind in record_kinds(catalog)
    }


async def read_topics(
    bootstrap: str,
    topics: list[str],
    *,
    keep: Callable[[ConsumedRecord], bool],
    until: Callable[[list[ConsumedRecord]], bool],
    timeout: float = 30,
) -> list[ConsumedRecord]:
    """The kept records of several topics, from the start, until `until` holds (polled)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    kept: list[ConsumedRecord] = []
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
                for records in batch.values():
                    for r in records:
                        record = ConsumedRecord(
                            r.topic, r.partition, r.offset, r.key, r.value or b""
                        )
                        if keep(record):
                            kept.append(record)
    finally:
        await consumer.stop()
    return kept


def run_prefix(output: str) -> bytes:
    match = re.search(r"run (sim\S+)", output)
    assert match, output
    return (match.group(1) + "-").encode()


async def test_every_simulated_record_validates_against_its_topic_schema(
    ioc_cli: Cli, kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """A short run of all sectors: each record (an event or a batch) is valid for its topic."""
    catalog = load_catalog()
    validators = topic_validators(catalog)
    result = ioc_cli(
        "simulate", "--count", "500", "--seed", "21", "--rate", "500",
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    prefix = run_prefix(result.stdout)

    def events(records: list[ConsumedRecord]) -> int:
        return sum(len(r.value.split(b'"event_id"')) - 1 for r in records)

    records = await read_topics(
        kafka_bootstrap,
        catalog.sector_topics,
        keep=lambda r: prefix in r.value,
        until=lambda kept: events(kept) >= 500,
    )
    for record in records:
        value = json.loads(record.value)
        validators[record.topic].validate(value)
        assert record.key is not None  # the key is the events' source
        assert {e["source"] for e in (value if isinstance(value, list) else [value])} == {
            record.key.decode()
        }
    assert len({r.topic for r in records}) >= 5


async def test_raw_malformed_records_get_the_same_verdict_from_code_and_schema(
    ioc_cli: Cli, kafka_bootstrap: str, contract_topics: list[str]
) -> None:
    """The simulator's broken records: the code refuses them, and so does the schema (or JSON)."""
    catalog = load_catalog()
    index = ContractIndex(catalog)
    health = topic_validators(catalog)["ioc.events.health"]
    result = ioc_cli(
        "simulate", "--count", "600", "--seed", "22", "--rate", "600", "--sectors", "health",
        "--scenario", "malformed", "--scenario-after", "0", "--raw-malformed",
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    prefix = run_prefix(result.stdout)
    verdicts: dict[str, int] = {}

    def judge(kept: list[ConsumedRecord]) -> bool:
        for record in kept[sum(verdicts.values()) :]:
            key = record.key.decode() if record.key else None
            outcome = parse_record(record.value, index, now=time.time(), key=key)
            try:
                decoded = json.loads(record.value, parse_constant=_not_json)
            except ValueError:
                schema_ok = False
            else:
                schema_ok = health.is_valid(decoded)
            code_ok = not outcome.rejections
            reasons = {r.reason for r in outcome.rejections}
            if code_ok or not reasons <= CODE_ONLY:
                assert schema_ok == code_ok, (reasons, record.value[:300])
            verdict = "valid" if code_ok else min(reasons)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
        return len(verdicts) >= 6 and verdicts.get("valid", 0) > 0

    await read_topics(
        kafka_bootstrap, ["ioc.events.health"], keep=lambda r: prefix in r.value, until=judge
    )
    assert {"bad_json", "not_object"} <= set(verdicts), verdicts


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _reading(short: ShortCatalog, n: int, ts: float, source: str = "a") -> dict[str, Any]:
    return {
        "event_id": f"{short.sector}-contract-{n}",
        "source": f"{short.sector}-{source}",
        "sector": short.sector,
        "type": "reading",
        "occurred_at": datetime.fromtimestamp(ts, UTC).isoformat(),
        "value": 1.0,
        "district": "dong-xoai",
    }


async def test_every_record_the_worker_publishes_validates_against_its_topic_schema(
    stream_workers: Callable[..., WorkerProcess],
    short_catalog: ShortCatalog,
    kafka_bootstrap: str,
    ioc_cli: Cli,
) -> None:
    """KPI points, freshness, sector last-seen, alert transitions, an officer's action and dead
    letters of a real worker run: each validates, and its key fits its kind."""
    sector, catalog = short_catalog.sector, short_catalog.catalog
    validators = topic_validators(catalog)
    keys = key_validators(catalog)
    worker = stream_workers()
    worker.wait_ready()
    async with Publisher(bootstrap_servers=kafka_bootstrap, catalog=catalog) as pub:
        await eventually(lambda: time.time() % 5 <= 1.0, 6, "the start of a 5 s window")
        now = time.time()
        burst = [_reading(short_catalog, n, now) for n in range(40)]  # fires burst_high (> 30)
        old = _reading(short_catalog, 99, now - 3600, source="b")  # past every grace: too_late
        assert all(r.ok for r in await pub.send_many([*burst, old]))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        key = f"{sector}-a".encode()
        bad_type = dict(_reading(short_catalog, 100, now), type="teleport")
        batch = [_reading(short_catalog, 101, now), bad_type]
        for value in (b"{not json", json.dumps(bad_type).encode(), json.dumps(batch).encode()):
            await producer.send_and_wait(short_catalog.topic, value, key=key)
    finally:
        await producer.stop()

    def alert_of(record: ConsumedRecord) -> bool:
        return bool(json.loads(record.value)["labels"]["sector"] == sector)

    fired = await read_records(
        kafka_bootstrap, "ioc.alerts", keep=alert_of,
        until=lambda rs: any(json.loads(r.value)["transition"] == "fire" for r in rs), timeout=60,
    )  # fmt: skip
    fingerprint = json.loads(fired[0].value)["fingerprint"]
    ack = ioc_cli("alerts", "ack", fingerprint, "--by", "Nguyễn Văn An", "--note", "đã gọi",
                  env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})  # fmt: skip
    assert ack.returncode == 0, ack.stderr

    def transitions(records: list[ConsumedRecord]) -> set[str]:
        return {json.loads(r.value)["transition"] for r in records}

    alerts = await read_records(
        kafka_bootstrap, "ioc.alerts", keep=alert_of,
        until=lambda rs: {"fire", "ack", "note"} <= transitions(rs), timeout=60,
    )  # fmt: skip
    actions = await read_records(
        kafka_bootstrap, "ioc.alert-actions",
        keep=lambda r: json.loads(r.value).get("fingerprint") == fingerprint,
        until=lambda rs: len(rs) >= 1,
    )  # fmt: skip

    def kpi_of(record: ConsumedRecord) -> bool:
        key = (record.key or b"").decode()
        return key.startswith((f"{sector}.", f"freshness|{sector}-", f"sector|{sector}"))

    def kinds(records: list[ConsumedRecord]) -> set[str]:
        return {json.loads(r.value)["kind"] for r in records}

    kpi = await read_records(
        kafka_bootstrap, "ioc.kpi", keep=kpi_of,
        until=lambda rs: {"kpi", "freshness", "sector_seen"} <= kinds(rs)
        and any(json.loads(r.value).get("final") for r in rs),
        timeout=60,
    )  # fmt: skip

    def reasons(records: list[ConsumedRecord]) -> set[str]:
        return {json.loads(r.value)["reason"] for r in records}

    dead = await read_records(
        kafka_bootstrap, "ioc.deadletter",
        keep=lambda r: json.loads(r.value)["topic"] == short_catalog.topic,
        until=lambda rs: {"bad_json", "unknown_type", "too_late"} <= reasons(rs)
        and any(json.loads(r.value)["index"] == 1 for r in rs) and len(rs) >= 4,
        timeout=60,
    )  # fmt: skip
    for record in [*alerts, *actions, *kpi, *dead]:
        value = json.loads(record.value)
        validators[record.topic].validate(value)
        kind = value.get("kind", "DeadLetter")
        keys[kind].validate((record.key or b"").decode())


def test_contract_export_writes_the_documents(ioc_cli: Cli, tmp_path: Path) -> None:
    """`ioc contract export DIR` writes asyncapi.json and the schemas, as the gateway serves."""
    result = ioc_cli("contract", "export", str(tmp_path / "contract"))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "contract"
    asyncapi = json.loads((root / "asyncapi.json").read_text(encoding="utf-8"))
    assert asyncapi["asyncapi"] == "3.0.0"
    index = json.loads((root / "schemas" / "index.json").read_text(encoding="utf-8"))
    assert len(index["documents"]) > 10, index  # the topics and every record kind
    for entry in index["documents"]:
        document = json.loads((root / entry["path"]).read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(document)
    assert (root / "schemas" / "topics" / "ioc.events.health.json").exists()
    refused = ioc_cli("contract", "export", "/proc/ioc-contract")
    assert refused.returncode == 1 and "[bad_setting]" in refused.stderr
    assert "Traceback" not in refused.stderr
