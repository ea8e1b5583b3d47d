"""The HTTP ingest API against the real broker and PostgreSQL, as a department system uses it."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consumers.migrations import migrate
from foundation.auth.api_keys import KeyId, generate_key
from foundation.auth.key_store import KeyStore, open_pool
from foundation.intake import IntakePause, clear_pause, read_ack, write_pause
from foundation.settings import load_settings
from ioc.api_server import openapi_document, run_api_server
from tests.plugins.services import CliResult, ConsumedRecord, IocProcess, events_in, read_records

pytestmark = pytest.mark.integration

Cli = Callable[..., CliResult]
StartIoc = Callable[..., IocProcess]
TOPIC = "ioc.events.health"
SOURCE = "his-bvdk-tinh"
KEY_PATTERN = re.compile(r"^iock_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$", re.MULTILINE)


@dataclass
class IngestServer:
    """An in-process ingest API on a free port, its database and a key store on it."""

    url: str
    database_url: str
    store: KeyStore
    http: aiohttp.ClientSession
    state_dir: Path

    async def key(self, source: str = SOURCE, sector: str = "health") -> str:
        new, _record = await self.store.create(source=source, sector=sector)
        return new.token

    async def post(
        self, body: Any, key: str | None, *, raw: bytes | None = None, header: str = "bearer"
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers.update(
                {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
            )
        data = raw if raw is not None else json.dumps(body).encode()
        # aiohttp warns about large raw bytes bodies; a BytesIO body still sends Content-Length.
        payload = io.BytesIO(data) if len(data) > 1024 * 1024 else data
        async with self.http.post(f"{self.url}/v1/events", data=payload, headers=headers) as resp:
            answer: dict[str, Any] = await resp.json()
            return resp.status, answer


@pytest.fixture
async def ingest(
    kafka_bootstrap: str, contract_topics: list[str], fresh_database: str, state_dir: Path
) -> AsyncIterator[IngestServer]:
    """Migrate a fresh database, start the API on port 0 (key cache TTL 0.5 s), stop it after."""
    await migrate(fresh_database, connect_timeout=10)
    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=fresh_database,
        ingest_host="127.0.0.1",
        ingest_port=0,
        ingest_key_cache_ttl=0.5,
        state_dir=state_dir,
    )
    loop = asyncio.get_running_loop()
    listening: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(
        run_api_server(
            settings,
            bootstrap_servers=kafka_bootstrap,
            database_url=fresh_database,
            stop=stop,
            announce=listening.set_result,
        )
    )
    started: set[asyncio.Future[Any]] = {server, listening}
    done, _pending = await asyncio.wait(started, timeout=30, return_when="FIRST_COMPLETED")
    if server in done:
        server.result()  # raises the start-up error
    assert listening in done, "the ingest API did not start within 30 s"
    pool = await open_pool(fresh_database, timeout=10, max_size=2)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        yield IngestServer(listening.result(), fresh_database, KeyStore(pool=pool), http, state_dir)
    finally:
        await http.close()
        await pool.close()
        stop.set()
        await asyncio.wait_for(server, 30)


def _event(run: str, n: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"{run}-{n}",
        "source": SOURCE,
        "sector": "health",
        "type": "bed_occupancy",
        "occurred_at": datetime.now(UTC).isoformat(),
        "value": 80.0 + n,
        "unit": "%",
        "district": "dong-xoai",
    }
    event.update(changes)
    return event


async def _records_with(
    bootstrap: str, run: str, event_ids: set[str], timeout: float = 30
) -> list[ConsumedRecord]:
    """Records of this run on the health topic, read until every id in event_ids was seen."""

    def seen(records: list[ConsumedRecord]) -> bool:
        found = {e.get("event_id") for r in records for e in events_in(r)}
        return event_ids <= found

    return await read_records(
        bootstrap, TOPIC, until=seen, keep=lambda r: run.encode() in r.value, timeout=timeout
    )


async def _poll_status(check: Callable[[], Any], expected: int, timeout: float = 10) -> None:
    """Repeat a request until it answers `expected` (e.g. a revoke reaching the cache)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = (await check())[0]
        if status == expected:
            return
        assert loop.time() < deadline, f"still {status}, not {expected}, after {timeout} s"
        await asyncio.sleep(0.1)


