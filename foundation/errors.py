"""The one exception hierarchy of ioc-stream.

Every error a user can cause carries a machine-readable ``code``; the CLI prints
``ioc: error [code] message`` on one line and exits non-zero, never a traceback::

    IocError
     ├── SettingsError            bad_setting
     ├── StateDirError            state_dir_unwritable
     │    └── StateDirLockedError state_dir_locked
     ├── EmbeddedStartError       embedded_start_failed
     │    └── PortInUseError      port_in_use
     ├── UnreachableError
     │    ├── BrokerUnreachableError    broker_unreachable
     │    └── DatabaseUnreachableError  database_unreachable
     ├── NotRunningError          runtime_not_running
     ├── TopicError               topic_create_failed
     ├── BrokerRollError          broker_roll_failed
     ├── CatalogError             catalog_invalid
     │    └── RoutingError        routing_invalid
     ├── DatabaseError            database_error
     ├── MigrationError           migration_failed
     │    ├── MigrationChecksumError  migration_checksum_mismatch
     │    ├── StoragePathError        storage_path_unavailable
     │    └── DatabaseEncodingError   database_encoding
     ├── UnknownSourceError       unknown_source
     ├── UnknownSectorError       unknown_sector
     ├── UnknownApiKeyError       unknown_api_key
     ├── ActionNotConfirmedError  action_not_confirmed
     └── HistoryQueryError        (its own code: bad_range, range_too_long, unknown_kpi, …)
"""

from __future__ import annotations

__all__ = [
    "ActionNotConfirmedError",
    "BrokerRollError",
    "BrokerUnreachableError",
    "CatalogError",
    "DatabaseEncodingError",
    "DatabaseError",
    "DatabaseUnreachableError",
    "EmbeddedStartError",
    "HistoryQueryError",
    "IocError",
    "MigrationChecksumError",
    "MigrationError",
    "NotRunningError",
    "PortInUseError",
    "RoutingError",
    "SettingsError",
    "StateDirError",
    "StateDirLockedError",
    "StoragePathError",
    "TopicError",
    "UnknownApiKeyError",
    "UnknownSectorError",
    "UnknownSourceError",
    "UnreachableError",
]


class IocError(Exception):
    """Root of every error ioc-stream raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class SettingsError(IocError):
    """A setting (environment variable or flag) has a value we cannot use."""

    code = "bad_setting"


class StateDirError(IocError):
    """The state directory cannot be created or written."""

    code = "state_dir_unwritable"


class StateDirLockedError(StateDirError):
    """Another live `ioc` process owns the embedded runtime in this state directory."""

    code = "state_dir_locked"


class EmbeddedStartError(IocError):
    """The embedded broker or PostgreSQL did not start."""

    code = "embedded_start_failed"


class PortInUseError(EmbeddedStartError):
    """A port configured for an embedded service is taken by another process."""

    code = "port_in_use"


class UnreachableError(IocError):
    """A configured service does not answer."""

    code = "unreachable"


class BrokerUnreachableError(UnreachableError):
    """The Kafka broker does not answer metadata requests."""

    code = "broker_unreachable"


class DatabaseUnreachableError(UnreachableError):
    """PostgreSQL refuses or does not answer a connection."""

    code = "database_unreachable"


class NotRunningError(IocError):
    """No broker/database is configured and no embedded runtime is running."""

    code = "runtime_not_running"


class TopicError(IocError):
    """The broker refused to create a topic of the contract."""

    code = "topic_create_failed"


class BrokerRollError(IocError):
    """A roll of the embedded broker was cancelled or did not report back in time."""

    code = "broker_roll_failed"


class CatalogError(IocError):
    """The sector catalog is invalid; ``problems`` lists each with file:line."""

    code = "catalog_invalid"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class RoutingError(CatalogError):
    """The notifier's routing file is invalid; ``problems`` lists each with file:line."""

    code = "routing_invalid"


class DatabaseError(IocError):
    """PostgreSQL answered but a query failed or timed out (e.g. the schema is not migrated)."""

    code = "database_error"


class MigrationError(IocError):
    """A schema migration could not be applied; it was rolled back."""

    code = "migration_failed"


class MigrationChecksumError(MigrationError):
    """An applied migration's file changed since it ran; applied migrations are immutable."""

    code = "migration_checksum_mismatch"


class StoragePathError(MigrationError):
    """The storage path asked for (IOC_STORAGE_PATH) cannot be used on this database."""

    code = "storage_path_unavailable"


class DatabaseEncodingError(MigrationError):
    """The database is not encoded in UTF8 (e.g. SQL_ASCII): nothing is migrated or stored."""

    code = "database_encoding"


class UnknownSourceError(IocError):
    """A source id that is not in the catalog."""

    code = "unknown_source"


class UnknownSectorError(IocError):
    """A sector id that is not in the catalog (e.g. a token's --sectors)."""

    code = "unknown_sector"


class UnknownApiKeyError(IocError):
    """An API key id that is not in the key store."""

    code = "unknown_api_key"


class ActionNotConfirmedError(IocError):
    """An officer's action was published, but no transition applying it came back in time
    (refused by the alert engine, or no worker runs)."""

    code = "action_not_confirmed"


class HistoryQueryError(IocError):
    """A history query that cannot be answered as asked; ``status`` is its HTTP status.

    The code varies with the cause (``bad_range``, ``range_too_long``, ``bad_page_size``,
    ``unknown_kpi``, ``unknown_sector``, ``forbidden``, …), so it is set per instance.
    """

    code = "bad_query"

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
