"""The state directory: embedded services' data, pid files, logs, secrets."""

from __future__ import annotations

from pathlib import Path

from foundation.errors import StateDirError

__all__ = ["ensure_state_dir"]


def ensure_state_dir(path: Path) -> Path:
    """Create the state directory and prove we can write in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StateDirError(
            f"cannot write state directory {path}: {reason} (set IOC_STATE_DIR)"
        ) from exc
    return path.resolve()