async def test_one_event_and_a_batch_land_on_the_sector_topic(
    ingest: IngestServer, kafka_bootstrap: str
) -> None:
    """A posted object and a posted batch are each accepted and each land as one record."""
    run = uuid.uuid4().hex[:10]
    key = await ingest.key()
    status, single = await ingest.post(_event(run, 0), key)
    assert status == 202, single
    assert (single["accepted"], single["rejected"]) == (1, 0)
    batch = [_event(run, n) for n in range(1, 4)]
    status, many = await ingest.post(batch, key, header="x-api-key")
    assert status == 202, many
    assert many["accepted"] == 3 and [r["index"] for r in many["results"]] == [0, 1, 2]

    records = await _records_with(kafka_bootstrap, run, {f"{run}-{n}" for n in range(4)})
    assert len(records) == 2
    by_offset = {(r.partition, r.offset): r for r in records}
    for answer, ids in ((single, [f"{run}-0"]), (many, [f"{run}-{n}" for n in range(1, 4)])):
        first = answer["results"][0]
        assert first["topic"] == TOPIC
        record = by_offset[(first["partition"], first["offset"])]
        assert record.key == SOURCE.encode()
        assert [e["event_id"] for e in events_in(record)] == ids
        assert [r["record_index"] for r in answer["results"]] == list(range(len(ids)))


async def test_mixed_batch_publishes_the_good_as_one_record_and_reports_the_bad(
    ingest: IngestServer, kafka_bootstrap: str
) -> None:
    """Bad events are reported by index and reason; the good ones share one Kafka record."""
    run = uuid.uuid4().hex[:10]
    key = await ingest.key()
    batch: list[Any] = [
        _event(run, 0),
        _event(run, 1, type="no_such_type"),
        _event(run, 2),
        "not an event",
        _event(run, 4, value=None),
        _event(run, 5, occurred_at="yesterday"),
        _event(run, 6, colour="red"),
        _event(run, 7),
    ]
    status, body = await ingest.post(batch, key)
    assert status == 202, body
    assert (body["accepted"], body["rejected"], body["failed"]) == (3, 5, 0)
    outcome = [(r["index"], r["status"], r["reason"]) for r in body["results"]]
    assert outcome == [
        (0, "accepted", None),
        (1, "rejected", "unknown_type"),
        (2, "accepted", None),
        (3, "rejected", "not_object"),
        (4, "rejected", "missing_field:value"),
        (5, "rejected", "bad_timestamp"),
        (6, "rejected", "unknown_field:colour"),
        (7, "accepted", None),
    ]
    accepted = [r for r in body["results"] if r["status"] == "accepted"]
    assert len({(r["partition"], r["offset"]) for r in accepted}) == 1
    assert [r["record_index"] for r in accepted] == [0, 1, 2]

    records = await _records_with(kafka_bootstrap, run, {f"{run}-0", f"{run}-2", f"{run}-7"})
    assert len(records) == 1
    assert [e["event_id"] for e in events_in(records[0])] == [f"{run}-0", f"{run}-2", f"{run}-7"]


async def test_all_rejected_is_422(ingest: IngestServer) -> None:
    """A request whose every event is invalid answers 422 all_rejected with per-event reasons."""
    key = await ingest.key()
    status, body = await ingest.post([_event("x", 0, value=1e400)], key)
    assert status == 422 and body["reason"] == "all_rejected", body
    assert body["results"][0]["reason"] == "not_finite" and body["accepted"] == 0


