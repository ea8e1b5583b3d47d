"""The ingest and history APIs under hostile requests (issue 13), on one real server.

One `run_api_server` (ingest API + history API, real broker, real PostgreSQL) serves the
whole module from a thread of its own, so that both raw `http.client` requests (exact
bytes) and schemathesis (synchronous `requests`) can reach it. No answer is a 5xx, none
shows the database's text, every one says `nosniff`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import http.client
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from consumers.migrations import migrate
from foundation.auth.key_store import KeyStore, open_pool
from foundation.auth.tokens import issue_token
from foundation.contract.topics import DEADLETTER
from foundation.settings import load_settings
from ioc.api_server import run_api_server
from tests.plugins.services import run_sync
from tests.plugins.storage import WriterFactory, produce

pytestmark = pytest.mark.integration

SECRET = "api-hostile-secret-0123456789abcdef"
# What a database's error text looks like; no answer may carry any of it.
DATABASE_WORDS = ("psycopg", "PostgreSQL", "ERROR:", "SQL", "Traceback", "0x00", "relation ")


@dataclass
class ApiServer:
    """The running server and the credentials of the module's callers."""

    url: str
    database_url: str
    hospital_key: str  # his-bvdk-tinh (health)
    cdc_key: str  # cdc-giam-sat (health, another department)
    token: str  # an officer of every sector

    def token_of(self, *sectors: str) -> str:
        token, _claims = issue_token(
            SECRET.encode(), role="officer", name="Trực ban", sectors=sectors or None,
            now=time.time(), ttl=3600,
        )  # fmt: skip
        return token

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, bytes | str],
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request with exactly these bytes; (status, headers, body)."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


async def _keys(url: str) -> tuple[str, str]:
    pool = await open_pool(url, timeout=10)
    try:
        store = KeyStore(pool=pool)
        hospital, _ = await store.create(source="his-bvdk-tinh", sector="health")
        cdc, _ = await store.create(source="cdc-giam-sat", sector="health")
    finally:
        await pool.close()
    return hospital.token, cdc.token


