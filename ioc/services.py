"""`ioc up` keeps its embedded services alive and the broker's memory bounded.

`ServiceWatchdog` runs next to the component supervisor (`ioc/supervisor.py`):

- **A dead service** is noticed within `POLL` seconds. A dead broker is logged as an error
  saying what was lost (everything it held that its readers had not consumed yet) and
  replaced under a new epoch: intake is paused and the Kafka readers and simulators are
  stopped first, then the fresh broker gets the contract's topics and its epoch record, and
  only then do they start again (a client asking first would auto-create a missing topic
  with the broker's defaults). Restarting the readers, rather than letting them reconnect,
  is the robust choice: after a new epoch every offset they hold points into topics that no
  longer exist, the worker must read the new epoch at start, and a fresh start is the path
  every test exercises. A dead PostgreSQL is restarted on its data directory and address;
  the components reconnect by themselves (they retry their writes and checkpoints).
- **A hung service** (alive, but answering no probe for `IOC_SERVICE_HUNG_AFTER` s) is
  killed, then handled as dead.
- **Rolls.** The broker keeps every record in memory. When its RSS passes
  `IOC_BROKER_ROLL_AT` × `IOC_BROKER_MEMORY_LIMIT`, every `IOC_BROKER_ROLL_INTERVAL` s if
  set, or on `ioc broker roll`, it is replaced after a drain: pause intake (the ingest API
  answers 503 `paused`; the simulators stop, sending what they hold first), wait until the
  worker's checkpoints cover every partition it reads up to the high watermark, stop the
  worker (its last checkpoint), wait until the writer and the notifier have committed up to
  the high watermark of what they read, stop them and the gateway, replace the broker (new
  epoch, topics first), start them again, resume intake. Nothing acknowledged before the
  pause is lost. A drain that does not finish in `IOC_BROKER_DRAIN_TIMEOUT` s cancels the
  roll (intake resumes; another try a minute later), unless the broker is at the limit
  itself: then it rolls anyway and logs, per partition, the records nobody had read.
- **Status** goes to `services.json` in the state directory, for `ioc status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from foundation.contract.catalog import Catalog
from foundation.contract.topics import (
    ALERT_ACTIONS,
    ALERT_INPUT,
    ALERTS,
    DEADLETTER,
    KPI,
    KPI_PARTIALS,
    BrokerEpoch,
)
from foundation.errors import IocError
from foundation.health import BROKER, DATABASE, DependencyWatch
from foundation.intake import IntakePause, clear_pause, control_dir, read_ack, write_pause
from foundation.kafka_client import kafka_client_options
from foundation.settings import Settings
from ioc.drain import Positions
from ioc.runtime import Runtime
from ioc.service_policy import (
    CONSUMERS,
    INTAKE,
    CpuMeter,
    RollPolicy,
    TopicPartition,
    behind,
    consumers_of,
    describe_behind,
    hung,
    is_simulator,
)
from ioc.supervisor import Supervisor
from ioc.topics import TopicResult, contract_topics, create_topics, ensure_epoch

__all__ = [
    "ROLL_REQUEST",
    "ROLL_RESULT",
    "SERVICES_FILE",
    "RollReport",
    "ServiceWatchdog",
    "prepare_broker",
]

log = logging.getLogger("ioc.services")

SERVICES_FILE = "services.json"
ROLL_REQUEST = "roll-request.json"
ROLL_RESULT = "roll-result.json"
MiB = 2**20


async def prepare_broker(
    settings: Settings, catalog: Catalog, bootstrap_servers: str
) -> tuple[list[TopicResult], BrokerEpoch]:
    """Create the contract's topics, then read (or write) the broker's epoch record."""
    options = kafka_client_options(settings)
    results = await create_topics(
        bootstrap_servers,
        contract_topics(catalog),
        partitions=settings.partitions_per_topic,
        replication_factor=settings.topic_replication_factor,
        timeout=settings.connect_timeout,
        kafka_options=options,
    )
    epoch = await ensure_epoch(
        bootstrap_servers, timeout=settings.connect_timeout, kafka_options=options
    )
    return results, epoch


@dataclass
class ServiceState:
    """One embedded service as `ioc status` shows it."""

    state: str = "up"  # up, down, restarting, rolling
    pid: int | None = None
    since: float = 0.0
    restarts: int = 0
    error: str | None = None


@dataclass
class RollReport:
    """What one roll did and cost."""

    reason: str
    ok: bool
    started_at: float
    detail: str = ""
    intake_paused_s: float = 0.0  # from the pause to the resume
    drain_s: float = 0.0
    total_s: float = 0.0  # from the pause to every component started again
    rss_before: int | None = None
    rss_after: int | None = None
    epoch_before: str = ""
    epoch_after: str = ""
    unread: dict[str, int] = field(default_factory=dict)  # forced roll: records nobody read
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step


class _Phases:
    """Seconds spent in each step of a roll."""

    def __init__(self) -> None:
        self._start = self._last = time.monotonic()
        self.durations: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.durations[name] = round(now - self._last, 3)
        self._last = now

    def since_start(self) -> float:
        return time.monotonic() - self._start


class _RollAborted(Exception):
    """The drain did not finish: intake resumes on the old broker."""


class ServiceWatchdog:
    """Watches the embedded broker and PostgreSQL of a `Runtime` (see the module docstring)."""

    POLL = 0.5  # seconds between checks that the services run
    RSS_EVERY = 5.0  # seconds between memory samples of the broker
    HOLD_TIMEOUT = 6.0  # seconds a component gets to stop before a roll (then SIGKILL)
    DEATH_HOLD_TIMEOUT = 3.0  # the same after the broker died (little left to save)
    ACK_TIMEOUT = 5.0  # seconds the ingest API gets to confirm a pause
    RETRY_AFTER = 5  # what paused intake tells clients

    def __init__(
        self,
        *,
        runtime: Runtime,
        supervisor: Supervisor | None,
        settings: Settings,
        catalog: Catalog,
        epoch: BrokerEpoch,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runtime = runtime
        self._supervisor = supervisor
        self._settings = settings
        self._catalog = catalog
        self._state_dir = settings.state_dir.resolve()
        self._clock = clock
        self.epoch = epoch
        self._epoch_started = clock()  # checkpoints taken since belong to this epoch
        self._policy = RollPolicy(
            memory_limit=int(settings.broker_memory_limit),
            roll_at=settings.broker_roll_at,
            interval=settings.broker_roll_interval,
            cpu_limit=settings.broker_cpu_limit,
        )
        # The running broker's cores over the last minute, and its lowest minute after two
        # (the CPU rule's growth); starts over when its process changes (a roll, a restart).
        self._cpu = CpuMeter(
            window=self._policy.cpu_window,
            every=self.RSS_EVERY,
            settle=2 * self._policy.cpu_window,
        )
        self._last_roll = clock()
        self._last_abort: float | None = None
        self._last_rss_sample = 0.0
        self._rss: int | None = None
        self._recovering = False
        self.rolls: list[RollReport] = []
        self._services: dict[str, ServiceState] = {}
        endpoints = runtime.endpoints
        if runtime.broker is not None:
            self._services[BROKER] = ServiceState(pid=runtime.broker.pid, since=clock())
        if runtime.postgres is not None:
            self._services[DATABASE] = ServiceState(pid=runtime.postgres.pid, since=clock())
        self._watch = DependencyWatch.from_settings(
            settings,
            bootstrap_servers=endpoints.bootstrap_servers if endpoints else None,
            database_url=endpoints.database_url if endpoints else None,
        )

    def dependencies_down(self) -> bool:
        """For the supervisor: an exit now is the services' fault, not the component's."""
        return self._recovering or bool(self._watch.down())

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until stop is set."""
        self._watch.start()
        try:
            while not stop.is_set():
                try:
                    await self._tick(stop)
                except Exception:  # a bug here must not end the supervision of the services
                    log.exception("service watchdog step failed")
                self._write_status()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.POLL)
        finally:
            clear_pause(self._state_dir)  # never leave intake paused behind us
            await self._watch.close()

    async def _tick(self, stop: asyncio.Event) -> None:
        broker, postgres = self._runtime.broker, self._runtime.postgres
        if postgres is not None and postgres.exit_code() is not None:
            await self._postgres_died(postgres.pid, postgres.exit_code(), stop)
        if broker is not None and broker.exit_code() is not None:
            await self._broker_died(broker.pid, broker.exit_code(), stop)
        self._kill_if_hung()
        now = self._clock()
        if broker is not None and now - self._last_rss_sample >= self.RSS_EVERY:
            self._last_rss_sample = now
            self._rss = broker.rss()
            self._cpu.sample(broker.pid, now, broker.cpu_seconds())
            reason = self._policy.reason(
                rss=self._rss,
                now=now,
                last_roll=self._last_roll,
                last_abort=self._last_abort,
                cpu=self._cpu.rate,
                cpu_floor=self._cpu.floor,
            )
            if reason is not None:
                await self.roll(reason, stop, forced=self._policy.forced(self._rss))
        request = self._take_roll_request()
        if request is not None:
            report = await self.roll("requested (ioc broker roll)", stop, forced=False)
            self._write_roll_result(request, report)

    # ---- deaths ---------------------------------------------------------------------------

    async def _broker_died(self, pid: int | None, code: int | None, stop: asyncio.Event) -> None:
        died_at = self._clock()
        self._set(BROKER, "restarting", error=f"died ({_how(code)})")
        log.error(
            "the embedded broker (pid %s) died (%s). Lost: everything it held that its readers "
            "had not consumed yet: events it had acknowledged that the writer had not stored "
            "and the worker had not checkpointed, KPI points and alert transitions not yet "
            "stored or sent (the worker's windows go on from its last checkpoint). "
            "Restarting it under a new epoch; intake paused, Kafka components restarted.",
            pid,
            _how(code),
        )
        self._recovering = True
        try:
            await self._pause_intake("the embedded broker restarts", wait=2.0)
            held = await self._hold(consumers_of(self._children()), self.DEATH_HOLD_TIMEOUT)
            before = self.epoch.id
            await self._replace_broker(stop)
            self._resume(held)
        finally:
            self._recovering = False
        self._services[BROKER].restarts += 1
        log.warning(
            "the embedded broker is back after %.1f s: epoch %s → %s, components restarted: %s",
            self._clock() - died_at,
            before,
            self.epoch.id,
            ", ".join(held) or "none",
        )

    async def _postgres_died(self, pid: int | None, code: int | None, stop: asyncio.Event) -> None:
        postgres = self._runtime.postgres
        if postgres is None:
            return
        died_at = self._clock()
        self._set(DATABASE, "restarting", error=f"died ({_how(code)})")
        log.error(
            "the embedded PostgreSQL (pid %s) died (%s): restarting it on its data directory "
            "%s. Committed data is kept (crash recovery replays the write-ahead log); "
            "transactions in flight were rolled back and are retried by their writers; the "
            "components reconnect by themselves.",
            pid,
            _how(code),
            postgres.data_dir,
        )
        self._recovering = True
        try:
            await self._retry(self._runtime.restart_postgres, "the embedded PostgreSQL", stop)
        finally:
            self._recovering = False
        self._services[DATABASE].restarts += 1
        self._set(DATABASE, "up", pid=postgres.pid)
        log.warning(
            "the embedded PostgreSQL is back after %.1f s (pid %s)",
            self._clock() - died_at,
            postgres.pid,
        )

    def _kill_if_hung(self) -> None:
        if self._recovering:
            return
        services = {BROKER: self._runtime.broker, DATABASE: self._runtime.postgres}
        now = self._clock()
        for down in hung(self._watch.down(), now=now, after=self._settings.service_hung_after):
            service = services.get(down.dependency)
            if service is None or service.pid is None:
                continue  # an external service: not ours to restart
            log.error(
                "the embedded %s (pid %d) is alive but has answered no probe for %.0f s "
                "(%s): killing it to restart it",
                down.dependency,
                service.pid,
                now - down.since,
                down.error,
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(service.pid, signal.SIGKILL)

    # ---- rolls ----------------------------------------------------------------------------

    async def roll(self, reason: str, stop: asyncio.Event, *, forced: bool) -> RollReport:
        """Drain, replace the broker under a new epoch, resume (see the module docstring)."""
        broker, endpoints = self._runtime.broker, self._runtime.endpoints
        report = RollReport(reason=reason, ok=False, started_at=self._clock())
        if broker is None or endpoints is None:
            report.detail = "no embedded broker to roll"
            return report
        report.rss_before, report.epoch_before = broker.rss(), self.epoch.id
        log.info("rolling the embedded broker (%s): pausing intake", reason)
        self._set(BROKER, "rolling")
        names = self._children()
        held: list[str] = []
        phases = _Phases()
        try:
            # Intake stops (the API confirms with its producer closed; the simulators send
            # what they hold and exit). The gateway serves the screens until the broker is
            # replaced: a roll that is cancelled must not have cost the wall its connection.
            first = [n for n in names if is_simulator(n)]
            _paused, stopped = await asyncio.gather(
                self._pause_intake(f"the embedded broker rolls ({reason})", wait=self.ACK_TIMEOUT),
                self._hold(first, self.HOLD_TIMEOUT),
            )
            held += stopped
            phases.mark("pause")
            deadline = time.monotonic() + self._settings.broker_drain_timeout
            unread: dict[str, int] = {}
            try:
                async with Positions(
                    bootstrap_servers=endpoints.bootstrap_servers,
                    database_url=endpoints.database_url,
                    # A large broker answers slowly (it lists its stored batches per fetch):
                    # reading to the high watermarks may take as long as the drain may.
                    timeout=max(
                        self._settings.connect_timeout, self._settings.broker_drain_timeout
                    ),
                    kafka_options=kafka_client_options(self._settings),
                ) as positions:
                    if "worker" in names:
                        unread = await self._drain_worker(positions, deadline, forced=forced)
                        phases.mark("drain_worker")
                        held += await self._hold(["worker"], self.HOLD_TIMEOUT)
                        phases.mark("stop_worker")
                        await self._alert_input_unread(positions)
                    unread |= await self._drain_stores(positions, names, deadline, forced=forced)
                    phases.mark("drain_stores")
            except IocError as exc:
                if not forced:
                    raise
                # At the memory limit a broker too slow to tell its high watermarks is rolled
                # anyway: what nobody had read is lost, and said so.
                log.error("forced broker roll: the drain could not be measured (%s)", exc)
                unread = {"unmeasured": -1}
            report.drain_s = phases.since_start()
            report.unread = unread
            held += await self._hold([n for n in CONSUMERS if n in names], self.HOLD_TIMEOUT)
            phases.mark("stop_readers")
            await self._replace_broker(stop)
            phases.mark("new_broker")
        except Exception as exc:  # _RollAborted, IocError — or a bug: never stay paused
            if not isinstance(exc, _RollAborted | IocError):
                log.exception("broker roll failed")
            self._last_abort = self._clock()
            report.detail = str(exc)
            self._resume(held)
            report.intake_paused_s = phases.since_start()
            self._set(BROKER, "up")
            log.warning(
                "broker roll cancelled after %.1f s (%s); intake resumed, next try in %.0f s",
                report.intake_paused_s,
                exc,
                self._policy.retry_after,
            )
            self._remember(report)
            return report
        self._resume(held)
        report.intake_paused_s = phases.since_start()
        report.phases = phases.durations
        report.ok = True
        report.epoch_after = self.epoch.id
        report.rss_after = broker.rss()
        self._last_roll, self._last_abort = self._clock(), None
        if report.unread:
            log.error(
                "forced broker roll: records nobody had read are lost: %s",
                ", ".join(f"{k} {v}" for k, v in report.unread.items()),
            )
        log.info(
            "broker rolled (%s): intake paused %.1f s (%s), memory %s → %s MiB, epoch %s → %s",
            reason,
            report.intake_paused_s,
            ", ".join(f"{k} {v:.1f} s" for k, v in phases.durations.items()),
            _mib(report.rss_before),
            _mib(report.rss_after),
            report.epoch_before,
            report.epoch_after,
        )
        self._remember(report)
        return report

    async def _drain_worker(
        self, positions: Positions, deadline: float, *, forced: bool
    ) -> dict[str, int]:
        """Until the worker's checkpoints cover the high watermark of its event and partials
        partitions (and its group the officers' actions).

        Intake is paused, so the event topics stand still, and the partials topic once stage
        1 caught up: done when two rounds in a row find nothing behind and those topics
        unchanged. The alert stage's input is left out: a tick goes in every second just
        before the checkpoint, so it is never quite caught up; the worker's last checkpoint
        at its stop covers what it read, and `_alert_input_unread` counts the rest.
        """
        group = self._settings.worker_group
        still = [*self._catalog.sector_topics, KPI_PARTIALS]
        previous: dict[TopicPartition, int] | None = None
        while True:
            start_at = await positions.checkpoints(group, since=self._epoch_started)
            high = await positions.high_watermarks([*still, ALERT_ACTIONS], start_at=start_at)
            done = await positions.checkpoints(group, since=self._epoch_started)
            done |= await positions.committed(group, [ALERT_ACTIONS])  # Faust commits those
            lag = behind(high, done)
            frozen = {tp: n for tp, n in high.items() if tp[0] in still}
            if not lag and frozen == previous:
                return {}
            previous = frozen if not lag else None
            if time.monotonic() > deadline:
                return self._drain_timed_out("the worker", lag, forced=forced)
            await asyncio.sleep(0.3)

    async def _alert_input_unread(self, positions: Positions) -> None:
        """After the worker stopped: alert-stage inputs its last checkpoint does not cover."""
        group = self._settings.worker_group
        done = await positions.checkpoints(group, since=self._epoch_started)
        high = await positions.high_watermarks([ALERT_INPUT], start_at=done)
        unread = sum(behind(high, done).values())
        log.info(
            "alert stage: %d input records (ticks, KPI points) left unread at the roll", unread
        )

    async def _drain_stores(
        self, positions: Positions, names: list[str], deadline: float, *, forced: bool
    ) -> dict[str, int]:
        """Until the writer and the notifier committed up to the high watermark (the worker is
        stopped, so nothing grows any more)."""
        readers: list[tuple[str, list[str]]] = []
        if "writer" in names:
            topics = [*self._catalog.sector_topics, KPI, ALERTS, DEADLETTER]
            readers.append((self._settings.writer_group, topics))
        if "notifier" in names:
            readers.append((self._settings.notifier_group, [ALERTS]))
        if not readers:
            return {}
        topics_all = sorted({t for _group, topics in readers for t in topics})
        while True:
            committed = {group: await positions.committed(group, t) for group, t in readers}
            start = committed.get(self._settings.writer_group, {})
            high = await positions.high_watermarks(topics_all, start_at=start)
            lag: dict[TopicPartition, int] = {}
            for group, topics in readers:
                done = await positions.committed(group, topics)
                mine = {tp: hw for tp, hw in high.items() if tp[0] in topics}
                lag |= {(f"{group}:{t}", p): n for (t, p), n in behind(mine, done).items()}
            if not lag:
                return {}
            if time.monotonic() > deadline:
                return self._drain_timed_out("the writer/notifier", lag, forced=forced)
            await asyncio.sleep(0.3)

    def _drain_timed_out(
        self, who: str, lag: dict[TopicPartition, int], *, forced: bool
    ) -> dict[str, int]:
        text = f"{who} did not catch up within {self._settings.broker_drain_timeout:g} s"
        if not forced:
            raise _RollAborted(f"{text}: {describe_behind(lag)}")
        log.error("%s (rolling anyway: the broker is at its memory limit): %s", text, lag)
        return {f"{topic}[{partition}]": n for (topic, partition), n in lag.items()}

    async def _replace_broker(self, stop: asyncio.Event) -> None:
        """A fresh broker on the same address with the contract's topics and a new epoch."""
        endpoints = self._runtime.endpoints
        if endpoints is None:
            return
        self._epoch_started = self._clock()

        async def replace() -> None:
            await self._runtime.restart_broker()
            results, epoch = await prepare_broker(
                self._settings, self._catalog, endpoints.bootstrap_servers
            )
            mismatched = [r.name for r in results if r.mismatch]
            if mismatched:  # a client outside `ioc up` asked for a topic before we made it
                log.error("topics created with another partition count: %s", mismatched)
            self.epoch = epoch

        await self._retry(replace, "the embedded broker", stop)
        broker = self._runtime.broker
        self._set(BROKER, "up", pid=broker.pid if broker else None)

    async def _retry(self, action: Callable[[], Any], what: str, stop: asyncio.Event) -> None:
        delay = 1.0
        while True:
            try:
                await action()
                return
            except IocError as exc:
                if stop.is_set():
                    raise
                log.error("cannot start %s again: %s; retrying in %.0f s", what, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)

    # ---- intake and components --------------------------------------------------------------

    def _children(self) -> list[str]:
        if self._supervisor is None:
            return []
        return [c.spec.name for c in self._supervisor.children if c.state != "stopped"]

    async def _hold(self, names: list[str], timeout: float) -> list[str]:
        if self._supervisor is None or not names:
            return []
        return await self._supervisor.hold(names, timeout=timeout)

    async def _pause_intake(self, reason: str, *, wait: float) -> None:
        """Write the pause; wait for the ingest API to confirm it (closed producer)."""
        pause = IntakePause(
            token=uuid.uuid4().hex,
            reason=reason,
            since=self._clock(),
            retry_after=self.RETRY_AFTER,
        )
        write_pause(self._state_dir, pause)
        pid = self._supervisor.running_pid(INTAKE) if self._supervisor else None
        if pid is None:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            ack = read_ack(self._state_dir, pid)
            if ack is not None and ack.token == pause.token:
                return
            await asyncio.sleep(0.05)
        log.warning("the ingest API did not confirm the pause within %.0f s; stopping it", wait)
        await self._hold([INTAKE], self.DEATH_HOLD_TIMEOUT)

    def _resume(self, held: list[str]) -> None:
        clear_pause(self._state_dir)
        if self._supervisor is not None:
            self._supervisor.release([*held, INTAKE])

    # ---- status -----------------------------------------------------------------------------

    def _set(
        self, name: str, state: str, *, pid: int | None = None, error: str | None = None
    ) -> None:
        service = self._services.get(name)
        if service is None:
            return
        service.state, service.since, service.error = state, self._clock(), error
        if pid is not None:
            service.pid = pid

    def _remember(self, report: RollReport) -> None:
        self.rolls = [*self.rolls[-9:], report]

    def _write_status(self) -> None:
        down = {d.dependency: d for d in self._watch.down()}
        services: dict[str, Any] = {}
        for name, service in self._services.items():
            row = asdict(service)
            if service.state == "up" and name in down:
                gone = down[name]
                row |= {"state": "down", "since": gone.since, "error": gone.error}
            services[name] = row
        if BROKER in services:
            services[BROKER] |= {
                "epoch": self.epoch.id,
                "rss_bytes": self._rss,
                "memory_limit": int(self._settings.broker_memory_limit),
                "roll_at": self._settings.broker_roll_at,
                "cpu_cores": self._cpu.rate,
                "cpu_limit": self._settings.broker_cpu_limit,
                "rolls": sum(1 for r in self.rolls if r.ok),
                "last_roll": asdict(self.rolls[-1]) if self.rolls else None,
            }
        payload = {"owner_pid": os.getpid(), "at": self._clock(), "services": services}
        path = self._state_dir / SERVICES_FILE
        tmp = path.with_name(f".{SERVICES_FILE}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(payload))
            tmp.replace(path)

    def _take_roll_request(self) -> dict[str, Any] | None:
        path = control_dir(self._state_dir) / ROLL_REQUEST
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        path.unlink(missing_ok=True)
        return raw if isinstance(raw, dict) else {}

    def _write_roll_result(self, request: dict[str, Any], report: RollReport) -> None:
        path = control_dir(self._state_dir) / ROLL_RESULT
        tmp = path.with_name(f".{ROLL_RESULT}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({"id": request.get("id"), **asdict(report)}))
            tmp.replace(path)


def _how(code: int | None) -> str:
    if code is None:
        return "unknown exit"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / MiB:.0f}"
