"""`ioc db migrate`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from foundation.settings import Settings

if TYPE_CHECKING:
    from consumers.migrations import MigrationReport

__all__ = ["register", "timescale_suffix"]


def register(commands: Any) -> None:
    db = commands.add_parser("db", help="the PostgreSQL/TimescaleDB schema")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate", help="apply pending schema migrations (each once, in order; safe to rerun)"
    )
    migrate.set_defaults(run=_cmd_db_migrate)


async def _cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.migrations import migrate
    from foundation.probes import redact_url
    from ioc.runtime import resolve_database_url

    url = resolve_database_url(settings)
    report = await migrate(
        url, connect_timeout=settings.connect_timeout, storage=settings.storage_path
    )
    for migration in report.applied:
        print(f"  applied  {migration.label}")
    if report.storage_path is not None:
        print(f"  storage path: {report.storage_path}{timescale_suffix(report)}")
    for note in report.notes:
        print(f"  note: {note}")
    if report.storage_path == "timescaledb":
        await _timescale_jobs(url, settings)
    if report.unknown_versions:
        newer = ", ".join(f"{v:04d}" for v in report.unknown_versions)
        print(f"  note: the database also has migrations from a newer release: {newer}")
    print(
        f"migrations: {len(report.applied)} applied, {report.already_applied} already applied"
        f" ({redact_url(url)})"
    )
    return 0


def timescale_suffix(report: MigrationReport) -> str:
    """` (TimescaleDB 2.29.2)` when the database runs on TimescaleDB, else nothing."""
    state = report.timescaledb
    if report.storage_path == "timescaledb" and state is not None and state.installed:
        return f" (TimescaleDB {state.installed})"
    return ""


async def _timescale_jobs(url: str, settings: Settings) -> None:
    """Retention, compression and rollup-refresh jobs from the settings (replaced, not stacked)."""
    import psycopg

    from consumers.storage import apply_timescale_policies
    from foundation.errors import DatabaseError
    from ioc.commands.writer import storage_policy

    try:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=max(int(settings.connect_timeout), 1)
        ) as conn:
            jobs = await apply_timescale_policies(conn, storage_policy(settings))
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot install the TimescaleDB jobs: {exc}") from exc
    print(f"  timescaledb jobs: {len(jobs.installed)} installed, {len(jobs.kept)} unchanged")
