"""The `ioc` command line: parse, build settings once, run one command, map errors to one line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ioc import __version__
from ioc.errors import CatalogError, IocError
from ioc.settings import Settings, load_settings

__all__ = ["main"]

log = logging.getLogger("ioc")

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioc",
        description="ioc-stream: real-time monitoring for a provincial operations center",
    )
    parser.add_argument("--version", action="version", version=f"ioc-stream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    topic_commands = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topic_commands.add_parser(
        "create", help="create every topic of the contract (idempotent)"
    )
    create.add_argument(
        "--partitions", type=int, help="partitions per topic (IOC_TOPIC_PARTITIONS)"
    )
    create.add_argument("--replication-factor", type=int, help="(IOC_TOPIC_REPLICATION_FACTOR)")
    create.set_defaults(run=_cmd_topics_create)

    catalog = commands.add_parser("catalog", help="the sector catalog")
    catalog_commands = catalog.add_subparsers(
        dest="catalog_command", required=True, metavar="ACTION"
    )
    check = catalog_commands.add_parser(
        "check", help="validate a catalog file; problems with file:line"
    )
    check.add_argument(
        "file", nargs="?", type=Path, help="catalog YAML (default: IOC_CATALOG or the built-in one)"
    )
    check.set_defaults(run=_cmd_catalog_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ioc` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        overrides: dict[str, object] = {}
        if getattr(args, "partitions", None) is not None:
            overrides["topic_partitions"] = args.partitions
        if getattr(args, "replication_factor", None) is not None:
            overrides["topic_replication_factor"] = args.replication_factor
        settings = load_settings(**overrides)
        _configure_logging(settings)
        command: Command = args.run
        return asyncio.run(command(args, settings))
    except CatalogError as exc:
        print(f"ioc: error {exc}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except IocError as exc:
        print(f"ioc: error {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.log_level != "debug":
        # Client libraries log every failed connection attempt; our errors say it once.
        for noisy in ("aiokafka", "kafka"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)


async def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.runtime import Runtime
    from ioc.status import collect_status, render_status
    from ioc.topics import contract_topics, create_topics
    from streams.catalog import load_catalog

    catalog = load_catalog(settings.catalog)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Runtime(settings) as endpoints:
        names = contract_topics(catalog)
        results = await create_topics(
            endpoints.bootstrap_servers,
            names,
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            timeout=settings.connect_timeout,
        )
        _print_topic_results(results)
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
    from ioc.topics import contract_topics, create_topics
    from streams.catalog import load_catalog

    catalog = load_catalog(settings.catalog)
    results = await create_topics(
        resolve_bootstrap_servers(settings),
        contract_topics(catalog),
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        timeout=settings.connect_timeout,
    )
    _print_topic_results(results, verbose=True)
    return 0


def _print_topic_results(results: list[Any], *, verbose: bool = False) -> None:
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


async def _cmd_catalog_check(args: argparse.Namespace, settings: Settings) -> int:
    from streams.catalog import load_catalog

    path = args.file or settings.catalog
    catalog = load_catalog(path)
    print(
        f"catalog ok: {catalog.province.name_vi}, {len(catalog.sectors)} sectors, "
        f"{len(catalog.districts)} districts"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
