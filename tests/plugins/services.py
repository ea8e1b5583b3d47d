"""Session fixtures for real services: the embedded broker and PostgreSQL, or external ones.

Set IOC_TEST_KAFKA (bootstrap servers) and/or IOC_TEST_DATABASE_URL to run the same
suite against a real Kafka cluster / a real PostgreSQL instead of the embedded ones.

Storage tests run on both storage paths (`BOTH_PATHS`): on the session's plain server, and
on a second embedded PostgreSQL started with TimescaleDB preloaded (only when a TimescaleDB
case is selected; IOC_TEST_TIMESCALEDB_URL names an external TimescaleDB instead). Where the
embedded PostgreSQL has no TimescaleDB, those cases skip, saying how to get it; with
IOC_REQUIRE_TIMESCALEDB=1 (CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

from consumers.migrations import StoragePath
from ioc.embedded import EmbeddedBroker, EmbeddedPostgres
from ioc.embedded.postgres import TimescaleFiles, timescaledb_files

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a private loop (session fixtures are sync; tests own their loops)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker: IOC_TEST_KAFKA, else a fresh embedded one."""
    external = os.environ.get("IOC_TEST_KAFKA")
    if external:
        yield external
        return
    broker = EmbeddedBroker(state_dir=tmp_path_factory.mktemp("broker"))
    run_sync(broker.start())
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real PostgreSQL: IOC_TEST_DATABASE_URL, else a fresh embedded one.

    The embedded one never preloads TimescaleDB: it is the plain path's server (and, where
    the installation has TimescaleDB's files, a server that has them without the preload).
    """
    external = os.environ.get("IOC_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: pytest resets that tree to mode 0700 whenever another
    # pytest session starts, and the server runs as another user when we are root.
    state_dir = Path(tempfile.mkdtemp(prefix="ioc-test-pg-"))
    server = EmbeddedPostgres(state_dir=state_dir, timescaledb=False)
    run_sync(server.start())
    try:
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


TIMESCALEDB_MISSING = (
    "TimescaleDB is not installed in the embedded PostgreSQL: build it into the wheel's"
    " installation (README: TimescaleDB in the embedded PostgreSQL) or set"
    " IOC_TEST_TIMESCALEDB_URL"
)

# Test servers run TimescaleDB's jobs only when a test calls them (CALL run_job): no
# background scheduler moves data under a test's feet.
TEST_TIMESCALEDB_SETTINGS = {"timescaledb.max_background_workers": "0"}


def require_timescaledb() -> None:
    """Skip the calling test where TimescaleDB is not installed (fail under CI's
    IOC_REQUIRE_TIMESCALEDB=1)."""
    if os.environ.get("IOC_TEST_TIMESCALEDB_URL") or timescaledb_files() is not None:
        return
    if os.environ.get("IOC_REQUIRE_TIMESCALEDB") == "1":
        pytest.fail(f"IOC_REQUIRE_TIMESCALEDB=1, but {TIMESCALEDB_MISSING}", pytrace=False)
    pytest.skip(TIMESCALEDB_MISSING)


def require_embedded_timescaledb() -> TimescaleFiles:
    """TimescaleDB in the embedded PostgreSQL's installation, for tests that start servers from
    it themselves (skip where it is missing; fail under IOC_REQUIRE_TIMESCALEDB=1)."""
    files = timescaledb_files()
    if files is not None:
        return files
    missing = TIMESCALEDB_MISSING.split(" or set ", 1)[0]  # an external server does not do here
    if os.environ.get("IOC_REQUIRE_TIMESCALEDB") == "1":
        pytest.fail(f"IOC_REQUIRE_TIMESCALEDB=1, but {missing}", pytrace=False)
    pytest.skip(missing)


@pytest.fixture(scope="session")
def timescale_database_url() -> Iterator[str]:
    """URL of a PostgreSQL with TimescaleDB preloaded: IOC_TEST_TIMESCALEDB_URL, else a second
    embedded server (started on first use)."""
    require_timescaledb()
    external = os.environ.get("IOC_TEST_TIMESCALEDB_URL")
    if external:
        yield external
        return
    state_dir = Path(tempfile.mkdtemp(prefix="ioc-test-tsdb-"))
    server = EmbeddedPostgres(state_dir=state_dir, server_settings=TEST_TIMESCALEDB_SETTINGS)
    run_sync(server.start())
    try:
        if server.timescaledb_version is None:
            pytest.fail(
                f"the embedded PostgreSQL did not start with TimescaleDB: see {server.log_file}"
            )
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


# Tests that run on both storage paths: `@BOTH_PATHS` (their ids end in [plain] / [timescaledb]).
BOTH_PATHS = pytest.mark.parametrize(
    "storage_path", ["plain-postgresql", "timescaledb"], ids=["plain", "timescaledb"], indirect=True
)


@pytest.fixture
def storage_path(request: pytest.FixtureRequest) -> StoragePath:
    """The storage path of this test case (`BOTH_PATHS`); plain PostgreSQL when not given."""
    path: StoragePath = getattr(request, "param", "plain-postgresql")
    return path


@pytest.fixture
def storage_server(storage_path: StoragePath, request: pytest.FixtureRequest) -> str:
    """URL of the session server of this case's storage path."""
    name = "timescale_database_url" if storage_path == "timescaledb" else "database_url"
    url: str = request.getfixturevalue(name)
    return url