async def test_a_key_publishes_only_for_its_source_and_sector(
    ingest: IngestServer, kafka_bootstrap: str
) -> None:
    """Another source or sector in any event refuses the whole request with 403 and the index."""
    run = uuid.uuid4().hex[:10]
    hospital = await ingest.key()
    cdc = await ingest.key("cdc-giam-sat")
    status, body = await ingest.post(
        [_event(run, 0), _event(run, 1, source="cdc-giam-sat")], hospital
    )
    assert status == 403 and body["reason"] == "forbidden_source" and body["index"] == 1, body
    status, body = await ingest.post(_event(run, 2), cdc)
    assert status == 403 and body["reason"] == "forbidden_source" and body["index"] == 0, body
    status, body = await ingest.post(_event(run, 3, sector="traffic"), hospital)
    assert status == 403 and "sector 'traffic'" in body["detail"], body

    # Same source, same partition: once the sentinel is read, nothing refused came before it.
    status, _body = await ingest.post(_event(run, 99), hospital)
    assert status == 202
    records = await _records_with(kafka_bootstrap, run, {f"{run}-99"})
    seen = [e["event_id"] for r in records for e in events_in(r)]
    assert seen == [f"{run}-99"]


async def test_missing_malformed_unknown_wrong_and_revoked_keys_are_401(
    ingest: IngestServer,
) -> None:
    """Every way of not holding a valid key answers 401 unauthorized; a revoke takes effect."""
    key = await ingest.key()
    event = _event(uuid.uuid4().hex[:10], 0)
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    unknown = generate_key().token  # well-formed, never stored
    for presented in (None, "nonsense", unknown, wrong_secret):
        status, body = await ingest.post(event, presented)
        assert status == 401 and body["reason"] == "unauthorized", (presented, body)

    status, body = await ingest.post(event, key)
    assert status == 202, body
    revoked = await ingest.store.revoke(KeyId(key.split("_")[1]))
    assert revoked is not None and revoked.revoked_at is not None
    await _poll_status(lambda: ingest.post(event, key), 401, timeout=10)


async def test_request_level_refusals(ingest: IngestServer) -> None:
    """Oversize → 413; bad JSON, scalars, empty and oversized batches → 400, each with its code."""
    key = await ingest.key()
    big = [_event("big", n, data={"blob": "x" * 60_000}) for n in range(20)]  # about 1.2 MB
    status, body = await ingest.post(big, key)
    assert status == 413 and body["reason"] == "too_large", body
    cases = [
        (b"{not json", "bad_json"),
        (b'"just a string"', "not_object"),
        (b"[]", "empty_batch"),
        (json.dumps([{}] * 1001).encode(), "batch_too_large"),
    ]
    for raw, reason in cases:
        status, body = await ingest.post(None, key, raw=raw)
        assert status == 400 and body["reason"] == reason, (reason, body)


async def test_413_without_content_length(ingest: IngestServer) -> None:
    """A chunked body over 1 MiB is cut off by the server's own limit, still with a code."""
    key = await ingest.key()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"["
        for _ in range(40):
            yield b'"' + b"x" * 30_000 + b'",'
        yield b"1]"

    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with ingest.http.post(f"{ingest.url}/v1/events", data=chunks(), headers=headers) as resp:
        assert resp.status == 413
        assert (await resp.json())["reason"] == "too_large"


