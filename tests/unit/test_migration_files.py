"""Migration files: naming, order, checksums and the plan (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumers.migrations import AppliedMigration, load_migrations, pending_migrations
from consumers.migrations._files import checksum
from foundation.errors import MigrationChecksumError, MigrationError


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    """The package ships 0001_api_keys first, then every number in turn: a gap is a
    migration that was renumbered or lost in a merge."""
    shipped = load_migrations()
    assert shipped[0].label == "0001_api_keys"
    versions = [m.version for m in shipped]
    assert versions == list(range(1, len(shipped) + 1))
    assert "CREATE TABLE api_keys" in shipped[0].sql


def test_files_load_in_version_order(tmp_path: Path) -> None:
    """Order comes from the number, not from the directory listing."""
    (tmp_path / "0010_later.sql").write_text("SELECT 10;")
    (tmp_path / "0002_second.sql").write_text("SELECT 2;")
    (tmp_path / "README.md").write_text("not a migration")
    assert [m.label for m in load_migrations(tmp_path)] == ["0002_second", "0010_later"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["1_short.sql"], "NNNN_name.sql"),
        (["0001-dash.sql"], "NNNN_name.sql"),
        (["0001_Upper.sql"], "NNNN_name.sql"),
        (["0001_a.sql", "0001_b.sql"], "two migrations have version 0001"),
    ],
)
def test_bad_file_sets_are_refused(tmp_path: Path, names: list[str], message: str) -> None:
    """Misnamed or duplicate versions are an error, never silently skipped."""
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_checksum_ignores_line_endings() -> None:
    """A CRLF checkout has the same checksum as an LF one."""
    assert checksum("SELECT 1;\r\nSELECT 2;\r\n") == checksum("SELECT 1;\nSELECT 2;\n")
    assert checksum("SELECT 1;") != checksum("SELECT 2;")


def test_plan_skips_applied_and_refuses_edited(tmp_path: Path) -> None:
    """Applied versions are skipped; an applied file whose checksum changed is an error."""
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0002_b.sql").write_text("SELECT 2;")
    first, second = load_migrations(tmp_path)
    assert pending_migrations([first, second], {}) == [first, second]
    applied = {1: AppliedMigration(1, "a", first.checksum)}
    assert pending_migrations([first, second], applied) == [second]
    edited = {1: AppliedMigration(1, "a", checksum("SELECT 'old';"))}
    with pytest.raises(MigrationChecksumError, match="0001_a was applied with checksum"):
        pending_migrations([first, second], edited)
