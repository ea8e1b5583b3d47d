"""`ioc ingest-api [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from foundation.settings import Settings
from ioc.commands import flags_to_settings

__all__ = ["register"]


def register(commands: Any) -> None:
    api = commands.add_parser(
        "ingest-api", help="serve the HTTP ingest API for department systems (POST /v1/events)"
    )
    api.add_argument("--host", help="address to listen on (IOC_INGEST_HOST, default 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (IOC_INGEST_PORT, default 8081; 0 = any)")
    api.set_defaults(
        run=_cmd_ingest_api,
        overrides=flags_to_settings(host="ingest_host", port="ingest_port"),
    )


async def _cmd_ingest_api(args: argparse.Namespace, settings: Settings) -> int:
    from ioc.api_server import run_api_server
    from ioc.runtime import resolve_bootstrap_servers, resolve_database_url

    bootstrap = resolve_bootstrap_servers(settings)
    database_url = resolve_database_url(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def announce(url: str) -> None:
        print(f"ingest API listening on {url} (POST {url}/v1/events, docs {url}/openapi.json)")
        print("ready: Ctrl-C to stop", flush=True)

    await run_api_server(
        settings,
        bootstrap_servers=bootstrap,
        database_url=database_url,
        stop=stop,
        announce=announce,
    )
    print("stopped", flush=True)
    return 0
