"""`ioc simulate`: plausible events of the sectors, published live or written to JSONL."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundation.errors import BrokerUnreachableError, SettingsError
from foundation.settings import Settings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from foundation.contract.catalog import Catalog
    from producers.sdk import Publisher
    from producers.simulators import Emission, Simulation
    from producers.tally import DeliveryTally

__all__ = ["register"]

log = logging.getLogger("ioc.simulate")

PROGRESS_SECONDS = 5.0
MAX_TICK_SECONDS = 0.25

_EPILOG = """\
scenarios (NAME[:SECTOR[:SOURCE]]; without SECTOR: every simulated sector):
  spike      the input of a rate-of-change rule's KPI jumps for 10 min (or --scenario-for)
  drift      a threshold rule's input drifts past its raise level over 15 min, then stays
  silent     a source stops sending (default: the one the sector's absence rule watches)
  late       20 % of events arrive with occurred_at 2-15 min in the past
  malformed  10 % of events break the contract; the SDK refuses them (counted by reason),
             or with --raw-malformed they go onto the topic as raw bytes, with bad JSON too

examples:
  ioc simulate                                   # all 11 sectors, 50 ev/s, until Ctrl-C
  ioc simulate --sectors health,traffic --scenario silent:health --scenario-after 120
  ioc simulate --count 100000 --out day.jsonl    # a replay file (event times end now)
"""


def register(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="publish plausible events of every sector (demo, load, anomaly scenarios)",
        description=(
            "Simulate the department systems of the catalog: daily cycles in the province's "
            "time zone, noise, districts weighted by size. Same --seed and clock, same events."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument("--sectors", help="comma-separated sector ids (default: all)")
    simulate.add_argument(
        "--rate", type=float, default=50.0, metavar="EV_PER_S",
        help="events per second over all sectors, as a daily average (default 50)",
    )  # fmt: skip
    simulate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    simulate.add_argument(
        "--scenario", action="append", default=[], metavar="NAME[:SECTOR[:SOURCE]]",
        help="inject an anomaly (repeatable; see below)",
    )  # fmt: skip
    simulate.add_argument(
        "--scenario-after", type=float, default=60.0, metavar="SECONDS",
        help="scenarios start this long after the run starts (default 60)",
    )  # fmt: skip
    simulate.add_argument(
        "--scenario-for", type=float, metavar="SECONDS",
        help="scenarios last this long (default: a spike 600, the others until the end)",
    )  # fmt: skip
    simulate.add_argument(
        "--raw-malformed", action="store_true",
        help="send malformed events as raw bytes past the SDK (implies --scenario malformed)",
    )  # fmt: skip
    simulate.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this")
    simulate.add_argument("--count", type=int, metavar="N", help="stop after N events")
    simulate.add_argument(
        "--out", type=Path, metavar="FILE.jsonl",
        help="write JSONL instead of publishing, as fast as possible; event times are laid "
        "out at --rate and end now",
    )  # fmt: skip
    simulate.set_defaults(run=_cmd_simulate)


async def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.contract.catalog import load_catalog

    catalog = load_catalog(settings.catalog)
    _check_bounds(args)
    if args.out is not None:
        return _write_jsonl(args, _simulation(args, catalog, start=_backfill_start(args, catalog)))
    from ioc.runtime import resolve_bootstrap_servers

    simulation = _simulation(args, catalog, start=time.time())
    bootstrap = resolve_bootstrap_servers(settings)
    async with _publishers(bootstrap, catalog, args.raw_malformed, settings) as (publisher, raw):
        return await _publish_live(args, simulation, publisher, raw)


def _check_bounds(args: argparse.Namespace) -> None:
    if not 0 < args.rate < float("inf"):
        raise SettingsError(f"--rate: expected positive events per second, got {args.rate}")
    if args.count is not None and args.count < 1:
        raise SettingsError(f"--count: expected a positive number, got {args.count}")
    if args.duration is not None and not args.duration > 0:
        raise SettingsError(f"--duration: expected positive seconds, got {args.duration}")
    if args.out is not None and args.count is None and args.duration is None:
        raise SettingsError("--out needs --count or --duration (a file must end)")
    if args.scenario_after < 0 or (args.scenario_for is not None and args.scenario_for <= 0):
        raise SettingsError("--scenario-after must be ≥ 0 and --scenario-for > 0 seconds")


def _simulation(args: argparse.Namespace, catalog: Catalog, *, start: float) -> Simulation:
    from producers.simulators import Scenario, Simulation

    names = list(args.scenario)
    if args.raw_malformed and not any(n.split(":")[0] == "malformed" for n in names):
        names.append("malformed")
    try:
        scenarios = [
            Scenario.parse(n, after=args.scenario_after, lasts=args.scenario_for) for n in names
        ]
        sectors = (
            [s.strip() for s in args.sectors.split(",") if s.strip()] if args.sectors else None
        )
        return Simulation(
            catalog,
            sectors=sectors,
            rate=args.rate,
            seed=args.seed,
            start=start,
            scenarios=scenarios,
            raw_malformed=args.raw_malformed,
        )
    except ValueError as exc:
        raise SettingsError(f"ioc simulate: {exc}") from exc


def _backfill_start(args: argparse.Namespace, catalog: Catalog) -> float:
    """Where a file's event time starts so that it ends now (replayable at once).

    With --count, daily cycles make the real rate differ from --rate (nights are quiet),
    so a dry run finds when the N-th event falls and the start moves by the difference.
    """
    now = time.time()
    if args.duration is not None:
        return now - float(args.duration)
    start = now - float(args.count / args.rate)
    last = start
    for emission in _bounded(_simulation(args, catalog, start=start), args.count, None):
        last = emission.at
    return start - (last - now)


def _write_jsonl(args: argparse.Namespace, simulation: Simulation) -> int:
    end = simulation.start + args.duration if args.duration is not None else None
    written = 0
    defects: Counter[str] = Counter()
    try:
        with args.out.open("wb") as out:
            for emission in _bounded(simulation, args.count, end):
                out.write(emission.line() + b"\n")
                written += 1
                if emission.defect is not None:
                    defects[emission.defect] += 1
    except OSError as exc:
        raise SettingsError(f"--out: cannot write {args.out}: {exc.strerror or exc}") from exc
    malformed = f", malformed {defects.total():,} ({_counts(defects)})" if defects else ""
    print(f"simulate: run {simulation.run_id} · wrote {written:,} events to {args.out}{malformed}")
    return 0


def _bounded(simulation: Simulation, count: int | None, end: float | None) -> Iterator[Emission]:
    for written, emission in enumerate(simulation.emissions()):
        if (count is not None and written >= count) or (end is not None and emission.at >= end):
            return
        yield emission


@contextlib.asynccontextmanager
async def _publishers(
    bootstrap: str, catalog: Catalog, raw: bool, settings: Settings
) -> AsyncIterator[tuple[Publisher, AIOKafkaProducer | None]]:
    """The SDK publisher, plus a plain producer for raw records when asked."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from foundation.kafka_client import kafka_client_options
    from producers.sdk import Publisher

    options = kafka_client_options(settings)
    publisher = Publisher(
        bootstrap_servers=bootstrap,
        catalog=catalog,
        client_id="ioc-simulate",
        kafka_options=options,
    )
    raw_producer = (
        AIOKafkaProducer(
            bootstrap_servers=bootstrap, client_id="ioc-simulate-raw", acks="all", **options
        )
        if raw
        else None
    )
    try:
        async with asyncio.timeout(settings.connect_timeout):
            await publisher.start()
            if raw_producer is not None:
                await raw_producer.start()
    except (TimeoutError, KafkaError, OSError) as exc:
        await publisher.stop()
        if raw_producer is not None:
            await raw_producer.stop()
        raise BrokerUnreachableError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        yield publisher, raw_producer
    finally:
        await publisher.stop()  # sends what is pending first
        if raw_producer is not None:
            await raw_producer.stop()


async def _publish_live(
    args: argparse.Namespace,
    simulation: Simulation,
    publisher: Publisher,
    raw: AIOKafkaProducer | None,
) -> int:
    from foundation.contract.topics import event_topic
    from producers.tally import DeliveryTally

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tally = DeliveryTally()
    by_sector: Counter[str] = Counter()
    started = time.monotonic()
    end = simulation.start + args.duration if args.duration is not None else None
    next_progress = started + PROGRESS_SECONDS
    emitted = 0
    try:
        while not stop.is_set() and (args.count is None or emitted < args.count):
            now = time.time()
            if end is not None and now >= end:
                break
            limit = None if args.count is None else args.count - emitted
            for emission in simulation.until(now if end is None else min(now, end), limit):
                if emission.raw is not None and raw is not None:
                    topic = event_topic(emission.sector)
                    key = emission.source.encode()
                    tally.track_raw(await raw.send(topic, value=emission.raw, key=key))
                else:
                    tally.track(await publisher.publish(emission.event))
                by_sector[emission.sector] += 1
                emitted += 1
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_SECONDS
                _progress(tally, emitted, time.monotonic() - started)
            delay = min(max(simulation.next_at - time.time(), 0.0), MAX_TICK_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        await publisher.flush()
        if raw is not None:
            await raw.flush()
        await tally.drain()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    elapsed = time.monotonic() - started
    print(
        f"simulate: run {simulation.run_id} · {emitted:,} events in {elapsed:.1f} s "
        f"({emitted / elapsed if elapsed else 0:,.1f} ev/s)"
        + (" · interrupted" if stop.is_set() else "")
    )
    print(f"  {tally.summary()}")
    print(f"  by sector: {_counts(by_sector)}")
    return 0 if not tally.failed else 1


def _progress(tally: DeliveryTally, emitted: int, elapsed: float) -> None:
    print(
        f"simulate: {elapsed:.0f} s · {emitted:,} events ({emitted / elapsed:,.1f} ev/s) · "
        f"{tally.summary()}",
        file=sys.stderr,
        flush=True,
    )


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.most_common())
