"""`ioc gateway [--host H] [--port P]`: the WebSocket gateway and the wall page."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from foundation.settings import Settings
from ioc.commands import flags_to_settings

__all__ = ["register"]


def register(commands: Any) -> None:
    gateway = commands.add_parser(
        "gateway", help="serve the video wall page and its WebSocket (live KPIs and alerts)"
    )
    gateway.add_argument("--host", help="address to listen on (IOC_GATEWAY_HOST, 127.0.0.1)")
    gateway.add_argument("--port", type=int, help="port (IOC_GATEWAY_PORT, default 8080; 0 = any)")
    gateway.set_defaults(
        run=_cmd_gateway,
        overrides=flags_to_settings(host="gateway_host", port="gateway_port"),
    )


async def _cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.gateway.app import GatewayConfig, run_gateway
    from foundation.auth.token_secret import token_secret
    from foundation.contract.catalog import load_catalog
    from foundation.kafka_client import kafka_client_options
    from ioc.runtime import resolve_bootstrap_servers, resolve_database_url

    catalog = load_catalog(settings.catalog)
    config = GatewayConfig(
        bootstrap_servers=resolve_bootstrap_servers(settings),
        database_url=resolve_database_url(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        secret=token_secret(settings),
        heartbeat=settings.gateway_heartbeat,
        queue_limit=settings.gateway_client_queue,
        resume_buffer=settings.gateway_resume_buffer,
        resume_seconds=settings.gateway_resume_seconds,
        send_timeout=settings.gateway_send_timeout,
        replay_seconds=settings.gateway_replay_seconds,
        connect_timeout=settings.connect_timeout,
        kafka_options=kafka_client_options(settings),
        probe_interval=settings.health_probe_interval,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def announce(url: str) -> None:
        print(f"gateway: wall {url} · WebSocket {url}ws · {url}healthz · {url}metrics")
        print("  open the wall with a token: ioc tokens create --role wall --name NAME --url")
        print("ready: Ctrl-C to stop", flush=True)

    await run_gateway(config, catalog=catalog, stop=stop, announce=announce)
    print("stopped", flush=True)
    return 0
