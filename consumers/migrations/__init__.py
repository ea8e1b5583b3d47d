"""Versioned SQL schema migrations (`consumers/migrations/sql/NNNN_name.sql`), applied once each.

    report = await migrate(database_url, connect_timeout=10)

Applied migrations are recorded in `schema_migrations(version, name, checksum, applied_at)`;
editing an applied file is refused (`migration_checksum_mismatch`): add a new one instead.
"""

from consumers.migrations._apply import (
    MIGRATION_LOCK_KEY,
    MigrationReport,
    StorageChoice,
    migrate,
)
from consumers.migrations._files import (
    STORAGE_PATHS,
    AppliedMigration,
    Migration,
    StoragePath,
    load_migrations,
    pending_migrations,
    sql_for_path,
)

__all__ = [
    "MIGRATION_LOCK_KEY",
    "STORAGE_PATHS",
    "AppliedMigration",
    "Migration",
    "MigrationReport",
    "StorageChoice",
    "StoragePath",
    "load_migrations",
    "migrate",
    "pending_migrations",
    "sql_for_path",
]
