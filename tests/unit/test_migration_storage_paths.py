"""Migration files with parts for one storage path (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.migrations import load_migrations, sql_for_path
from foundation.errors import MigrationError

SQL = """-- shared head
CREATE TABLE a (x int);
-- ioc:storage plain-postgresql
CREATE TABLE b (x int) PARTITION BY RANGE (x);
-- ioc:storage timescaledb
CREATE TABLE b (x int);
SELECT create_hypertable('b', by_range('x'));
-- ioc:storage all
CREATE TABLE c (x int);
"""


def test_each_path_gets_the_shared_parts_and_its_own() -> None:
    """Unmarked and `all` lines run on both paths; marked lines on theirs only."""
    plain = sql_for_path(SQL, "plain-postgresql")
    timescale = sql_for_path(SQL, "timescaledb")
    assert "PARTITION BY" in plain and "create_hypertable" not in plain
    assert "create_hypertable" in timescale and "PARTITION BY" not in timescale
    for sql in (plain, timescale):
        assert "CREATE TABLE a" in sql and "CREATE TABLE c" in sql
    assert len(plain.splitlines()) == len(SQL.splitlines())  # line numbers kept


def test_path_specific_files_keep_one_checksum(tmp_path: Path) -> None:
    """The checksum is of the whole file, whichever path a database takes."""
    (tmp_path / "0001_both.sql").write_text(SQL)
    (tmp_path / "0002_plain.sql").write_text("CREATE TABLE d (x int);")
    first, second = load_migrations(tmp_path)
    assert first.path_specific and not second.path_specific
    assert first.sql == SQL


def test_an_unknown_path_in_a_marker_fails_at_load(tmp_path: Path) -> None:
    """A typo in a marker is refused when the files load, before anything runs."""
    (tmp_path / "0001_bad.sql").write_text("-- ioc:storage timescale\nSELECT 1;")
    with pytest.raises(MigrationError, match="unknown storage path 'timescale'"):
        load_migrations(tmp_path)


def test_the_shipped_storage_migration_has_both_paths() -> None:
    """0003_storage creates events on both paths, differently."""
    storage = next(m for m in load_migrations() if m.label == "0003_storage")
    assert storage.path_specific
    assert "PARTITION BY RANGE (occurred_at)" in storage.sql_for("plain-postgresql")
    assert "create_hypertable('events'" in storage.sql_for("timescaledb")
