"""What `ioc status` says about the storage path, and how TimescaleDB is found in an
installation (pure: no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ioc.embedded.postgres import timescaledb_files
from ioc.status import storage_path_of


def _details(
    recorded: str | None,
    *,
    available: str | None = None,
    installed: str | None = None,
    preloaded: bool = False,
) -> dict[str, Any]:
    return {
        "storage_path_recorded": recorded,
        "timescaledb_available_version": available,
        "timescaledb_version": installed,
        "timescaledb_preloaded": preloaded,
    }


@pytest.mark.parametrize(
    ("details", "path", "note"),
    [
        (
            _details("timescaledb", available="2.29.2", installed="2.29.2", preloaded=True),
            "timescaledb",
            "TimescaleDB 2.29.2",
        ),
        (
            _details("timescaledb", available="2.29.2", installed="2.29.2"),
            "timescaledb",
            "TimescaleDB is not loaded by this server: the database is refused until it is"
            " (shared_preload_libraries = 'timescaledb')",
        ),
        (
            _details("plain-postgresql"),
            "plain-postgresql",
            "TimescaleDB not installed on this server",
        ),
        (
            _details("plain-postgresql", available="2.29.2"),
            "plain-postgresql",
            "TimescaleDB 2.29.2 installed but not preloaded",
        ),
        (
            _details("plain-postgresql", available="2.29.2", preloaded=True),
            "plain-postgresql",
            "TimescaleDB 2.29.2 available; this database keeps the plain path it was set up with",
        ),
        (
            _details(None, available="2.29.2", preloaded=True),
            "timescaledb",
            "not migrated yet: the first migration takes timescaledb; TimescaleDB 2.29.2 available",
        ),
        (
            _details(None, available="2.29.2"),
            "plain-postgresql",
            "not migrated yet: the first migration takes plain-postgresql;"
            " TimescaleDB 2.29.2 installed but not preloaded",
        ),
    ],
    ids=[
        "timescaledb",
        "timescaledb-not-loaded",
        "plain-no-extension",
        "plain-not-preloaded",
        "plain-kept-although-available",
        "new-takes-timescaledb",
        "new-takes-plain",
    ],
)  # fmt: skip
def test_the_status_names_the_path_and_timescaledb(
    details: dict[str, Any], path: str, note: str
) -> None:
    """Recorded path first; the note says which TimescaleDB runs, or why it is not used."""
    assert storage_path_of(details) == (path, note)


def _installation(root: Path, *, control: str | None, libraries: tuple[str, ...]) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "share" / "extension").mkdir(parents=True)
    if control is not None:
        (root / "share" / "extension" / "timescaledb.control").write_text(control)
    for name in libraries:
        (root / "lib" / name).write_bytes(b"\x7fELF")
    return root / "bin"


CONTROL = "comment = 'Enables scalable inserts'\ndefault_version = '2.29.2'\nrelocatable = false\n"


@pytest.mark.parametrize(
    ("control", "libraries", "version"),
    [
        (CONTROL, ("timescaledb.so", "timescaledb-2.29.2.so"), "2.29.2"),
        (None, ("timescaledb.so", "timescaledb-2.29.2.so"), None),
        (CONTROL, ("timescaledb-2.29.2.so",), None),  # no loader
        (CONTROL, ("timescaledb.so", "timescaledb-2.28.0.so"), None),  # not the control's version
        ("comment = 'no version'\n", ("timescaledb.so",), None),
    ],
    ids=["complete", "no-control-file", "no-loader", "other-version", "no-default-version"],
)
def test_timescaledb_is_found_only_when_complete(
    tmp_path: Path, control: str | None, libraries: tuple[str, ...], version: str | None
) -> None:
    """The control file's default version, the loader and that version's library: all three,
    or the installation has no TimescaleDB (and the server starts without the preload)."""
    bin_dir = _installation(tmp_path / "pginstall", control=control, libraries=libraries)
    found = timescaledb_files(bin_dir)
    assert (found.version if found else None) == version
