"""The intake pause: how `ioc up` tells the ingest API to stop taking events for a while.

Before it rolls or restarts the embedded broker, `ioc up` writes
`<state dir>/control/intake-pause.json`; it removes the file once the fresh broker has its
topics. The ingest API polls the file: while it is there `POST /v1/events` answers 503
`paused` with `Retry-After`; the requests already in flight finish; the API then closes its
Kafka producer (nothing of it may ask the fresh broker for a topic before `ioc up` created
it: a metadata request auto-creates a missing topic with the broker's defaults) and
acknowledges in `intake-ack.<pid>.json` with the pause's token. After the file is gone it
opens a new producer and takes events again.

Files, not a socket: no port to discover, nothing to authenticate (the state directory is
the owner's), and a cluster deployment (no `ioc up`) never has the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "IntakeAck",
    "IntakePause",
    "clear_pause",
    "control_dir",
    "read_ack",
    "read_pause",
    "write_ack",
    "write_pause",
]

PAUSE_FILE = "intake-pause.json"


@dataclass(frozen=True, slots=True)
class IntakePause:
    """A pause in force: why, since when (unix time), how long clients should wait."""

    token: str
    reason: str
    since: float
    retry_after: int


@dataclass(frozen=True, slots=True)
class IntakeAck:
    """An ingest API process is paused for `token`, with no request left in flight."""

    token: str
    pid: int
    in_flight: int
    at: float


def control_dir(state_dir: Path) -> Path:
    return state_dir / "control"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)  # readers see the old file or the new one, never half of one


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def write_pause(state_dir: Path, pause: IntakePause) -> None:
    _write_json(control_dir(state_dir) / PAUSE_FILE, asdict(pause))


def clear_pause(state_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (control_dir(state_dir) / PAUSE_FILE).unlink(missing_ok=True)


def read_pause(state_dir: Path) -> IntakePause | None:
    """The pause in force, or None (no file, or a file that is not a pause)."""
    raw = _read_json(control_dir(state_dir) / PAUSE_FILE)
    if raw is None:
        return None
    try:
        return IntakePause(
            token=str(raw["token"]),
            reason=str(raw["reason"]),
            since=float(raw["since"]),
            retry_after=max(1, int(raw["retry_after"])),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _ack_path(state_dir: Path, pid: int) -> Path:
    return control_dir(state_dir) / f"intake-ack.{pid}.json"


def write_ack(state_dir: Path, ack: IntakeAck) -> None:
    _write_json(_ack_path(state_dir, ack.pid), asdict(ack))


def read_ack(state_dir: Path, pid: int) -> IntakeAck | None:
    raw = _read_json(_ack_path(state_dir, pid))
    if raw is None:
        return None
    try:
        return IntakeAck(
            token=str(raw["token"]),
            pid=int(raw["pid"]),
            in_flight=int(raw["in_flight"]),
            at=float(raw["at"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
