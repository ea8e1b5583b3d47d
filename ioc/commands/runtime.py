"""`ioc up`, `ioc status`, `ioc topics create`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable
from typing import Any

from foundation.settings import Settings
from ioc.commands import flags_to_settings

__all__ = ["register"]

log = logging.getLogger("ioc")


def register(commands: Any) -> None:
    up = commands.add_parser(
        "up", help="start the platform (embedded broker and PostgreSQL unless configured)"
    )
    up.add_argument(
        "--exit-after", type=float, metavar="SECONDS", help="stop by itself after SECONDS"
    )
    up.add_argument("--no-simulate", action="store_true", help="do not run the sector simulators")
    up.add_argument(
        "--rate",
        type=float,
        default=50.0,
        metavar="EV_PER_S",
        help="simulated events per second over all sectors (default 50)",
    )
    up.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME[:SECTOR[:SOURCE]]",
        help="an anomaly for the simulators (see `ioc simulate --help`); repeatable",
    )
    up.add_argument(
        "--scenario-after",
        type=float,
        metavar="SECONDS",
        help="scenarios start this long after the simulators (default 60)",
    )
    up.add_argument(
        "--only",
        metavar="NAMES",
        help="run only these components (comma-separated: worker, writer, notifier, gateway, "
        "ingest-api, simulators, sim-<sector>); default: all",
    )
    up.add_argument(
        "--services-only",
        action="store_true",
        help="run the broker and the database only, no components (the pre-#7 behaviour)",
    )
    up.set_defaults(run=_cmd_up)

    status = commands.add_parser(
        "status", help="which broker and database are in use, and whether they answer"
    )
    status.add_argument("--json", action="store_true", help="print the full report as JSON")
    status.set_defaults(run=_cmd_status)

    topics = commands.add_parser("topics", help="Kafka topics of the contract")
    actions = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create every topic of the contract (idempotent)")
    create.add_argument(
        "--partitions", type=int, help="partitions per topic (IOC_TOPIC_PARTITIONS)"
    )
    create.add_argument("--replication-factor", type=int, help="(IOC_TOPIC_REPLICATION_FACTOR)")
    create.set_defaults(
        run=_cmd_topics_create,
        overrides=flags_to_settings(
            partitions="topic_partitions", replication_factor="topic_replication_factor"
        ),
    )


async def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.migrations import migrate
    from foundation.contract.catalog import load_catalog
    from ioc.commands.db import timescale_suffix
    from ioc.runtime import Runtime
    from ioc.services import ServiceWatchdog, prepare_broker
    from ioc.status import collect_status, render_status
    from ioc.topics import contract_topics

    catalog = load_catalog(settings.catalog)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    only = [name.strip() for name in args.only.split(",")] if args.only else None
    runtime = Runtime(
        settings, gateway=not args.services_only and (only is None or "gateway" in only)
    )
    async with runtime as endpoints:
        migrated = await migrate(
            endpoints.database_url,
            connect_timeout=settings.connect_timeout,
            storage=settings.storage_path,
        )
        applied, before = len(migrated.applied), migrated.already_applied
        print(
            f"schema: {applied} migrations applied, {before} already;"
            f" storage path {migrated.storage_path}{timescale_suffix(migrated)}"
        )
        for note in migrated.notes:
            print(f"note: {note}")
        results, epoch = await prepare_broker(settings, catalog, endpoints.bootstrap_servers)
        print_topic_results(results)
        log.info("broker epoch %s (generation %d)", epoch.id, epoch.generation)
        report = await collect_status(settings, catalog, contract_topics(catalog))
        print(render_status(report))
        watchdog: ServiceWatchdog | None = None
        supervisor = _supervisor(
            args,
            settings,
            [s.id for s in catalog.sectors],
            dependencies_down=lambda: watchdog is not None and watchdog.dependencies_down(),
        )
        # Restarts a dead embedded broker or PostgreSQL, rolls the broker (ioc/services.py).
        watchdog = ServiceWatchdog(
            runtime=runtime, supervisor=supervisor, settings=settings, catalog=catalog, epoch=epoch
        )
        watching = asyncio.create_task(watchdog.run(stop), name="services")
        if args.exit_after is not None:
            loop.call_later(args.exit_after, stop.set)
        try:
            if supervisor is None:
                print(f"ready: broker {endpoints.bootstrap_servers} · Ctrl-C to stop", flush=True)
                await stop.wait()
                print("stopping…", flush=True)
            else:
                supervising = asyncio.create_task(supervisor.run(stop), name="supervisor")
                try:
                    await _announce(supervisor, settings, stop)
                    await supervising
                finally:
                    supervising.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await supervising
                    # The watchdog first: nothing may restart a service while all stop.
                    await _cancel(watching)
                    print("stopping…", flush=True)
                    supervisor.stop_all(timeout=STOP_TIMEOUT)
        finally:
            await _cancel(watching)
    print("stopped", flush=True)
    return 0


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# Ctrl-C / SIGTERM → every child gets SIGTERM, and SIGKILL after this; the services stop
# after them, so the whole platform is down within 10 s.
STOP_TIMEOUT = 6.0


def _supervisor(
    args: argparse.Namespace,
    settings: Settings,
    sectors: list[str],
    *,
    dependencies_down: Callable[[], bool],
) -> Any:
    from ioc.components import SIMULATORS_STATUS_FILE, SimulatorPlan, platform_children
    from ioc.supervisor import Supervisor

    if args.services_only:
        return None
    state_dir = settings.state_dir.resolve()
    plan = None
    if not args.no_simulate:
        plan = SimulatorPlan(
            rate=args.rate,
            scenarios=tuple(args.scenario),
            scenario_after=args.scenario_after,
            status_file=str(state_dir / SIMULATORS_STATUS_FILE),
        )
    only = args.only.split(",") if args.only else None
    children = platform_children(sectors, simulate=plan, only=only)
    return Supervisor(
        children,
        state_dir=state_dir,
        env=None,
        dependencies_down=dependencies_down,
    )


async def _announce(supervisor: Any, settings: Settings, stop: asyncio.Event) -> None:
    """Print the component table once every child started (or after 15 s), then `ready:`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while not stop.is_set() and loop.time() < deadline:
        if all(c.state in ("running", "backoff", "failed") for c in supervisor.children):
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    if stop.is_set():
        return
    print("components:")
    for child in supervisor.children:
        pid = child.pid if child.pid is not None else "-"
        log_path = supervisor.log_path(child.spec.name)
        print(f"  {child.spec.name:<16} {child.state:<8} pid {pid!s:<8} log {log_path}")
        if child.spec.members:  # the simulators: one process, a simulation per sector
            print(f"    {len(child.spec.members)} in one process: {', '.join(child.spec.members)}")
    if any(c.spec.name == "gateway" for c in supervisor.children):
        # The page must answer when the officer opens the link: wait for the gateway's port.
        if settings.gateway_port and not await _listening(
            settings.gateway_host, settings.gateway_port, stop, timeout=60.0
        ):
            log.warning("the gateway does not answer yet (see %s)", supervisor.log_path("gateway"))
        wall = _wall_url(settings)
        print(f"wall: {wall}")
        if wall.startswith("http://"):
            # The same read-only token opens the analysis workspace (every team).
            print(f"analysis: {wall.replace('/?token=', '/analysis?token=', 1)}")
    print("ready: Ctrl-C to stop", flush=True)