@contextlib.contextmanager
def new_database(server_url: str) -> Iterator[str]:
    """A new, empty database on that server, dropped afterwards (with its sessions)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """A new, empty database on the session server, dropped after the test."""
    with new_database(database_url) as url:
        yield url


@pytest.fixture
def path_database(storage_server: str) -> Iterator[str]:
    """A new, empty database on the server of this case's storage path, dropped after."""
    with new_database(storage_server) as url:
        yield url


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh IOC_STATE_DIR outside pytest's basetemp (see `database_url`)."""
    path = Path(tempfile.mkdtemp(prefix="ioc-test-state-"))
    try:
        yield path
    finally:
        # A killed `ioc up`'s children wind down on their own and may write a last status file
        # while the folder is being removed: remove again until it stays gone.
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                time.sleep(0.1)


@pytest.fixture
def topic_name() -> str:
    """A topic name no other test uses."""
    return f"test.{uuid.uuid4().hex[:10]}"


@dataclass
class CliResult:
    """What an `ioc` invocation did."""

    returncode: int
    stdout: str
    stderr: str


def _cli_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("IOC_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    env.update(extra)
    return env


@pytest.fixture
def ioc_cli() -> Callable[..., CliResult]:
    """Run the real `ioc` command in a subprocess with the given environment."""

    def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "ioc.cli", *args],
            env=_cli_env(env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


class IocProcess:
    """A long-running `ioc` command (e.g. `ioc up`) whose output we can wait on."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", *args],
            env=_cli_env(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for_output(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ioc exited ({self.proc.returncode}) before {needle!r}:\n{self.output()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r} within {timeout} s:\n{self.output()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def ioc_process(tmp_path: Path, state_dir: Path) -> Iterator[Callable[..., IocProcess]]:
    """Factory: start `ioc ARGS…` in the background; killed at the end of the test.

    It asks for `state_dir` so that the processes are killed before that folder is removed
    (pytest ends a fixture before those it depends on): a live `ioc up` writing its status
    files into the folder as it was being removed left it behind."""
    started: list[IocProcess] = []

    def start(*args: str, env: Mapping[str, str] | None = None) -> IocProcess:
        process = IocProcess(list(args), env or {}, tmp_path / f"ioc-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll predicate until true; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def contract_topics(kafka_bootstrap: str) -> list[str]:
    """Every topic of the contract exists on the session broker (create before use)."""
    from foundation.contract.catalog import load_catalog
    from ioc.topics import contract_topics as names
    from ioc.topics import create_topics

    topics = names(load_catalog())
    run_sync(create_topics(kafka_bootstrap, topics, partitions=4, replication_factor=1, timeout=15))
    return topics


@dataclass(frozen=True)
class ConsumedRecord:
    """One record read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def events_in(record: ConsumedRecord) -> list[dict[str, Any]]:
    """The events a record carries: one object, or a batch array."""
    decoded = json.loads(record.value)
    return decoded if isinstance(decoded, list) else [decoded]


async def read_records(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[ConsumedRecord]], bool],
    keep: Callable[[ConsumedRecord], bool] = lambda _r: True,
    timeout: float = 30,
) -> list[ConsumedRecord]:
    """Read `topic` from the beginning (no group) until `until(kept records)` holds.

    Never trusts end offsets (wrong on the embedded broker): it polls until the
    condition holds or the timeout fails the test. The session's topics carry the hostile
    records other tests put there on purpose: a record `keep` cannot read (not JSON, not
    the shape it expects) is not this test's, and is left out.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    kept: list[ConsumedRecord] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            partitions = set(range(4))
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
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
                        if _kept(keep, record):
                            kept.append(record)
    finally:
        await consumer.stop()
    return kept


def _kept(keep: Callable[[ConsumedRecord], bool], record: ConsumedRecord) -> bool:
    try:
        return keep(record)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return False


async def eventually(
    predicate: Callable[[], bool], timeout: float, what: str, *, interval: float = 0.01
) -> None:
    """Await until predicate() holds (polled); fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
