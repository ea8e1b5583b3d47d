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
    from producers.simulators import Emission, Scenario, Simulation
    from producers.tally import DeliveryTally

__all__ = ["register"]

log = logging.getLogger("ioc.simulate")

PROGRESS_SECONDS = 5.0
MAX_TICK_SECONDS = 0.25

_EPILOG = """\
scenarios (NAME[:SECTOR[:SOURCE]]; without SECTOR: every simulated sector):
  spike      the input of a rate-of-change rule's KPI jumps for 10 min or a whole window
             if longer (or --scenario-for), from the next boundary of the KPI's windows
  drift      a threshold rule's input drifts past its raise level over 15 min, then stays
  silent     a source stops sending (default: the one the sector's absence rule watches)
  late       20 % of events arrive with occurred_at 2-15 min in the past
  malformed  10 % of events break the contract; the SDK refuses them (counted by reason),
             or with --raw-malformed they go onto the topic as raw bytes, with bad JSON too

examples:
  ioc simulate                                   # all 11 sectors, 50 ev/s, until Ctrl-C
  ioc simulate --per-sector                      # as `ioc up` runs them (see below)
  ioc simulate --sectors health,traffic --scenario silent:health --scenario-after 120
  ioc simulate --count 100000 --out day.jsonl    # a replay file (event times end now)

--per-sector (what `ioc up` runs, in one process): each sector is its own simulation with
seed + its position in the catalog, an even share of --rate and the scenarios that name it
or no sector; a sector that fails is restarted alone after 1, 2, 4 … 30 s; --status-file
says each sector's state (`ioc status` shows it).
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
        "--linger", type=float, default=0.020, metavar="SECONDS",
        help="how long each source gathers events into one record (the SDK's linger, default "
        "0.02; department systems that push in batches send fewer, larger records)",
    )  # fmt: skip
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
        help=(
            "scenarios last this long (default: a spike 600 or its KPI's window if longer, "
            "the others until the end)"
        ),
    )  # fmt: skip
    simulate.add_argument(
        "--raw-malformed", action="store_true",
        help="send malformed events as raw bytes past the SDK (implies --scenario malformed)",
    )  # fmt: skip
    simulate.add_argument(
        "--per-sector", action="store_true",
        help="one simulation per sector, each restarted alone if it fails (see below)",
    )  # fmt: skip
    simulate.add_argument(
        "--status-file", type=Path, metavar="FILE.json",
        help="with --per-sector: write each sector's state here every second",
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
    if args.per_sector:
        return await _per_sector(args, catalog, settings)
    if args.out is not None:
        return _write_jsonl(args, _simulation(args, catalog, start=_backfill_start(args, catalog)))
    from ioc.runtime import resolve_bootstrap_servers

    simulation = _simulation(args, catalog, start=time.time())
    bootstrap = resolve_bootstrap_servers(settings)
    async with _publishers(bootstrap, catalog, args, settings) as (publisher, raw):
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
    if args.per_sector and (args.out is not None or args.count is not None):
        raise SettingsError("--per-sector publishes live until stopped: no --out or --count")
    if args.status_file is not None and not args.per_sector:
        raise SettingsError("--status-file goes with --per-sector")
    if not 0 <= args.linger <= 10:
        raise SettingsError(f"--linger: expected 0 to 10 seconds, got {args.linger}")


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    from producers.simulators import Scenario

    names = list(args.scenario)
    if args.raw_malformed and not any(n.split(":")[0] == "malformed" for n in names):
        names.append("malformed")
    try:
        return [
            Scenario.parse(n, after=args.scenario_after, lasts=args.scenario_for) for n in names
        ]
    except ValueError as exc:
        raise SettingsError(f"ioc simulate: {exc}") from exc


def _sectors(args: argparse.Namespace) -> list[str] | None:
    return [s.strip() for s in args.sectors.split(",") if s.strip()] if args.sectors else None


def _simulation(
    args: argparse.Namespace,
    catalog: Catalog,
    *,
    start: float,
    sectors: list[str] | None = None,
    rate: float | None = None,
    seed: int | None = None,
    scenarios: list[Scenario] | None = None,
) -> Simulation:
    from producers.simulators import Simulation

    try:
        return Simulation(
            catalog,
            sectors=_sectors(args) if sectors is None else sectors,
            rate=args.rate if rate is None else rate,
            seed=args.seed if seed is None else seed,
            start=start,
            scenarios=_scenarios(args) if scenarios is None else scenarios,
            raw_malformed=args.raw_malformed,
        )
    except ValueError as exc:
        raise SettingsError(f"ioc simulate: {exc}") from exc


async def _per_sector(args: argparse.Namespace, catalog: Catalog, settings: Settings) -> int:
    """Every sector its own simulation in this one process (`ioc up`), restarted alone."""
    from foundation.contract.topics import event_topic
    from ioc.runtime import resolve_bootstrap_servers
    from ioc.simulators import SectorSimulators
    from producers.tally import DeliveryTally

    positions: dict[str, int] = {s.id: index for index, s in enumerate(catalog.sectors)}
    chosen = _sectors(args) or list(positions)
    unknown = [s for s in chosen if s not in positions]
    if unknown:
        raise SettingsError(f"ioc simulate: unknown sector {unknown[0]!r}")
    scenarios = [_located(s, catalog) for s in _scenarios(args)]
    for scenario in scenarios:
        if scenario.sector is not None and scenario.sector not in chosen:
            raise SettingsError(f"ioc simulate: scenario {scenario.kind}: sector "
                                f"{scenario.sector!r} is not simulated")  # fmt: skip
    rate = args.rate / len(chosen)

    def simulation(sector: str, start: float) -> Simulation:
        mine = [s for s in scenarios if s.sector in (None, sector)]
        seed = args.seed + positions[sector]
        return _simulation(
            args, catalog, start=start, sectors=[sector], rate=rate, seed=seed, scenarios=mine
        )

    for sector in chosen:  # a bad setting fails now, not in a restart loop
        simulation(sector, time.time())
    bootstrap = resolve_bootstrap_servers(settings)
    tally = DeliveryTally()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)
    started = time.monotonic()
    async with _publishers(bootstrap, catalog, args, settings) as (publisher, raw):

        async def publish(emission: Emission) -> None:
            if emission.raw is not None and raw is not None:
                sent = await raw.send(
                    event_topic(emission.sector), value=emission.raw, key=emission.source.encode()
                )
                tally.track_raw(sent)
            else:
                tally.track(await publisher.publish(emission.event))

        simulators = SectorSimulators(
            chosen, simulation=simulation, publish=publish, status_file=args.status_file
        )
        progress = asyncio.create_task(_report_progress(tally, simulators, started, stop))
        try:
            await simulators.run(stop)
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        await publisher.flush()
        if raw is not None:
            await raw.flush()
        await tally.drain()
    elapsed = time.monotonic() - started
    emitted = simulators.events
    restarts = sum(run.restarts for run in simulators.runs)
    print(
        f"simulate: {len(chosen)} sectors, one simulation each · {emitted:,} events in "
        f"{elapsed:.1f} s ({emitted / elapsed if elapsed else 0:,.1f} ev/s) · "
        f"{restarts} restarts"
    )
    print(f"  {tally.summary()}")
    print("  by sector: " + ", ".join(f"{r.sector} {r.events:,}" for r in simulators.runs))
    return 0 if not tally.failed else 1


async def _report_progress(
    tally: DeliveryTally, simulators: Any, started: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PROGRESS_SECONDS)
        _progress(tally, simulators.events, time.monotonic() - started)


def _located(scenario: Scenario, catalog: Catalog) -> Scenario:
    """A scenario naming a source but no sector belongs to that source's sector."""
    import dataclasses

    if scenario.source is None or scenario.sector is not None:
        return scenario
    found = catalog.source(scenario.source)
    if found is None:
        raise SettingsError(f"ioc simulate: scenario {scenario.kind}: unknown source "
                            f"{scenario.source!r}")  # fmt: skip
    return dataclasses.replace(scenario, sector=found[0].id)


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
    bootstrap: str, catalog: Catalog, args: argparse.Namespace, settings: Settings
) -> AsyncIterator[tuple[Publisher, AIOKafkaProducer | None]]:
    """The SDK publisher, plus a plain producer for raw records when asked."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from foundation.kafka_client import kafka_client_options, producer_compression
    from producers.sdk import Publisher

    options = kafka_client_options(settings)
    publisher = Publisher(
        bootstrap_servers=bootstrap,
        catalog=catalog,
        client_id="ioc-simulate",
        kafka_options=options,
        compression=producer_compression(settings),
        linger=args.linger,
    )
    raw = bool(args.raw_malformed)
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