async def _listening(host: str, port: int, stop: asyncio.Event, *, timeout: float) -> bool:
    """True once host:port accepts a connection (within timeout, unless stopped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not stop.is_set() and loop.time() < deadline:
        try:
            async with asyncio.timeout(1.0):
                _reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def _wall_url(settings: Settings) -> str:
    """The wall page's address with a fresh wall token (a day long) for this demo."""
    import time

    from foundation.auth.token_secret import token_secret
    from foundation.auth.tokens import issue_token

    token, _claims = issue_token(
        token_secret(settings), role="wall", name="Màn hình tường IOC", sectors=None,
        now=time.time(), ttl=86400.0,
    )  # fmt: skip
    if settings.gateway_port == 0:
        return f"(IOC_GATEWAY_PORT=0: see the gateway's log for its port) ?token={token}"
    return f"http://{settings.gateway_host}:{settings.gateway_port}/?token={token}"


async def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.contract.catalog import load_catalog
    from ioc.status import collect_status, render_status
    from ioc.topics import contract_topics

    catalog = load_catalog(settings.catalog)
    report = await collect_status(settings, catalog, contract_topics(catalog))
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render_status(report))
    return 0 if report["ok"] else 1


async def _cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.contract.catalog import load_catalog
    from ioc.runtime import resolve_bootstrap_servers
    from ioc.services import prepare_broker

    catalog = load_catalog(settings.catalog)
    bootstrap = resolve_bootstrap_servers(settings)
    results, epoch = await prepare_broker(settings, catalog, bootstrap)
    print_topic_results(results, verbose=True)
    print(f"broker epoch: {epoch.id} (generation {epoch.generation})")
    return 0


def print_topic_results(results: list[Any], *, verbose: bool = False) -> None:
    created = sum(1 for r in results if r.outcome == "created")
    for result in results:
        if verbose or result.mismatch:
            note = (
                f" (has {result.partitions} partitions, {result.wanted_partitions} wanted)"
                if result.mismatch
                else f" ({result.partitions} partitions)"
            )
            print(f"  {result.outcome:<8} {result.name}{note}")
    print(f"topics: {created} created, {len(results) - created} already existed")
