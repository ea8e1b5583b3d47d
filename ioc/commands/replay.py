"""`ioc replay FILE.jsonl`: re-publish recorded events in event-time order."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foundation.errors import BrokerUnreachableError, SettingsError
from foundation.settings import Settings

__all__ = ["register"]

_DESCRIPTION = """\
Re-publish the events of a JSONL file (one event object per line, e.g. written by
`ioc simulate --out`) through the SDK, in event-time order (sorted by occurred_at),
waiting between events for the recorded gap divided by --speed.

Sorting needs an index of the whole file in memory: about 60 bytes per event line (a few
million lines are fine); the events themselves are read back one at a time. Lines that
are not JSON objects are counted as rejected `bad_json`, with their line numbers.
Events keep their event_id and occurred_at: replaying a file twice sends the same events,
which idempotent sinks count once.
"""


def register(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="re-publish a JSONL file of events in event-time order",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("file", type=Path, metavar="FILE.jsonl")
    replay.add_argument(
        "--speed", type=float, default=1.0, metavar="X",
        help="1 = as recorded (default), 10 = ten times faster, 0 = as fast as possible",
    )  # fmt: skip
    replay.add_argument(
        "--max-gap", type=float, metavar="SECONDS",
        help="never wait longer than this between two events (skips idle stretches)",
    )  # fmt: skip
    replay.set_defaults(run=_cmd_replay)


async def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from aiokafka.errors import KafkaError

    from foundation.contract.catalog import load_catalog
    from foundation.kafka_client import kafka_client_options, producer_compression
    from ioc.runtime import resolve_bootstrap_servers
    from producers.replay import Pacer, ProgressBar, index_file, replay
    from producers.sdk import Publisher
    from producers.tally import DeliveryTally

    if args.speed < 0 or (args.max_gap is not None and args.max_gap <= 0):
        raise SettingsError("--speed must be ≥ 0 and --max-gap > 0 seconds")
    catalog = load_catalog(settings.catalog)
    try:
        index = index_file(args.file)
    except OSError as exc:
        raise SettingsError(f"FILE: cannot read {args.file}: {exc.strerror or exc}") from exc
    span = index.time_span()
    when = f", event time {_utc(span[0])} → {_utc(span[1])}" if span else ""
    print(f"replay: {len(index):,} events, {index.bad_count:,} bad lines{when}", flush=True)

    bootstrap = resolve_bootstrap_servers(settings)
    publisher = Publisher(
        bootstrap_servers=bootstrap,
        catalog=catalog,
        client_id="ioc-replay",
        kafka_options=kafka_client_options(settings),
        compression=producer_compression(settings),
    )
    try:
        async with asyncio.timeout(settings.connect_timeout):
            await publisher.start()
    except (TimeoutError, KafkaError, OSError) as exc:
        await publisher.stop()
        raise BrokerUnreachableError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    tally = DeliveryTally()
    bar = ProgressBar(len(index), stream=sys.stderr)
    started = time.monotonic()
    sent = 0
    try:
        sent = await replay(
            index,
            publisher,
            pacer=Pacer(speed=args.speed, max_gap=args.max_gap, sleep=sleep),
            tally=tally,
            progress=lambda done: bar.update(done, tally.rejected.total()),
            stopped=stop.is_set,
        )
    finally:
        await publisher.stop()  # sends what is pending first
        await tally.drain()
        bar.close(sent, tally.rejected.total())
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    elapsed = time.monotonic() - started
    print(
        f"replay: {sent:,} of {len(index):,} events sent in {elapsed:.1f} s"
        + (" · interrupted" if stop.is_set() else "")
    )
    print(f"  {tally.summary()}")
    if index.bad_count:
        shown = ", ".join(str(bad.line) for bad in index.bad_lines[:10])
        more = " …" if index.bad_count > 10 else ""
        print(f"  bad lines (bad_json): {index.bad_count:,} at line {shown}{more}")
    return 0 if not tally.failed else 1


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
