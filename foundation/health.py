"""Whether the broker and the database answer, as every component's /healthz reports it.

`DependencyHealth` is the pure part: probe results in, "which dependency is down, since
when" out. A dependency is down after `failures_to_down` failed probes in a row (one slow
answer on a loaded machine is not an outage), and down *since the first of them*.
`DependencyWatch` probes every few seconds: a Kafka bootstrap (metadata request, what every
client does first) and `SELECT 1` on one kept connection.

`health_report` turns a component's own verdict and the dependencies into the /healthz
answer: 200 `{"ok": true, "status": "ok"}`, or 503 with `"status": "degraded"` and the
dependencies down, or 503 `"status": "failing"` when the component itself is unwell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from foundation.kafka_client import kafka_client_options
from foundation.probes import probe_kafka
from foundation.settings import Settings

__all__ = [
    "BROKER",
    "DATABASE",
    "DependencyDown",
    "DependencyHealth",
    "DependencyView",
    "DependencyWatch",
    "health_report",
]

log = logging.getLogger(__name__)

BROKER = "broker"
DATABASE = "database"


@dataclass(frozen=True, slots=True)
class DependencyDown:
    """A dependency that does not answer, since when (unix time), and the last error."""

    dependency: str
    since: float
    error: str

    def to_json(self) -> dict[str, Any]:
        return {
            "dependency": self.dependency,
            "since": self.since,
            "since_iso": datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds"),
            "error": self.error,
        }


class DependencyView(Protocol):
    """Which dependencies are down (a `DependencyWatch`, or a test's stand-in)."""

    def down(self) -> list[DependencyDown]: ...


@dataclass(slots=True)
class _Track:
    failures: int = 0
    first_failure: float = 0.0
    error: str = ""
    down: bool = False


class DependencyHealth:
    """Probe results per dependency → which are down (pure: the caller passes the time)."""

    def __init__(self, names: Iterable[str], *, failures_to_down: int = 2) -> None:
        if failures_to_down < 1:
            raise ValueError("failures_to_down must be at least 1")
        self._tracks = {name: _Track() for name in names}
        self._failures_to_down = failures_to_down

    @property
    def names(self) -> list[str]:
        return list(self._tracks)

    def observe(self, name: str, *, ok: bool, now: float, error: str = "") -> bool:
        """Record one probe of `name`; True when it went down or came back."""
        track = self._tracks[name]
        if ok:
            changed = track.down
            track.failures, track.down, track.error = 0, False, ""
            return changed
        if track.failures == 0:
            track.first_failure = now
        track.failures += 1
        track.error = error
        if not track.down and track.failures >= self._failures_to_down:
            track.down = True
            return True
        return False

    def down(self) -> list[DependencyDown]:
        return [
            DependencyDown(name, track.first_failure, track.error)
            for name, track in self._tracks.items()
            if track.down
        ]

    @property
    def degraded(self) -> bool:
        return any(track.down for track in self._tracks.values())

    def since(self) -> float | None:
        """When the earliest outage still going on began (None: all answer)."""
        down = self.down()
        return min(d.since for d in down) if down else None


def health_report(
    *, healthy: bool, down: Sequence[DependencyDown], extra: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of a /healthz answer."""
    ok = healthy and not down
    status = "ok" if ok else "degraded" if down else "failing"
    body: dict[str, Any] = {
        "ok": ok,
        "status": status,
        "down": [d.to_json() for d in down],
        **(extra or {}),
    }
    return (200 if ok else 503), body


class DependencyWatch:
    """Probes the broker and/or the database every `interval` seconds (an owned task)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str | None,
        database_url: str | None,
        interval: float = 2.0,
        timeout: float = 3.0,
        kafka_options: dict[str, Any] | None = None,
        on_change: Callable[[DependencyHealth], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [
            name
            for name, target in ((BROKER, bootstrap_servers), (DATABASE, database_url))
            if target
        ]
        self.health = DependencyHealth(names)
        self._bootstrap = bootstrap_servers
        self._database_url = database_url
        self._interval = interval
        self._timeout = timeout
        self._kafka_options = kafka_options
        self.on_change = on_change or (lambda _health: None)
        self._clock = clock
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stragglers: set[asyncio.Task[Any]] = set()  # probes that did not answer in time

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        bootstrap_servers: str | None,
        database_url: str | None,
        on_change: Callable[[DependencyHealth], None] | None = None,
    ) -> DependencyWatch:
        """A watch with the settings' probe interval, timeout and Kafka options."""
        return cls(
            bootstrap_servers=bootstrap_servers,
            database_url=database_url,
            interval=settings.health_probe_interval,
            timeout=min(settings.connect_timeout, max(2.0, settings.health_probe_interval)),
            kafka_options=kafka_client_options(settings),
            on_change=on_change,
        )

    def down(self) -> list[DependencyDown]:
        return self.health.down()

    def start(self) -> None:
        """Probe in a task of its own until `close`."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="dependency-watch")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_connection()

    async def probe_once(self) -> bool:
        """Probe every dependency once; True when one went down or came back."""
        checks = []
        if self._bootstrap:
            checks.append(self._probe_broker(self._bootstrap))
        if self._database_url:
            checks.append(self._probe_database(self._database_url))
        results = await asyncio.gather(*checks)
        now = self._clock()
        changed = False
        for name, (ok, error) in results:
            if self.health.observe(name, ok=ok, now=now, error=error):
                changed = True
                if ok:
                    log.info("%s answers again", name)
                else:
                    log.error("%s does not answer: %s", name, error)
        if changed:
            self.on_change(self.health)
        return changed

    async def run(self) -> None:
        """Probe every interval until cancelled (for a caller that owns the task itself)."""
        try:
            while True:
                started = time.monotonic()
                try:
                    await self.probe_once()
                except Exception:  # a probe bug must not end the watch (and /healthz with it)
                    log.exception("dependency probe failed")
                await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            await self._drop_connection()

    async def _probe_broker(self, bootstrap: str) -> tuple[str, tuple[bool, str]]:
        status = await probe_kafka(
            bootstrap, timeout=self._timeout, kafka_options=self._kafka_options
        )
        return BROKER, (status.reachable, status.error or "")

    async def _probe_database(self, url: str) -> tuple[str, tuple[bool, str]]:
        # A frozen server never answers and psycopg's cancellation of the query waits for it
        # too: the probe runs in a task of its own, and one that does not finish in time is
        # left to end (cancelled) while this one answers "down" on time.
        conn, self._conn = self._conn, None
        task = asyncio.create_task(self._select_one(url, conn), name="database-probe")
        done, _pending = await asyncio.wait({task}, timeout=self._timeout)
        if not done:
            task.cancel()
            self._stragglers.add(task)
            task.add_done_callback(self._stragglers.discard)
            return DATABASE, (False, f"no answer within {self._timeout:g} s")
        try:
            self._conn = task.result()
        except (psycopg.Error, OSError) as exc:
            text = str(exc).strip()
            return DATABASE, (False, text.splitlines()[0] if text else type(exc).__name__)
        return DATABASE, (True, "")

    async def _select_one(
        self, url: str, conn: psycopg.AsyncConnection[Any] | None
    ) -> psycopg.AsyncConnection[Any]:
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(
                    url,
                    autocommit=True,
                    connect_timeout=max(int(self._timeout), 1),
                    application_name="ioc-health",
                )
            await conn.execute("SELECT 1")
        except BaseException:
            if conn is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await conn.close()
            raise
        return conn

    async def _drop_connection(self) -> None:
        stragglers = list(self._stragglers)
        for task in stragglers:
            task.cancel()
        if stragglers:
            await asyncio.wait(stragglers, timeout=2.0)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await conn.close()
