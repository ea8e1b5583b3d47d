"""`ioc notifier`: alert notifications by webhook, e-mail, Telegram and Zalo OA."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from foundation.settings import Settings
from ioc.commands import flags_to_settings

__all__ = ["register"]


def register(commands: Any) -> None:
    notifier = commands.add_parser(
        "notifier",
        help="send alert notifications (webhook, e-mail, Telegram, Zalo OA) from ioc.alerts",
    )
    notifier.add_argument(
        "--routing", help="routing file (IOC_NOTIFIER_ROUTING; default: the demo routing)"
    )
    notifier.add_argument(
        "--metrics-port", type=int, help="port of /metrics and /healthz (IOC_NOTIFIER_METRICS_PORT)"
    )
    notifier.add_argument(
        "--check", action="store_true", help="validate the routing file against the catalog, exit"
    )
    notifier.set_defaults(
        run=_cmd_notifier,
        overrides=flags_to_settings(
            routing="notifier_routing", metrics_port="notifier_metrics_port"
        ),
    )


async def _cmd_notifier(args: argparse.Namespace, settings: Settings) -> int:
    if args.check:
        return _check(settings)

    from alerts.notifier import NotifierHandle, run_notifier
    from consumers.migrations import migrate
    from foundation.health import DependencyWatch
    from foundation.observability import start_observability_server
    from ioc.runtime import resolve_bootstrap_servers, resolve_database_url

    _check(settings, quiet=True)  # a bad routing file fails before anything connects
    bootstrap = resolve_bootstrap_servers(settings)
    database_url = resolve_database_url(settings)
    await migrate(database_url, connect_timeout=settings.connect_timeout)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    handle = NotifierHandle()
    watch = DependencyWatch.from_settings(
        settings, bootstrap_servers=bootstrap, database_url=database_url
    )
    watch.start()
    runner, port = await start_observability_server(
        handle.registry,
        host=settings.notifier_metrics_host,
        port=settings.notifier_metrics_port,
        healthy=handle.healthy,
        dependencies=watch,
    )
    host = settings.notifier_metrics_host
    print(f"notifier metrics: http://{host}:{port}/metrics", flush=True)

    async def announce_assignment() -> None:
        await handle.assigned.wait()
        print(
            f"ready: notifier consuming ioc.alerts as group {settings.notifier_group}"
            f" · channels: {', '.join(handle.channels) or 'none configured'}",
            flush=True,
        )

    announcer = asyncio.create_task(announce_assignment())
    try:
        await run_notifier(
            settings,
            bootstrap_servers=bootstrap,
            database_url=database_url,
            stop=stop,
            handle=handle,
        )
    finally:
        announcer.cancel()
        await asyncio.gather(announcer, return_exceptions=True)
        await runner.cleanup()
        await watch.close()
    print("stopped", flush=True)
    return 0


def _check(settings: Settings, *, quiet: bool = False) -> int:
    from alerts.routing import check_roles, check_teams, default_routing_path, load_routing
    from foundation.contract.catalog import load_catalog

    catalog = load_catalog(settings.catalog)
    routing = load_routing(settings.notifier_routing)
    check_roles(
        routing, [lvl.role for lvl in catalog.escalation.levels], path=settings.notifier_routing
    )
    check_teams(routing, [t.id for t in catalog.teams], path=settings.notifier_routing)
    if not quiet:
        path = settings.notifier_routing or default_routing_path()
        print(
            f"routing {path}: ok · {len(routing.recipients)} recipients,"
            f" {len(routing.groups)} groups, {len(routing.routes)} routes,"
            f" {len(routing.reports)} report routes"
        )
    return 0
