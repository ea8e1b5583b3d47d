"""The /metrics, /healthz and /livez endpoints every long-running `ioc` command serves.

/healthz is the whole truth (503 while a dependency is down: "degraded"); /livez only says
the process answers, for a liveness probe: restarting every component because Kafka is down
would not bring Kafka back.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from foundation.health import DependencyWatch, health_report

__all__ = ["start_observability_server"]


async def start_observability_server(
    registry: CollectorRegistry,
    *,
    host: str,
    port: int,
    healthy: Callable[[], bool],
    dependencies: DependencyWatch | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve /metrics (Prometheus text) and /healthz (200 or 503); returns the bound port.

    /healthz is 503 `"status": "degraded"` while a dependency in `dependencies` is down
    (naming it), 503 `"status": "failing"` when `healthy()` says no.
    """

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def health(_request: web.Request) -> web.Response:
        down = dependencies.down() if dependencies is not None else []
        status, body = health_report(healthy=healthy(), down=down)
        return web.json_response(body, status=status)

    async def live(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", health)
    app.router.add_get("/livez", live)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    # With port 0 the kernel chose; the runner's addresses tell which.
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
    return runner, bound
