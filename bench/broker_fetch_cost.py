"""What a fetch costs the embedded broker as it holds more record batches.

    python bench/broker_fetch_cost.py                        # 4 readers of one partition
    python bench/broker_fetch_cost.py --readers 1 --steps 0,10000,20000,30000
    python bench/broker_fetch_cost.py --partitions 2         # each fetch names 2 partitions

Starts the embedded broker (Tansu, memory engine) in a temp directory. Readers tail topic
`live` (a trickle of one record every 20 ms keeps their fetches answering with data, each
waiting at most 100 ms as the platform's do); topic `held` gets one-record batches that
nobody reads. At each step the broker's CPU over `--seconds` is printed, with the ratio to
the first step (the baseline, measured in the same run): if the cost of a fetch grows with
the batches the broker holds in *other* topics, the ratio grows although the readers' own
traffic does not change. `--partitions` also names that many partitions of `held` in each
fetch (their readers are at the end, so they add no data).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import machine
from ioc.embedded.broker import EmbeddedBroker

LIVE, HELD = "live", "held"


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _reader(bootstrap: str, held_partitions: int, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, fetch_max_wait_ms=100, enable_auto_commit=False
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(LIVE, 0)]
        assigned += [TopicPartition(HELD, p) for p in range(held_partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        while not stop.is_set():
            await consumer.getmany(timeout_ms=200)
    finally:
        await consumer.stop()


async def _trickle(producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await (await producer.send(LIVE, b"y" * 200))
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace) -> None:
    steps = [int(s) for s in args.steps.split(",")]
    with tempfile.TemporaryDirectory(prefix="ioc-fetch-cost-") as tmp:
        broker = EmbeddedBroker(state_dir=Path(tmp))
        await broker.start()
        try:
            await _measure(broker, steps, args)
        finally:
            broker.stop()


async def _measure(broker: EmbeddedBroker, steps: list[int], args: argparse.Namespace) -> None:
    bootstrap, pid = broker.bootstrap_servers, broker.pid
    assert pid is not None
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(LIVE, 1, 1), NewTopic(HELD, max(1, args.partitions), 1)]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_reader(bootstrap, args.partitions, stop)) for _ in range(args.readers)
    ]
    tasks.append(asyncio.create_task(_trickle(producer, stop)))
    print(
        f"fetch cost: {args.readers} readers of `{LIVE}` (fetch wait 100 ms, "
        f"+{args.partitions} idle partitions of `{HELD}` per fetch) on {machine()}",
        flush=True,
    )
    held, baseline = 0, None
    try:
        for target in steps:
            while held < target:  # one record per batch: each send awaited alone
                await (await producer.send(HELD, b"x" * 200, partition=0))
                held += 1
                if held % 5000 == 0:
                    print(f"  holding {held:,} batches…", file=sys.stderr, flush=True)
            used, started = _cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(args.seconds)
            cores = (_cpu_seconds(pid) - used) / (time.monotonic() - started)
            baseline = baseline if baseline is not None else max(cores, 1e-6)
            print(
                f"broker holds {held:>7,} batches besides the live topic: CPU "
                f"{cores:6.1%} of a core, {cores / baseline:5.2f}× the first step",
                flush=True,
            )
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)
        await producer.stop()
    print(f"load average: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=0, help="idle partitions per fetch")
    parser.add_argument("--steps", default="0,10000,20000,30000", help="batches held")
    parser.add_argument("--seconds", type=float, default=8.0, help="per step")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
