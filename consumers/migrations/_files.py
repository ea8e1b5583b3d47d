"""Migration files and the plan: which ones a database still needs (pure, no I/O to PostgreSQL).

A file may hold parts for one storage path only, after a marker line::

    -- ioc:storage plain-postgresql
    CREATE TABLE events (...) PARTITION BY RANGE (occurred_at);
    -- ioc:storage timescaledb
    CREATE TABLE events (...);
    SELECT create_hypertable(...);
    -- ioc:storage all

Lines before the first marker, and after `-- ioc:storage all`, run on both paths. The checksum
covers the whole file, so it is the same whichever path a database took.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from typing import Final, Literal

from foundation.errors import MigrationChecksumError, MigrationError

__all__ = [
    "STORAGE_PATHS",
    "AppliedMigration",
    "Migration",
    "StoragePath",
    "load_migrations",
    "pending_migrations",
    "sql_for_path",
]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

StoragePath = Literal["plain-postgresql", "timescaledb"]
STORAGE_PATHS: Final[tuple[StoragePath, ...]] = ("plain-postgresql", "timescaledb")
_MARKER = re.compile(r"^--\s*ioc:storage\s+(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned SQL file; `checksum` is sha256 of its text with LF line endings."""

    version: int
    name: str
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def path_specific(self) -> bool:
        """True when the file has parts for one storage path only."""
        return any(_MARKER.match(line) for line in self.sql.splitlines())

    def sql_for(self, path: StoragePath) -> str:
        """The statements to run on a database of that storage path."""
        return sql_for_path(self.sql, path, label=self.label)


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of `schema_migrations`."""

    version: int
    name: str
    checksum: str


def checksum(sql: str) -> str:
    """sha256 of the SQL text; CRLF checkouts give the same checksum as LF ones."""
    return hashlib.sha256(sql.replace("\r\n", "\n").encode()).hexdigest()


def sql_for_path(sql: str, path: StoragePath, *, label: str = "migration") -> str:
    """Keep the lines of `sql` meant for `path` (see the module docstring)."""
    keep: list[str] = []
    current = "all"
    for line in sql.splitlines():
        marker = _MARKER.match(line)
        if marker is None:
            # Lines of the other path become blank: PostgreSQL's error positions stay true.
            keep.append(line if current in ("all", path) else "")
            continue
        current = marker.group(1)
        if current != "all" and current not in STORAGE_PATHS:
            raise MigrationError(
                f"{label}: unknown storage path {current!r} in a marker "
                f"(expected all, {', '.join(STORAGE_PATHS)})"
            )
        keep.append("")
    return "\n".join(keep) + "\n"


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """Every `NNNN_name.sql` in directory (default: the shipped ones), by version."""
    folder = directory or resources.files("consumers.migrations") / "sql"
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations have version {version:04d}: "
                f"{found[version].label}.sql and {entry.name}"
            )
        sql = entry.read_text(encoding="utf-8")
        migration = Migration(version, match.group(2), sql, checksum(sql))
        migration.sql_for("plain-postgresql")  # a bad marker fails at load, not mid-migration
        found[version] = migration
    return [found[version] for version in sorted(found)]


def pending_migrations(
    migrations: Iterable[Migration], applied: Mapping[int, AppliedMigration]
) -> list[Migration]:
    """The migrations not yet applied, in order; an edited applied migration is an error."""
    pending: list[Migration] = []
    for migration in migrations:
        done = applied.get(migration.version)
        if done is None:
            pending.append(migration)
        elif done.checksum != migration.checksum:
            raise MigrationChecksumError(
                f"migration {migration.label} was applied with checksum {done.checksum[:12]}… "
                f"but its file now has {migration.checksum[:12]}…: applied migrations must not "
                "change; revert the edit and add a new migration instead"
            )
    return pending
