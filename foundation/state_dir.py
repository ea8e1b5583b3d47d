"""The state directory: embedded services' data, pid files, logs, secrets."""

from __future__ import annotations

import tempfile
from pathlib import Path

from foundation.errors import StateDirError

__all__ = ["ensure_state_dir"]


def ensure_state_dir(path: Path) -> Path:
    """Create the state directory and prove we can write in it.

    The probe is a file of this call's own (several components check the directory at the
    same moment under `ioc up`: a shared probe name made one's unlink fail on the other's).
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-") as probe:
            probe.write(b"ok")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StateDirError(
            f"cannot write state directory {path}: {reason} (set IOC_STATE_DIR)"
        ) from exc
    return path.resolve()
