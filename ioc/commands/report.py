"""`ioc report --team T --date D --format pdf|html|xlsx [--weekly] [--out FILE]` (on demand)
and `ioc reporter` (the morning reports at 07:00, supervised by `ioc up`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from foundation.settings import Settings
from ioc.commands import flags_to_settings

__all__ = ["register"]


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="make an analysis team's report (what the morning mail carries)"
    )
    report.add_argument("--team", required=True, help="a team id of the catalog")
    report.add_argument(
        "--date",
        help="YYYY-MM-DD: the day (or a day of the week, --weekly); default yesterday "
        "(the last finished week)",
    )
    report.add_argument("--weekly", action="store_true", help="the Monday–Sunday edition")
    report.add_argument("--format", choices=("pdf", "html", "xlsx"), default="pdf")
    report.add_argument("--out", help="file to write (default bao-cao-<team>-…; '-' stdout)")
    report.set_defaults(run=_cmd_report)

    reporter = commands.add_parser(
        "reporter",
        help="send each team's report at 07:00 (weekly on Monday) by e-mail and as a link",
    )
    reporter.add_argument(
        "--metrics-port", type=int, help="port of /metrics and /healthz (IOC_REPORTER_METRICS_PORT)"
    )
    reporter.set_defaults(
        run=_cmd_reporter, overrides=flags_to_settings(metrics_port="reporter_metrics_port")
    )


async def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.history import HistoryStore, open_read_pool
    from consumers.migrations import migrate
    from consumers.reports.service import make_report
    from foundation.contract.catalog import load_catalog
    from foundation.errors import SettingsError
    from ioc.runtime import resolve_database_url

    catalog = load_catalog(settings.catalog)
    team = catalog.team(args.team)
    if team is None:
        known = ", ".join(t.id for t in catalog.teams) or "none in this catalog"
        raise SettingsError(f"--team: {args.team!r} is not a team of the catalog ({known})")
    zone = ZoneInfo(catalog.province.timezone)
    today = datetime.now(zone).date()
    if args.date:
        try:
            day = date.fromisoformat(args.date)
        except ValueError as exc:
            raise SettingsError(f"--date: expected YYYY-MM-DD, got {args.date!r}") from exc
    else:  # yesterday, or the last finished Monday–Sunday week
        day = today - timedelta(days=today.weekday() + 1 if args.weekly else 1)
    last = day + timedelta(days=6 - day.weekday()) if args.weekly else day
    if last >= today:
        period = f"the week {last - timedelta(days=6)}..{last}" if args.weekly else f"{day}"
        raise SettingsError(
            f"--date: {period} has not ended yet (today is {today} in {zone.key}); "
            "a report covers a finished day or week"
        )
    edition = "weekly" if args.weekly else "daily"
    database_url = resolve_database_url(settings)
    await migrate(database_url, connect_timeout=settings.connect_timeout)
    pool = await open_read_pool(
        database_url, timeout=settings.connect_timeout, statement_timeout=120.0, max_size=2
    )
    try:
        made = await make_report(
            HistoryStore(pool=pool, timeout=120.0), catalog, team, edition, day, now=time.time()
        )
    finally:
        await pool.close()
    html = made.html.replace("<!--ioc:link-->", "")
    body = {"pdf": made.pdf, "html": html.encode(), "xlsx": made.xlsx}[args.format]
    if args.out == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    else:
        out = Path(args.out or f"{made.report.filename}.{args.format}")
        await asyncio.to_thread(out.write_bytes, body)
        print(f"{out} ({len(body):,} bytes): {made.subject}", file=sys.stderr)
    return 0


async def _cmd_reporter(args: argparse.Namespace, settings: Settings) -> int:
    import aiohttp
    from prometheus_client import CollectorRegistry

    from alerts.notifier.app import build_channels
    from alerts.routing import check_teams, load_routing
    from consumers.history import HistoryStore, open_read_pool
    from consumers.migrations import migrate
    from consumers.reports.service import Reporter, ReporterConfig, ReporterMetrics, run_reporter
    from foundation.auth.key_store import open_pool
    from foundation.auth.token_secret import token_secret
    from foundation.contract.catalog import load_catalog
    from foundation.observability import start_observability_server
    from ioc.runtime import resolve_database_url

    catalog = load_catalog(settings.catalog)
    routing = load_routing(settings.notifier_routing)
    check_teams(routing, [t.id for t in catalog.teams], path=settings.notifier_routing)
    database_url = resolve_database_url(settings)
    await migrate(database_url, connect_timeout=settings.connect_timeout)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    registry = CollectorRegistry()
    pool = await open_pool(database_url, timeout=settings.connect_timeout, name="ioc-reporter")
    read_pool = await open_read_pool(
        database_url, timeout=settings.connect_timeout, statement_timeout=120.0, max_size=2
    )
    try:
        async with aiohttp.ClientSession() as session:
            channels = build_channels(settings, session)
            reporter = Reporter(
                pool=pool,
                rows=HistoryStore(pool=read_pool, timeout=120.0),
                catalog=catalog,
                routing=routing,
                channels=channels,
                config=ReporterConfig(
                    secret=token_secret(settings),
                    public_url=settings.public_base_url,
                    hour=settings.reporter_hour,
                    catch_up=settings.reporter_catch_up,
                    link_ttl=settings.report_link_ttl,
                    poll_interval=settings.reporter_poll_interval,
                ),
                metrics=ReporterMetrics.create(registry),
            )
            stale = max(3 * settings.reporter_poll_interval, 300.0)
            runner, port = await start_observability_server(
                registry,
                host=settings.reporter_metrics_host,
                port=settings.reporter_metrics_port,
                healthy=lambda: time.monotonic() - reporter.last_ok < stale,
            )
            host = settings.reporter_metrics_host
            print(f"reporter metrics: http://{host}:{port}/metrics", flush=True)
            print(
                f"ready: reporter · {len(catalog.teams)} teams, {len(routing.reports)} report"
                f" routes, at {settings.reporter_hour:02d}:00 {catalog.province.timezone}"
                f" · channels: {', '.join(sorted(channels)) or 'none configured'}",
                flush=True,
            )
            try:
                await run_reporter(
                    reporter, stop=stop, poll_interval=settings.reporter_poll_interval
                )
            finally:
                await runner.cleanup()
    finally:
        await read_pool.close()
        await pool.close()
    print("stopped", flush=True)
    return 0
