"""What `ioc status` reports: which broker and database, whether they answer, what they are."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from foundation.contract.catalog import Catalog
from foundation.kafka_client import kafka_client_options
from foundation.probes import ServiceStatus, probe_kafka, probe_postgres, redact_url
from foundation.settings import Settings
from ioc.components import SIMULATORS, SIMULATORS_STATUS_FILE
from ioc.runtime import gateway_address, read_runtime_file
from ioc.simulators import read_status_file

__all__ = ["collect_status", "render_status", "storage_path_of"]

_NOT_RUNNING = "embedded runtime not running (start it with `ioc up`)"


async def collect_status(
    settings: Settings, catalog: Catalog, expected_topics: list[str]
) -> dict[str, Any]:
    """Probe both services concurrently and describe them as a JSON-ready dict."""
    running = read_runtime_file(settings.state_dir)
    timeout = settings.connect_timeout

    async def broker() -> ServiceStatus:
        if settings.kafka_bootstrap_servers:
            return await probe_kafka(
                settings.kafka_bootstrap_servers,
                timeout=timeout,
                kafka_options=kafka_client_options(settings),
            )
        if running is None:
            return ServiceStatus("broker", "embedded", "-", error=_NOT_RUNNING)
        status = await probe_kafka(running.bootstrap_servers, timeout=timeout, mode="embedded")
        status.version = running.broker_version or status.version
        if running.broker_pid is not None:
            status.details["pid"] = running.broker_pid
            # The memory engine keeps every record it was sent (no retention): watch it.
            with contextlib.suppress(psutil.Error):
                status.details["memory_rss_bytes"] = (
                    psutil.Process(running.broker_pid).memory_info().rss
                )
        return status

    async def database() -> ServiceStatus:
        if settings.database_url:
            return await probe_postgres(settings.database_url, timeout=timeout)
        if running is None:
            return ServiceStatus("database", "embedded", "-", error=_NOT_RUNNING)
        status = await probe_postgres(running.database_url, timeout=timeout, mode="embedded")
        if running.postgres_pid is not None:
            status.details["pid"] = running.postgres_pid
        return status

    broker_status, db_status = await asyncio.gather(broker(), database())
    services = _services(settings.state_dir) if running is not None else {}
    for status, key in ((broker_status, "broker"), (db_status, "database")):
        watched = services.get(key)
        if watched:  # what `ioc up`'s watchdog says: restarts, rolls, epoch, state
            status.details["watchdog"] = watched
    if db_status.reachable:
        details = db_status.details
        details["storage_path"], details["storage_note"] = storage_path_of(details)
    topics: dict[str, Any] = {"expected": len(expected_topics)}
    if broker_status.reachable:
        present = await _existing_topics(
            broker_status.address, timeout, kafka_client_options(settings)
        )
        topics["missing"] = [t for t in expected_topics if t not in present]
        topics["present"] = len(expected_topics) - len(topics["missing"])
    return {
        "state_dir": str(settings.state_dir.resolve()),
        "province": catalog.province.name_vi,
        "embedded_runtime": {
            "running": running is not None,
            "owner_pid": running.owner_pid if running else None,
        },
        "broker": asdict(broker_status),
        "database": asdict(db_status),
        "topics": topics,
        "components": _components(
            settings.state_dir,
            down=[
                s.service
                for s in (broker_status, db_status)
                if not s.reachable or s.details.get("watchdog", {}).get("state", "up") != "up"
            ],
        ),
        "gateway": await _gateway(settings, timeout),
        "ok": broker_status.reachable and db_status.reachable,
        "state": "ok" if broker_status.reachable and db_status.reachable else "degraded",
    }


def storage_path_of(details: dict[str, Any]) -> tuple[str, str]:
    """The database's storage path (recorded, or the one its first migration will take) and
    what to say about TimescaleDB next to it, from `probe_postgres` details."""
    recorded = details.get("storage_path_recorded")
    installed = details.get("timescaledb_version")
    available = details.get("timescaledb_available_version")
    preloaded = bool(details.get("timescaledb_preloaded"))
    if recorded == "timescaledb":
        if preloaded and installed:
            return recorded, f"TimescaleDB {installed}"
        return recorded, (
            "TimescaleDB is not loaded by this server: the database is refused until it is"
            " (shared_preload_libraries = 'timescaledb')"
        )
    if available is None and installed is None:
        offer = "TimescaleDB not installed on this server"
    elif not preloaded:
        offer = f"TimescaleDB {available or installed} installed but not preloaded"
    else:
        offer = f"TimescaleDB {available or installed} available"
    if recorded == "plain-postgresql":
        if preloaded and (available or installed):
            return recorded, f"{offer}; this database keeps the plain path it was set up with"
        return recorded, offer
    guess = "timescaledb" if preloaded and (available or installed) else "plain-postgresql"
    return guess, f"not migrated yet: the first migration takes {guess}; {offer}"


async def _gateway(settings: Settings, timeout: float) -> dict[str, Any] | None:
    """The gateway's /healthz (live wall screens, clients by role), or None if none answers."""
    host, port = gateway_address(settings)
    if not port:
        return None
    try:
        async with asyncio.timeout(min(timeout, 3.0)):
            reader, writer = await asyncio.open_connection(host, port)
            request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            raw = await reader.read(65536)
            writer.close()
        report = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    except (OSError, TimeoutError, ValueError, IndexError):
        return None
    return {
        "address": f"{host}:{port}",
        "walls": int(report.get("walls", 0)),
        "clients": dict(report.get("clients", {})),
    }