@pytest.fixture(scope="module")
def api(database_url: str, kafka_bootstrap: str, contract_topics: list[str]) -> Iterator[ApiServer]:
    """A migrated database of its own and `run_api_server` on a free port, in a thread."""
    name = f"t_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    run_sync(migrate(url, connect_timeout=10))
    hospital, cdc = run_sync(_keys(url))
    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap, database_url=url, ingest_host="127.0.0.1",
        ingest_port=0, gateway_token_secret=SECRET, ingest_key_cache_ttl=0.0,
    )  # fmt: skip
    started: concurrent.futures.Future[str] = concurrent.futures.Future()
    control: dict[str, Any] = {}

    async def serve() -> None:
        control["loop"], control["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await run_api_server(
            settings, bootstrap_servers=kafka_bootstrap, database_url=url,
            stop=control["stop"], announce=started.set_result,
        )  # fmt: skip

    def thread_main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # the test sees it through the future
            if not started.done():
                started.set_exception(exc)

    thread = threading.Thread(target=thread_main, name="api-server", daemon=True)
    thread.start()
    try:
        base = started.result(timeout=60)
        server = ApiServer(base, url, hospital, cdc, "")
        server.token = server.token_of()
        yield server
    finally:
        if "loop" in control:
            control["loop"].call_soon_threadsafe(control["stop"].set)
        thread.join(60)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _check_answer(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What holds for every answer: no 5xx, nosniff, JSON without database text."""
    assert status < 500, (status, body[:300])
    assert headers.get("X-Content-Type-Options") == "nosniff", headers
    text = body.decode()
    for word in DATABASE_WORDS:
        assert word not in text, (word, text[:300])
    answer: dict[str, Any] = json.loads(text)
    return answer


def _cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).rstrip(b"=").decode()


TOKEN = "token"  # placeholder for the module's officer token in the cases below
H = "/v1/history"
HISTORY_CASES: list[tuple[str, dict[str, bytes | str], int, str, str]] = [
    # (target, headers, status, error code, a piece of the detail)
    (f"{H}/alerts", {"Authorization": b"Bearer iot1.\xc3\xa9.x"}, 401, "unauthorized", ""),
    (f"{H}/alerts", {"Authorization": b"Bearer iot1.\xff\xfe.x"}, 401, "unauthorized", ""),
    (f"{H}/alerts", {"X-API-Key": b"iock_\xc3\xa9"}, 401, "unauthorized", ""),
    (f"{H}/kpis/health.bed_occupancy_pct/series?from=-99999999999&to=-99999990000&bucket=1h",
     {}, 400, "bad_range", "1970-01-01T00:00:00Z"),
    (f"{H}/alerts?from=0001-01-01T00:00:00%2B07:00&to=0001-01-02T00:00:00%2B07:00",
     {}, 400, "bad_range", "9999-01-01T00:00:00Z"),
    (f"{H}/dead-letters?from=-90000000000&to=-89999990000", {}, 400, "bad_range", "1970"),
    (f"{H}/kpis/health.bed_occupancy_pct/series?from=1e400", {}, 400, "bad_range", ""),
    (f"{H}/kpis/health.bed_occupancy_pct/series?to=9999-12-31T23:59:59-14:00",
     {}, 400, "bad_range", ""),
    (f"{H}/kpis/health.bed_occupancy_pct/events?window_start=-1e15", {}, 400, "bad_range", ""),
    (f"{H}/alerts?fingerprint=%00", {}, 400, "bad_parameter", "NUL"),
    (f"{H}/alerts?fingerprint=a%00b&state=firing", {}, 400, "bad_parameter", ""),
    (f"{H}/alerts?state=%00", {}, 400, "bad_parameter", ""),
    (f"{H}/alerts?sector=%00", {}, 400, "bad_parameter", ""),
    (f"{H}/dead-letters?source=%00", {}, 400, "bad_parameter", ""),
    (f"{H}/dead-letters?reason=%00", {}, 400, "bad_parameter", ""),
    (f"{H}/alerts?%00=1", {}, 400, "bad_parameter", ""),
    (f"{H}/kpis/%00/series", {}, 400, "bad_parameter", ""),
    (f"{H}/sectors/health%00/latest", {}, 400, "bad_parameter", ""),
    (f"{H}/alerts?cursor=" + _cursor([{"t": "2026-01-01T00:00:00+00:00"}, "\x00", 1]),
     {}, 400, "bad_cursor", ""),
    (f"{H}/alerts?cursor=" + _cursor([{"t": "0001-01-01T00:00:00+14:00"}, "fp", 1]),
     {}, 400, "bad_cursor", ""),
    (f"{H}/dead-letters?cursor=" + _cursor([{"t": "2026-01-01T00:00:00+00:00"}, 2**70, 1]),
     {}, 400, "bad_cursor", ""),
    (f"{H}/alerts?cursor=" + _cursor([{"t": "2026-01-01T00:00:00+00:00"}, "\ud800", 1]),
     {}, 400, "bad_cursor", ""),
]  # fmt: skip


@pytest.mark.parametrize(("target", "headers", "status", "code", "detail"), HISTORY_CASES)
def test_hostile_history_requests_get_a_4xx_with_a_code(
    api: ApiServer,
    target: str,
    headers: dict[str, bytes | str],
    status: int,
    code: str,
    detail: str,
) -> None:
    """Tokens of any bytes, times outside the supported range, NUL and other bytes the
    database refuses, in parameters, paths and cursors: 4xx with a code, never a 5xx."""
    sent = headers or {"Authorization": f"Bearer {api.token}"}
    got, answer_headers, body = api.request("GET", target, sent)
    answer = _check_answer(got, answer_headers, body)
    assert (got, answer["error"]) == (status, code), answer
    assert detail in answer["detail"]


def test_a_request_aiohttp_cannot_parse_is_a_400_logged_once(
    api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL in a header is not HTTP: aiohttp answers 400 itself (no JSON, no nosniff:
    no application sees it); the log gets one line a minute, not a traceback each."""
    caplog.set_level(logging.INFO)
    for _ in range(10):
        got, _headers, _body = api.request("GET", f"{H}/alerts", {"Authorization": b"x\x00y"})
        assert got == 400
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    assert len([r for r in caplog.records if "malformed HTTP" in r.getMessage()]) <= 1


def test_undecodable_query_bytes_are_never_a_5xx(api: ApiServer) -> None:
    """Percent-escapes of a surrogate, of invalid UTF-8, of every control byte."""
    headers = {"Authorization": f"Bearer {api.token}"}
    for value in ("%ED%A0%80", "%FF%FE", "%C3", *(f"%{b:02X}" for b in range(32))):
        for target in (
            f"{H}/alerts?fingerprint={value}",
            f"{H}/dead-letters?source={value}",
            f"{H}/kpis/health.bed_occupancy_pct/series?group={value}",
        ):
            got, answer_headers, body = api.request("GET", target, headers)
            _check_answer(got, answer_headers, body)


def _event(**changes: Any) -> dict[str, Any]:
    return {
        "event_id": f"api-{uuid.uuid4().hex[:12]}", "source": "his-bvdk-tinh",
        "sector": "health", "type": "bed_occupancy",
        "occurred_at": "2026-01-01T08:00:00+07:00", "value": 80.0,
    } | changes  # fmt: skip


INGEST_CASES: list[tuple[dict[str, bytes | str], bytes, int, str]] = [
    # (headers besides the key, body, status, reason: request's, or the event's on 422)
    ({"Content-Type": "text/plain"}, json.dumps(_event()).encode(), 415, "unsupported_media_type"),
    ({}, json.dumps(_event()).encode(), 415, "unsupported_media_type"),
    ({"Content-Type": "application/json; charset=utf-16"}, json.dumps(_event()).encode("utf-16"),
     415, "unsupported_media_type"),
    ({"Content-Type": "application/json; charset=latin-1"}, b"{}", 415, "unsupported_media_type"),
    ({"Content-Type": "application/json"}, json.dumps(_event()).encode("utf-16"), 400, "bad_json"),
    ({"Content-Type": "application/json"}, b'{"event_id": "\xed\xa0\x80"}', 400, "bad_json"),
    ({"Content-Type": "application/json"}, b"[" * 100_000, 400, "bad_json"),
    ({"Content-Type": "application/json; charset=UTF-8"},
     json.dumps(_event(data={"note": "\ud800"})).encode(), 422, "bad_text:data"),
    ({"Content-Type": "application/json"}, json.dumps(_event(event_id="\udfff")).encode(),
     422, "bad_text:event_id"),
    ({"Content-Type": "application/json"}, json.dumps(_event(data={"n": "a\x00b"})).encode(),
     422, "bad_text:data"),
    ({"Content-Type": "application/json"}, json.dumps(_event(data={"x": float("nan")})).encode(),
     422, "not_finite"),
    ({"Content-Type": "application/json"},
     json.dumps(_event(occurred_at="0001-01-01T00:00:00+14:00")).encode(), 422, "bad_timestamp"),
    ({"Content-Type": "application/json"}, json.dumps(_event(**{"x" * 3000: 1})).encode(),
     422, "unknown_field:?"),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "body", "status", "reason"), INGEST_CASES)
