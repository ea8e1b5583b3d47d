"""`ioc broker roll`: replace the embedded broker of a running `ioc up` now (drained first)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from foundation.errors import BrokerRollError, NotRunningError
from foundation.intake import control_dir
from foundation.settings import Settings

__all__ = ["register"]


def register(commands: Any) -> None:
    broker = commands.add_parser("broker", help="the embedded broker of a running `ioc up`")
    actions = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    roll = actions.add_parser(
        "roll",
        help="pause intake, drain, replace the broker under a new epoch, resume "
        "(frees the memory it holds; `ioc up` also does it by itself, IOC_BROKER_MEMORY_LIMIT)",
    )
    roll.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="wait at most this long"
    )
    roll.set_defaults(run=_cmd_roll)


async def _cmd_roll(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.runtime import read_runtime_file
    from ioc.services import ROLL_REQUEST, ROLL_RESULT

    state_dir = settings.state_dir.resolve()
    running = read_runtime_file(state_dir)
    if running is None or running.broker_mode != "embedded":
        raise NotRunningError(f"no `ioc up` with an embedded broker runs in {state_dir}")
    request_id = uuid.uuid4().hex
    folder = control_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{ROLL_REQUEST}.tmp"
    tmp.write_text(json.dumps({"id": request_id, "at": time.time()}))
    tmp.replace(folder / ROLL_REQUEST)
    print("roll requested; waiting for `ioc up` to drain and replace the broker…", flush=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            result = json.loads((folder / ROLL_RESULT).read_text())
        except (OSError, ValueError):
            result = None
        if isinstance(result, dict) and result.get("id") == request_id:
            return _report(result)
        await asyncio.sleep(0.2)
    raise BrokerRollError(f"no roll result within {args.timeout:g} s (see `ioc up`'s log)")


def _report(result: dict[str, Any]) -> int:
    if not result.get("ok"):
        raise BrokerRollError(f"roll cancelled: {result.get('detail')}")
    before, after = result.get("rss_before"), result.get("rss_after")
    memory = (
        f", memory {before / 2**20:.0f} → {after / 2**20:.0f} MiB"
        if before is not None and after is not None
        else ""
    )
    print(
        f"rolled: intake paused {result['intake_paused_s']:.1f} s (drain {result['drain_s']:.1f} s)"
        f"{memory}, epoch {result['epoch_before']} → {result['epoch_after']}"
    )
    return 0