def _components(state_dir: Path, *, down: list[str]) -> list[dict[str, Any]]:
    """The children `ioc up` supervises, as it last wrote them (none when it is not running).

    The simulators process carries `sectors`: each sector's simulator, from its status file.
    A running component whose broker or database is down is `degraded`: it runs but what it
    serves is not current (its /healthz says the same).
    """
    try:
        raw = json.loads((state_dir / "children.json").read_text())
        if not psutil.pid_exists(int(raw["supervisor_pid"])):
            return []
        rows = [dict(row) for row in raw["children"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    for row in rows:
        if row.get("name") == SIMULATORS:
            found = {
                r["name"]: r
                for r in read_status_file(state_dir / SIMULATORS_STATUS_FILE, row.get("pid"))
            }
            row["sectors"] = [
                found.get(name, {"name": name, "state": "starting", "restarts": 0, "events": 0})
                for name in row.get("members", [])
            ]
        if down and row.get("state") == "running":
            row["state"] = "degraded"
            row["down"] = down
    return rows


def _services(state_dir: Path) -> dict[str, Any]:
    """What `ioc up`'s service watchdog last wrote (restarts, rolls, broker memory, epoch)."""
    try:
        raw = json.loads((state_dir / "services.json").read_text())
        if not psutil.pid_exists(int(raw["owner_pid"])):
            return {}
        return dict(raw["services"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


async def _existing_topics(
    bootstrap: str, timeout: float, kafka_options: dict[str, Any]
) -> set[str]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **kafka_options
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            return set(await admin.list_topics())
    except (TimeoutError, KafkaError, OSError):
        return set()
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def render_status(report: dict[str, Any]) -> str:
    """A short table for people; `--json` gives the full report."""
    lines = [f"ioc-stream · {report['province']} · state {report['state_dir']}"]
    for key in ("broker", "database"):
        service = report[key]
        state = "up" if service["reachable"] else "DOWN"
        address = service["address"]
        if key == "database" and address != "-":
            address = redact_url(address)
        extra = service["version"] or ""
        details = service["details"]
        if "memory_rss_bytes" in details:
            extra += f", memory {details['memory_rss_bytes'] / 2**20:.0f} MiB"
            limit = details.get("watchdog", {}).get("memory_limit")
            if limit:
                roll_at = details["watchdog"]["roll_at"]
                extra += f" (limit {limit / 2**20:.0f} MiB, rolled at {roll_at:.0%})"
            cores = details.get("watchdog", {}).get("cpu_cores")
            if cores is not None:
                cpu_limit = details["watchdog"].get("cpu_limit") or 0
                extra += f", CPU {cores:.0%} of a core" + (
                    f" (rolled at {cpu_limit:.0%})" if cpu_limit else ""
                )
        if key == "database" and service["reachable"]:
            extra += f", storage path: {details['storage_path']} ({details['storage_note']})"
        extra += _watchdog_note(details.get("watchdog"))
        lines.append(f"  {key:<9} {state:<5} {service['mode']:<9} {address}  {extra}".rstrip())
        if service["error"]:
            lines.append(f"            {service['error']}")
    topics = report["topics"]
    if "present" in topics:
        missing = f" (missing: {', '.join(topics['missing'])})" if topics["missing"] else ""
        lines.append(f"  topics    {topics['present']}/{topics['expected']} present{missing}")
    gateway = report.get("gateway")
    if gateway:
        roles = ", ".join(f"{n} {role}" for role, n in sorted(gateway["clients"].items()))
        lines.append(
            f"  wall screens {gateway['walls']} live on {gateway['address']}"
            + (f" (clients: {roles})" if roles else "")
        )
    if report.get("state") == "degraded":
        lines.append(
            "  DEGRADED: a service is down; the wall shows the last figures, not current ones"
        )
    for child in report.get("components", []):
        restarts = f", {child['restarts']} restarts" if child["restarts"] else ""
        pid = f"pid {child['pid']}" if child["pid"] else "-"
        down = f" ({', '.join(child['down'])} down)" if child.get("down") else ""
        lines.append(f"  {child['name']:<16} {child['state']:<8} {pid}{restarts}{down}")
        for sector in child.get("sectors", []):  # the simulators: one simulation per sector
            again = f", {sector['restarts']} restarts" if sector["restarts"] else ""
            lines.append(
                f"    {sector['name']:<22} {sector['state']:<8} {sector['events']:,} events{again}"
            )
    return "\n".join(lines)


def _watchdog_note(watched: dict[str, Any] | None) -> str:
    """`, epoch 3f2a9c, 1 restart, 4 rolls (last: intake paused 3.1 s)` from services.json."""
    if not watched:
        return ""
    note = ""
    if watched.get("epoch"):
        note += f", epoch {str(watched['epoch'])[:8]}"
    if watched.get("restarts"):
        note += f", restarted {watched['restarts']}×"
    if watched.get("state") not in (None, "up", "down"):
        note += f", {watched['state']}"
    rolls, last = watched.get("rolls"), watched.get("last_roll")
    if rolls:
        note += f", rolled {rolls}×"
    if last:
        outcome = f"intake paused {last['intake_paused_s']:.1f} s" if last["ok"] else "cancelled"
        note += f" (last roll: {outcome})"
    return note