async def test_openapi_health_and_metrics(ingest: IngestServer) -> None:
    """The served document is the hand-written one; health is green; metrics count outcomes."""
    key = await ingest.key()
    await ingest.post([_event("m", 0), _event("m", 1, type="nope")], key)
    async with ingest.http.get(f"{ingest.url}/openapi.json") as resp:
        assert resp.status == 200 and await resp.json() == openapi_document()
    async with ingest.http.get(f"{ingest.url}/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    async with ingest.http.get(f"{ingest.url}/nowhere") as resp:
        assert resp.status == 404 and (await resp.json())["reason"] == "not_found"
    async with ingest.http.get(f"{ingest.url}/metrics") as resp:
        text = await resp.text()
    assert 'ioc_ingest_requests_total{status="202"} 1.0' in text
    assert 'ioc_ingest_requests_total{status="404"} 1.0' in text
    assert 'ioc_ingest_events_accepted_total{sector="health"} 1.0' in text
    assert 'ioc_ingest_events_rejected_total{reason="unknown_type",sector="health"} 1.0' in text


async def test_a_pause_answers_503_paused_closes_the_producer_and_a_resume_reopens_it(
    ingest: IngestServer, kafka_bootstrap: str
) -> None:
    """`ioc up`'s pause file: 503 `paused` with Retry-After, /healthz `paused`, an ack with
    this process's pid once nothing is in flight; after the file goes, events flow again."""
    import os

    key = await ingest.key()
    assert (await ingest.post(_event("p", 0), key))[0] == 202
    write_pause(ingest.state_dir, IntakePause(token="t-1", reason="test", since=1.0, retry_after=7))

    async def acked() -> bool:
        ack = read_ack(ingest.state_dir, os.getpid())
        return ack is not None and ack.token == "t-1"

    for _ in range(100):
        if await acked():
            break
        await asyncio.sleep(0.05)
    assert await acked(), "the API did not confirm the pause"
    async with ingest.http.post(
        f"{ingest.url}/v1/events",
        json=_event("p", 1),
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "7"
        assert (await resp.json())["reason"] == "paused"
    async with ingest.http.get(f"{ingest.url}/healthz") as resp:
        health = await resp.json()
        assert resp.status == 503 and health["status"] == "paused", health
    clear_pause(ingest.state_dir)
    await _poll_status(lambda: ingest.post(_event("p", 2), key), 202)
    async with ingest.http.get(f"{ingest.url}/healthz") as resp:
        assert resp.status == 200
    await _records_with(kafka_bootstrap, "p-", {"p-0", "p-2"})


async def test_cli_keys_create_list_revoke(ingest: IngestServer, ioc_cli: Cli) -> None:
    """`ioc keys create` prints a key once that works; list hides secrets; revoke stops it."""
    env = {"DATABASE_URL": ingest.database_url}
    created = await asyncio.to_thread(ioc_cli, "keys", "create", SOURCE, env=env)
    assert created.returncode == 0, created.stderr
    assert KEY_PATTERN.fullmatch(created.stdout.strip()), created.stdout
    key = created.stdout.strip()
    key_id = key.split("_")[1]
    assert f"created key {key_id} for {SOURCE} (health)" in created.stderr

    status, body = await ingest.post(_event(uuid.uuid4().hex[:10], 0), key)
    assert status == 202, body

    listed = await asyncio.to_thread(ioc_cli, "keys", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["key_id"] for r in rows] == [key_id] and rows[0]["revoked_at"] is None
    secret = key.split("_", 2)[2]  # the secret itself may hold "_" (URL-safe base64)
    assert secret not in listed.stdout

    revoked = await asyncio.to_thread(ioc_cli, "keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0 and f"revoked key {key_id}" in revoked.stdout
    await _poll_status(lambda: ingest.post(_event("r", 0), key), 401, timeout=10)

    unknown = await asyncio.to_thread(ioc_cli, "keys", "create", "his-bvdk-tinhh", env=env)
    assert unknown.returncode == 1
    assert (
        unknown.stderr.startswith("ioc: error [unknown_source]")
        and "his-bvdk-tinh" in unknown.stderr
    )
    missing = await asyncio.to_thread(ioc_cli, "keys", "revoke", "0123456789ab", env=env)
    assert missing.returncode == 1 and "[unknown_api_key]" in missing.stderr


async def test_ingest_api_command_prints_its_url_and_stops_on_sigterm(
    ioc_process: StartIoc,
    ioc_cli: Cli,
    kafka_bootstrap: str,
    contract_topics: list[str],
    fresh_database: str,
) -> None:
    """`ioc ingest-api --port 0` serves a key made by `ioc keys create`, and exits 0 on SIGTERM."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": fresh_database}
    migrated = await asyncio.to_thread(ioc_cli, "db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    created = await asyncio.to_thread(ioc_cli, "keys", "create", SOURCE, env=env)
    key = created.stdout.strip()

    api = ioc_process("ingest-api", "--port", "0", env=env)
    await asyncio.to_thread(api.wait_for_output, "ready:", 60)
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", api.output())
    assert match, api.output()
    url = match.group(1)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
        event = _event(uuid.uuid4().hex[:10], 0)
        async with http.post(f"{url}/v1/events", json=event, headers=headers) as resp:
            assert resp.status == 202, await resp.text()

    api.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(api.proc.wait, 30)
    assert code == 0, api.output()
    assert "stopped" in api.output()
