"""`ioc up`, `ioc status`, `ioc topics create`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from typing import Any

from ioc.commands import flags_to_settings
from ioc.settings import Settings

__all__ = ["register"]

log = logging.getLogger("ioc")


def register(commands: Any) -> None:
    up = commands.add_parser(
        "up", help="start the platform (embedded broker and PostgreSQL unless configured)"
    )
    up.add_argument(
        "--exit-after", type=float, metavar="SECONDS", help="stop by itself after SECONDS"
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
    from ioc.runtime import Runtime
    from ioc.status import collect_status, render_status
    from ioc.topics import contract_topics, create_topics, ensure_epoch
    from streams.catalog import load_catalog

    catalog = load_catalog(settings.catalog)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Runtime(settings) as endpoints:
        migrated = await migrate(endpoints.database_url, connect_timeout=settings.connect_timeout)
        applied, before = len(migrated.applied), migrated.already_applied
        print(f"schema: {applied} migrations applied, {before} already")
        names = contract_topics(catalog)
        results = await create_topics(
            endpoints.bootstrap_servers,
            names,
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            timeout=settings.connect_timeout,
        )
        print_topic_results(results)
        epoch = await ensure_epoch(endpoints.bootstrap_servers, timeout=settings.connect_timeout)
        log.info("broker epoch %s", epoch)
        report = await collect_status(settings, catalog, names)
        print(render_status(report))
        print(f"ready: broker {endpoints.bootstrap_servers} · Ctrl-C to stop", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.exit_after)
        except TimeoutError:
            log.info("--exit-after %.0f s reached", args.exit_after)
        print("stopping…", flush=True)
    print("stopped", flush=True)
    return 0


async def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.status import collect_status, render_status
    from ioc.topics import contract_topics
    from streams.catalog import load_catalog

    catalog = load_catalog(settings.catalog)
    report = await collect_status(settings, catalog, contract_topics(catalog))
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else render_status(report))
    return 0 if report["ok"] else 1


async def _cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.runtime import resolve_bootstrap_servers
    from ioc.topics import contract_topics, create_topics, ensure_epoch
    from streams.catalog import load_catalog

    catalog = load_catalog(settings.catalog)
    bootstrap = resolve_bootstrap_servers(settings)
    results = await create_topics(
        bootstrap,
        contract_topics(catalog),
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        timeout=settings.connect_timeout,
    )
    print_topic_results(results, verbose=True)
    print(f"broker epoch: {await ensure_epoch(bootstrap, timeout=settings.connect_timeout)}")
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
