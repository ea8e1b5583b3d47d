"""Schema migrations against a real PostgreSQL: once each, in order, concurrently safe."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from consumers.migrations import MIGRATION_LOCK_KEY, load_migrations, migrate
from foundation.errors import MigrationChecksumError, MigrationError
from tests.plugins.services import CliResult

pytestmark = pytest.mark.integration

Cli = Callable[..., CliResult]


def _versions(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    return [(int(v), str(n), str(c)) for v, n, c in rows]


async def test_applies_once_then_nothing(fresh_database: str) -> None:
    """The first run applies every shipped migration; the second applies none."""
    shipped = load_migrations()
    first = await migrate(fresh_database, connect_timeout=10)
    assert [m.label for m in first.applied] == [m.label for m in shipped]
    assert first.already_applied == 0
    second = await migrate(fresh_database, connect_timeout=10)
    assert second.applied == [] and second.already_applied == len(shipped)
    assert _versions(fresh_database) == [(m.version, m.name, m.checksum) for m in shipped]
    with psycopg.connect(fresh_database) as conn:
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


async def test_concurrent_runs_do_not_conflict(fresh_database: str) -> None:
    """Four migrators at once: each migration is applied by exactly one of them."""
    reports = await asyncio.gather(*(migrate(fresh_database, connect_timeout=10) for _ in range(4)))
    shipped = load_migrations()
    applied = sorted(m.label for report in reports for m in report.applied)
    assert applied == sorted(m.label for m in shipped)
    assert len(_versions(fresh_database)) == len(shipped)


async def test_migrations_wait_for_the_lock(fresh_database: str) -> None:
    """While another session holds the lock, a migrator waits, then times out with a code."""
    with psycopg.connect(fresh_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        with pytest.raises(MigrationError, match="migration lock"):
            await migrate(fresh_database, connect_timeout=10, lock_timeout=0.5)
    report = await migrate(fresh_database, connect_timeout=10)
    assert report.applied


async def test_edited_applied_migration_is_refused(fresh_database: str, tmp_path: Path) -> None:
    """Changing the SQL of an applied migration is an error naming it; nothing more runs."""
    (tmp_path / "0001_notes.sql").write_text("CREATE TABLE notes (body text);")
    await migrate(fresh_database, connect_timeout=10, migrations=load_migrations(tmp_path))
    (tmp_path / "0001_notes.sql").write_text("CREATE TABLE notes (body text, extra int);")
    (tmp_path / "0002_more.sql").write_text("CREATE TABLE more_notes (body text);")
    with pytest.raises(MigrationChecksumError, match="0001_notes"):
        await migrate(fresh_database, connect_timeout=10, migrations=load_migrations(tmp_path))
    assert [v for v, _n, _c in _versions(fresh_database)] == [1]


async def test_failed_migration_is_rolled_back(fresh_database: str, tmp_path: Path) -> None:
    """A failing migration leaves neither its tables nor its version row; earlier ones stay."""
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok_table (id int);")
    (tmp_path / "0002_bad.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();"
    )
    with pytest.raises(MigrationError, match="0002_bad failed and was rolled back"):
        await migrate(fresh_database, connect_timeout=10, migrations=load_migrations(tmp_path))
    assert [v for v, _n, _c in _versions(fresh_database)] == [1]
    with psycopg.connect(fresh_database) as conn:
        row = conn.execute("SELECT to_regclass('half_done'), to_regclass('ok_table')").fetchone()
    assert row == (None, "ok_table")


def test_cli_db_migrate_prints_what_it_applied(ioc_cli: Cli, fresh_database: str) -> None:
    """`ioc db migrate` lists applied migrations, then reports nothing left to apply."""
    env = {"DATABASE_URL": fresh_database}
    first = ioc_cli("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied  0001_api_keys" in first.stdout
    second = ioc_cli("db", "migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert "migrations: 0 applied" in second.stdout and "applied  0001" not in second.stdout


def test_cli_db_migrate_unreachable_is_one_line(ioc_cli: Cli) -> None:
    """No database answering → one coded line, no traceback."""
    result = ioc_cli(
        "db", "migrate", env={"DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none"}, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.startswith("ioc: error [database_unreachable]"), result.stderr
    assert "Traceback" not in result.stderr and ":y@" not in result.stderr