def test_hostile_ingest_requests_get_a_4xx_with_a_reason(
    api: ApiServer, headers: dict[str, bytes | str], body: bytes, status: int, reason: str
) -> None:
    """Content types, encodings, unstorable text and numbers: 4xx with a reason code, the
    same codes the worker gives the same event over Kafka."""
    sent = {"Authorization": f"Bearer {api.hospital_key}", **headers}
    got, answer_headers, raw = api.request("POST", "/v1/events", sent, body)
    answer = _check_answer(got, answer_headers, raw)
    assert got == status, answer
    found = answer["results"][0]["reason"] if status == 422 else answer["reason"]
    assert found == reason, answer


@pytest.mark.parametrize(
    "authorization", [b"Bearer iot1.\xc3\xa9.x", b"Bearer \xff", b"Bearer iock_" + b"x" * 5000]
)
def test_ingest_keys_of_any_bytes_are_401(api: ApiServer, authorization: bytes) -> None:
    got, headers, raw = api.request(
        "POST",
        "/v1/events",
        {"Authorization": authorization, "Content-Type": "application/json"},
        json.dumps(_event()).encode(),
    )
    assert (got, _check_answer(got, headers, raw)["reason"]) == (401, "unauthorized")


def test_every_answer_of_both_apis_says_nosniff(api: ApiServer) -> None:
    """Successes, refusals, aiohttp's own 404/405, the document and the metrics."""
    token = {"Authorization": f"Bearer {api.token}"}
    for method, target, headers in (
        ("GET", "/healthz", {}),
        ("GET", "/metrics", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/nowhere", {}),
        ("DELETE", "/v1/events", {}),
        ("GET", f"{H}/alerts", token),
        ("GET", f"{H}/nowhere", token),
        ("POST", f"{H}/alerts", token),
        ("GET", f"{H}/sectors/health/latest", token),
    ):
        got, answer_headers, _body = api.request(method, target, headers)
        assert got < 500 and answer_headers.get("X-Content-Type-Options") == "nosniff", (
            method,
            target,
            got,
        )


async def test_dead_letters_belong_to_their_sender(
    api: ApiServer, kafka_bootstrap: str, writer_factory: WriterFactory
) -> None:
    """Through the real writer: a department's key reads every dead letter of records it
    sent (whatever source they named) and no other department's; a scoped officer reads
    those sent by or naming its sectors' sources; a dead letter without a sender (written
    before the worker sent one) belongs to its source."""
    tag = uuid.uuid4().hex[:8]
    now = time.time()

    def letter(name: str, source: str | None, **more: Any) -> dict[str, Any]:
        return {
            "reason": "source_mismatch", "detail": "test", "source": source,
            "event_id": f"{tag}-{name}", "topic": "ioc.events.health", "partition": 0,
            "offset": 1, "index": None, "received_at": now,
            "original_b64": base64.b64encode(b'{"x": 1}').decode(), "original_size": 8,
        } | more  # fmt: skip

    letters = {
        # the hospital's record naming the CDC's source: the hospital's, not the CDC's
        "spoof": letter("spoof", "cdc-giam-sat", sender="his-bvdk-tinh"),
        "old": letter("old", "his-bvdk-tinh"),  # no sender field: its source's
        "cdc": letter("cdc", "cdc-giam-sat", sender="cdc-giam-sat"),
        "traffic": letter("traffic", None, sender="dem-xe-ql13"),
        "nul-key": letter("nul-key", None, sender="x\x00" + "y" * 5000),
    }
    await produce(kafka_bootstrap, [(DEADLETTER, "k", value) for value in letters.values()])

    def mine(answer: dict[str, Any]) -> set[str]:
        return {
            d["event_id"].removeprefix(f"{tag}-")
            for d in answer["dead_letters"]
            if (d["event_id"] or "").startswith(tag)
        }

    def read(headers: Mapping[str, bytes | str], query: str = "") -> dict[str, Any]:
        got, answer_headers, raw = api.request("GET", f"{H}/dead-letters?{query}", headers)
        answer = _check_answer(got, answer_headers, raw)
        assert got == 200, answer
        return answer

    async with writer_factory(api.database_url):
        deadline = time.monotonic() + 60
        while mine(await asyncio.to_thread(read, {"Authorization": f"Bearer {api.token}"})) != set(
            letters
        ):
            assert time.monotonic() < deadline, "the writer stored the dead letters"
            await asyncio.sleep(0.2)
    hospital = read({"X-API-Key": api.hospital_key}, "source=his-bvdk-tinh")
    assert mine(hospital) == {"spoof", "old"}
    spoof = next(d for d in hospital["dead_letters"] if d["event_id"] == f"{tag}-spoof")
    assert (spoof["sender"], spoof["source"]) == ("his-bvdk-tinh", "cdc-giam-sat")
    assert mine(read({"X-API-Key": api.cdc_key}, "source=cdc-giam-sat")) == {"cdc"}
    got, _headers, _raw = api.request(
        "GET", f"{H}/dead-letters?source=his-bvdk-tinh", {"X-API-Key": api.cdc_key}
    )
    assert got == 403
    health = {"Authorization": f"Bearer {api.token_of('health')}"}
    assert mine(read(health)) == {"spoof", "old", "cdc"}
    assert mine(read(health, "source=cdc-giam-sat")) == {"cdc"}
    traffic = {"Authorization": f"Bearer {api.token_of('traffic')}"}
    assert mine(read(traffic)) == {"traffic"}


# -- schema-driven fuzzing of both OpenAPI documents ----------------------------------------


def test_schemathesis_finds_no_5xx_in_either_api(api: ApiServer) -> None:
    """Every operation of the served OpenAPI document, fed valid and invalid requests
    generated from it (fixed seed, bounded budget), with and without credentials: never a
    5xx, always `nosniff`, and only statuses the document lists."""
    import schemathesis

    _status, _headers, raw = api.request("GET", "/openapi.json", {})
    schema = schemathesis.openapi.from_dict(json.loads(raw))
    credentials = [
        {},
        {"Authorization": f"Bearer {api.token}"},
        {"Authorization": f"Bearer {api.hospital_key}"},
        {"X-API-Key": api.hospital_key},
    ]
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    started = time.monotonic()
    for operation in operations:
        _fuzz(operation, api.url, credentials)()
    print(f"schemathesis: {len(operations)} operations in {time.monotonic() - started:.1f} s")


def _fuzz(operation: Any, base_url: str, credentials: list[dict[str, str]]) -> Any:
    """A hypothesis test of one operation: valid and invalid requests, any credential."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    documented = set(operation.definition.raw["responses"])
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, auth=st.sampled_from(credentials))
    def check(case: Any, auth: dict[str, str]) -> None:
        response = case.call(base_url=base_url, headers=auth, timeout=30)
        where = f"{case.method} {case.formatted_path} → {response.status_code}"
        assert response.status_code < 500, (where, response.text[:300])
        assert response.headers.get("x-content-type-options") == ["nosniff"], where
        assert str(response.status_code) in documented, (where, response.text[:300])

    return check
