"""Soak the platform: `ioc up` at a rate for a while; memory of every process; kill recovery.

    python bench/soak.py --rate 2000 --minutes 10                 # the broker stays bounded?
    python bench/soak.py --rate 50 --minutes 60                   # the demo left on a wall
    python bench/soak.py --rate 200 --minutes 4 --kill worker@90 --kill writer@150
    python bench/soak.py --rate 500 --minutes 5 --memory-limit 128MiB   # rolls, and their cost

Runs `ioc up --rate R` in a temp state directory on free ports and samples, every
`--sample` seconds, the RSS of the broker, of PostgreSQL (PSS summed over the server and its
sessions, shared memory counted once; `pg_anon` and `pg_shmem` are its anonymous and its shared
memory: the sessions' own, and the shared buffers with the server's other shared structures),
of each component and of the simulators (summed).
After `--warmup` minutes it prints, per process, the growth per minute (least squares) and
the change from the first to the last fifth of the samples; the goal is a broker bounded by
IOC_BROKER_MEMORY_LIMIT and every other process flat within ±10 %.

It also posts `--probe-rate` events per second through the ingest API with an API key, as a
department system would (retrying a 503 after its Retry-After), and at the end checks that
every acknowledged one was stored: lost must be 0, rolls included. `--kill NAME@SECONDS`
SIGKILLs a component (`:TERM` for a clean stop) and reports how long until it was back and
events flowed again (a KPI point emitted by the new worker / an event stored by the new
writer). The broker's CPU is printed for each minute (it grows with what the broker holds;
`ioc up` rolls it at IOC_BROKER_CPU_LIMIT). `--traffic` counts
the records and bytes per topic (what the broker must hold). The rolls `ioc up` made are
listed with their pause. The machine's load average is printed: figures from a busy
machine are not comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import psycopg

from bench.common import machine
from ioc.embedded import find_free_port

MiB = 2**20
COMPONENT_PORTS = {
    "worker": "IOC_WORKER_METRICS_PORT",
    "writer": "IOC_WRITER_METRICS_PORT",
    "notifier": "IOC_NOTIFIER_METRICS_PORT",
    "gateway": "IOC_GATEWAY_PORT",
    "ingest-api": "IOC_INGEST_PORT",
}
PROBE_SOURCE, PROBE_TYPE = "his-bvdk-tinh", "bed_occupancy"
KEY_PATTERN = re.compile(r"iock_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def _pss_tree(pid: int | None) -> tuple[int, int, int] | None:
    """(PSS, its anonymous part, its shared-memory part) of a process and its children, from
    Linux's smaps_rollup: shared memory counted once across them, and what grows in
    PostgreSQL's sessions told from its shared buffers."""
    if pid is None:
        return None
    fields = {"Pss": 0, "Pss_Anon": 0, "Pss_Shmem": 0}
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(OSError):
                rollup = Path(f"/proc/{process.pid}/smaps_rollup").read_text()
                for line in rollup.splitlines():
                    field, _, value = line.partition(":")
                    if field in fields:
                        fields[field] += int(value.split()[0]) * 1024
    except psutil.Error:
        return None
    return fields["Pss"], fields["Pss_Anon"], fields["Pss_Shmem"]


@dataclass
class Kill:
    name: str
    at: float  # seconds after ready
    signal: str = "KILL"  # or TERM: a clean stop (the member leaves its group)
    killed_at: float = 0.0
    back_after: float | None = None
    flowing_after: float | None = None
    old_pid: int | None = None


@dataclass
class Probe:
    acked: list[str] = field(default_factory=list)
    paused: int = 0
    other_refusals: int = 0


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state_dir = Path(tempfile.mkdtemp(prefix="ioc-soak-"))
        self.ports = {name: find_free_port() for name in COMPONENT_PORTS}
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("IOC_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
        }
        self.env.update(
            {
                "IOC_STATE_DIR": str(self.state_dir),
                **{setting: str(self.ports[n]) for n, setting in COMPONENT_PORTS.items()},
                "IOC_BROKER_MEMORY_LIMIT": args.memory_limit,
                "IOC_BROKER_ROLL_INTERVAL": str(args.roll_interval),
                **dict(setting.split("=", 1) for setting in args.env),
            }
        )
        self.samples: list[dict[str, Any]] = []
        self.loads: list[float] = []
        self.kills = [_kill(spec) for spec in args.kill]
        self.probe = Probe()
        self.traffic: dict[str, list[tuple[float, int, int]]] = {}
        self.ready_at = 0.0
        self.up: subprocess.Popen[bytes] | None = None

    # ---- the platform ------------------------------------------------------------------------

    def start(self) -> None:
        log = (self.state_dir / "up.out").open("wb")
        self.up = subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "up", "--rate", f"{self.args.rate:g}"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while b"ready:" not in (self.state_dir / "up.out").read_bytes():
            if self.up.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"ioc up did not start:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        self.ready_at = time.time()

    def output(self) -> str:
        return (self.state_dir / "up.out").read_text(errors="replace")

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "ioc.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return result.stdout + result.stderr

    def stop(self) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.up.wait(60)
            if self.up.poll() is None:
                self.up.kill()
        if not self.args.keep:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def children(self) -> dict[str, dict[str, Any]]:
        raw = _read_json(self.state_dir / "children.json")
        return {row["name"]: row for row in raw.get("children", [])}

    def services(self) -> dict[str, Any]:
        return dict(_read_json(self.state_dir / "services.json").get("services", {}))

    def database_url(self) -> str:
        return str(_read_json(self.state_dir / "runtime.json").get("database_url", ""))

    # ---- sampling ---------------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        services, children = self.services(), self.children()
        row: dict[str, Any] = {"t": time.time() - self.ready_at}
        row["broker"] = _rss(services.get("broker", {}).get("pid"))
        postgres = _pss_tree(services.get("database", {}).get("pid"))
        row["postgres"], row["pg_anon"], row["pg_shmem"] = postgres or (None, None, None)
        simulators = 0
        for name, child in children.items():
            rss = _rss(child.get("pid"))
            if name.startswith("sim"):
                simulators += rss or 0
            else:
                row[name] = rss
        row["simulators"] = simulators or None
        row["broker_pid"] = services.get("broker", {}).get("pid")
        row["broker_cpu_s"] = _cpu_seconds(row["broker_pid"])
        return row

    async def sampler(self, until: float) -> None:
        while time.time() < until:
            row = await asyncio.to_thread(self.sample)
            self.samples.append(row)
            self.loads.append(os.getloadavg()[0])
            if not self.args.quiet:
                text = " ".join(
                    f"{k} {v / MiB:.0f}"
                    for k, v in row.items()
                    if k not in ("t", "broker_pid", "broker_cpu_s") and v is not None
                )
                print(f"t={row['t']:6.0f}s {text} (MiB) load {self.loads[-1]:.1f}", flush=True)
            await asyncio.sleep(self.args.sample)

    # ---- kills -----------------------------------------------------------------------------

    async def killer(self, kill: Kill) -> None:
        await asyncio.sleep(max(0.0, self.ready_at + kill.at - time.time()))
        child = self.children().get(kill.name, {})
        kill.old_pid = child.get("pid")
        if kill.old_pid is None:
            print(f"cannot kill {kill.name}: not running", flush=True)
            return
        kill.killed_at = time.time()
        os.kill(kill.old_pid, signal.Signals[f"SIG{kill.signal}"])
        deadline = kill.killed_at + 300
        replaced_at: float | None = None  # output after this is the new process's (a SIGTERMed
        # one may still send while it stops)
        while time.time() < deadline and (kill.back_after is None or kill.flowing_after is None):
            now = time.time()
            row = self.children().get(kill.name, {})
            if replaced_at is None and row.get("pid") not in (None, kill.old_pid):
                replaced_at = now
            if kill.back_after is None and replaced_at and row.get("state") == "running":
                kill.back_after = now - kill.killed_at
            if (
                kill.flowing_after is None
                and replaced_at is not None
                and await asyncio.to_thread(self._flowing, kill.name, replaced_at)
            ):
                kill.flowing_after = time.time() - kill.killed_at
            await asyncio.sleep(0.25)

    def _flowing(self, name: str, after: float) -> bool:
        """Did the new process produce: a KPI point emitted / an event stored since `after`?"""
        since = datetime.fromtimestamp(after, UTC)
        if name == "worker":
            query = "SELECT 1 FROM kpi_points WHERE emitted_at > %s LIMIT 1"
            params: tuple[Any, ...] = (since,)
        elif name == "writer":
            # Stored by the new writer: published after it started (occurred_at bounds the scan).
            query = (
                "SELECT 1 FROM events WHERE occurred_at > %s - interval '10 minutes'"
                " AND published_at > %s LIMIT 1"
            )
            params = (since, since)
        else:
            return True
        try:
            with psycopg.connect(self.database_url(), connect_timeout=3) as conn:
                return conn.execute(query, params).fetchone() is not None
        except psycopg.Error:
            return False

    # ---- probe events through the ingest API -------------------------------------------------

    async def prober(self, until: float) -> None:
        if self.args.probe_rate <= 0:
            return
        found = KEY_PATTERN.search(
            await asyncio.to_thread(self.cli, "keys", "create", PROBE_SOURCE)
        )
        if found is None:
            print("cannot create an API key: no probe events", flush=True)
            return
        key = found.group(0)
        url = f"http://127.0.0.1:{self.ports['ingest-api']}/v1/events"
        n = 0
        interval = 1.0 / self.args.probe_rate
        while time.time() < until:
            event_id = f"soak-{n}"
            event = {
                "event_id": event_id,
                "source": PROBE_SOURCE,
                "sector": "health",
                "type": PROBE_TYPE,
                "occurred_at": datetime.now(UTC).isoformat(),
                "value": 50.0 + n % 40,
                "unit": "%",
                "district": "dong-xoai",
            }
            status, reason, retry_after = await asyncio.to_thread(_post, url, key, event)
            if status == 202:
                self.probe.acked.append(event_id)
                n += 1
                await asyncio.sleep(interval)
            elif status == 503 and reason == "paused":
                self.probe.paused += 1
                await asyncio.sleep(retry_after)
            else:
                self.probe.other_refusals += 1
                await asyncio.sleep(max(interval, 0.5))

    def probe_lost(self, timeout: float = 180) -> int:
        wanted = set(self.probe.acked)
        deadline = time.monotonic() + timeout
        missing = wanted
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.database_url(), connect_timeout=3) as conn:
                    rows = conn.execute(
                        "SELECT event_id FROM events WHERE source = %s AND event_id = ANY(%s)",
                        (PROBE_SOURCE, list(wanted)),
                    ).fetchall()
                missing = wanted - {r[0] for r in rows}
            except psycopg.Error:
                pass
            if not missing:
                return 0
            time.sleep(1.0)
        return len(missing)

    # ---- traffic per topic ----------------------------------------------------------------

    async def tail(self, until: float) -> None:
        """Count records and bytes per topic, from each broker's start (reconnect on a roll)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from foundation.contract.catalog import load_catalog
        from ioc.topics import contract_topics

        topics = contract_topics(load_catalog())
        bootstrap = str(_read_json(self.state_dir / "runtime.json").get("bootstrap_servers"))
        totals: dict[str, list[int]] = {t: [0, 0] for t in topics}
        while time.time() < until:
            pid = self.services().get("broker", {}).get("pid")
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            try:
                await consumer.start()
                assignment = [
                    TopicPartition(t, p)
                    for t in topics
                    for p in sorted(consumer.partitions_for_topic(t) or [])
                ]
                consumer.assign(assignment)
                await consumer.seek_to_beginning(*assignment)
                base = {t: list(v) for t, v in totals.items()}  # the previous brokers' counts
                counted: dict[str, list[int]] = {t: [0, 0] for t in topics}
                while time.time() < until and self.services().get("broker", {}).get("pid") == pid:
                    batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
                    for tp, records in batch.items():
                        for r in records:
                            counted[tp.topic][0] += 1
                            counted[tp.topic][1] += len(r.value or b"") + len(r.key or b"")
                    for t in topics:
                        totals[t] = [base[t][0] + counted[t][0], base[t][1] + counted[t][1]]
                        self.traffic.setdefault(t, []).append(
                            (time.time() - self.ready_at, totals[t][0], totals[t][1])
                        )
            except Exception as exc:  # the broker rolled or restarted under us: start again
                print(f"tail: {type(exc).__name__}: {exc}; reconnecting", flush=True)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    # ---- the report ----------------------------------------------------------------------------

    def report(self, lost: int) -> dict[str, Any]:
        warm = self.args.warmup * 60
        after = [s for s in self.samples if s["t"] >= warm]
        names = (
            [k for k in self.samples[0] if k not in ("t", "broker_pid", "broker_cpu_s")]
            if self.samples
            else []
        )
        growth: dict[str, dict[str, float | None]] = {}
        for name in names:
            points = [(s["t"], s[name]) for s in after if s.get(name) is not None]
            growth[name] = _growth(points)
        limit = _bytes(self.args.memory_limit)
        broker_max = max((s["broker"] or 0 for s in after), default=0)
        rolls = [line for line in self.output().splitlines() if "broker rolled (" in line]
        cancelled = [line for line in self.output().splitlines() if "broker roll cancelled" in line]
        return {
            "machine": machine(),
            "rate": self.args.rate,
            "minutes": self.args.minutes,
            "warmup_minutes": self.args.warmup,
            "load_average": {
                "mean": sum(self.loads) / len(self.loads) if self.loads else None,
                "max": max(self.loads, default=None),
            },
            "growth": growth,
            "broker_max_mib": broker_max / MiB,
            "broker_limit_mib": limit / MiB if limit else None,
            "broker_bounded": bool(limit) and broker_max <= limit,
            "rolls": [_roll_summary(line) for line in rolls],
            "rolls_cancelled": len(cancelled),
            "kills": [
                {
                    "name": k.name,
                    "signal": k.signal,
                    "at_s": k.at,
                    "back_after_s": k.back_after,
                    "flowing_after_s": k.flowing_after,
                }
                for k in self.kills
            ],
            "probe": {
                "acked": len(self.probe.acked),
                "lost": lost,
                "paused_answers": self.probe.paused,
                "other_refusals": self.probe.other_refusals,
            },
            "traffic_per_minute": self._traffic_rates(warm),
            "broker_cpu_by_minute": self._broker_cpu_by_minute(),
        }

    def _broker_cpu_by_minute(self) -> list[float | None]:
        """The broker's CPU in each whole minute since ready, in % of a core (None: it rolled)."""
        by_minute: list[float | None] = []
        rows = [s for s in self.samples if s.get("broker_cpu_s") is not None]
        for minute in range(int(self.args.minutes)):
            inside = [s for s in rows if minute * 60 <= s["t"] <= (minute + 1) * 60 + 1e-9]
            if len(inside) < 2 or inside[0]["broker_pid"] != inside[-1]["broker_pid"]:
                by_minute.append(None)
                continue
            first, last = inside[0], inside[-1]
            by_minute.append(
                100 * (last["broker_cpu_s"] - first["broker_cpu_s"]) / (last["t"] - first["t"])
            )
        return by_minute

    def _traffic_rates(self, warm: float) -> dict[str, dict[str, float]]:
        rates: dict[str, dict[str, float]] = {}
        for topic, series in self.traffic.items():
            kept = [p for p in series if p[0] >= warm]
            if len(kept) < 2 or kept[-1][0] <= kept[0][0]:
                continue
            minutes = (kept[-1][0] - kept[0][0]) / 60
            rates[topic] = {
                "records": (kept[-1][1] - kept[0][1]) / minutes,
                "kib": (kept[-1][2] - kept[0][2]) / 1024 / minutes,
            }
        return rates


def _kill(spec: str) -> Kill:
    """`worker@90` (SIGKILL at 90 s) or `writer@150:TERM`."""
    name, _, rest = spec.partition("@")
    at, _, sig = rest.partition(":")
    return Kill(name, float(at), sig.upper() or "KILL")


def _post(url: str, key: str, event: dict[str, Any]) -> tuple[int, str, float]:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url,
        data=json.dumps(event).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 (loopback)
            return resp.status, "", 0.0
    except urllib.error.HTTPError as exc:
        try:
            reason = str(json.loads(exc.read()).get("reason", ""))
        except (ValueError, AttributeError):
            reason = ""
        retry = float(exc.headers.get("Retry-After") or 1)
        return exc.code, reason, retry
    except OSError:
        return 0, "unreachable", 1.0


def _growth(points: list[tuple[float, int]]) -> dict[str, float | None]:
    """Least-squares MiB per minute, and the change from the first to the last fifth (%)."""
    if len(points) < 3:
        return {"mib_per_min": None, "change_pct": None, "last_mib": None}
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0
    fifth = max(1, n // 5)
    first = sum(v for _, v in points[:fifth]) / fifth
    last = sum(v for _, v in points[-fifth:]) / fifth
    return {
        "mib_per_min": slope * 60 / MiB,
        "change_pct": (last - first) / first * 100 if first else None,
        "last_mib": points[-1][1] / MiB,
    }


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _bytes(text: str) -> int:
    from pydantic import ByteSize, TypeAdapter

    return int(TypeAdapter(ByteSize).validate_python(text))


def _roll_summary(line: str) -> dict[str, Any]:
    paused = re.search(r"intake paused ([0-9.]+) s", line)
    memory = re.search(r"memory (\S+) → (\S+) MiB", line)
    return {
        "at": line[:19],
        "intake_paused_s": float(paused.group(1)) if paused else None,
        "memory_mib": [memory.group(1), memory.group(2)] if memory else None,
    }


def _print(report: dict[str, Any]) -> None:
    print()
    print(
        f"soak: {report['rate']:g} ev/s for {report['minutes']:g} min "
        f"(warm-up {report['warmup_minutes']:g} min) on {report['machine']}; load average "
        f"mean {report['load_average']['mean'] or 0:.1f}, "
        f"max {report['load_average']['max'] or 0:.1f}"
    )
    print(f"{'process':<12} {'MiB/min':>9} {'change':>8} {'last MiB':>9}")
    for name, g in report["growth"].items():
        slope = "-" if g["mib_per_min"] is None else f"{g['mib_per_min']:+.2f}"
        change = "-" if g["change_pct"] is None else f"{g['change_pct']:+.1f} %"
        last = "-" if g["last_mib"] is None else f"{g['last_mib']:.0f}"
        print(f"{name:<12} {slope:>9} {change:>8} {last:>9}")
    limit = report["broker_limit_mib"]
    print(
        f"broker: max {report['broker_max_mib']:.0f} MiB after warm-up"
        + (f", limit {limit:.0f} MiB: {'bounded' if report['broker_bounded'] else 'EXCEEDED'}"
           if limit else ", no limit")
    )  # fmt: skip
    for roll in report["rolls"]:
        print(f"roll at {roll['at']}: intake paused {roll['intake_paused_s']} s, "
              f"memory {roll['memory_mib']} MiB")  # fmt: skip
    if report["rolls_cancelled"]:
        print(f"rolls cancelled: {report['rolls_cancelled']}")
    for kill in report["kills"]:
        print(
            f"SIG{kill['signal']} {kill['name']} at {kill['at_s']:g} s: back after "
            f"{_secs(kill['back_after_s'])}, flowing again after {_secs(kill['flowing_after_s'])}"
        )
    probe = report["probe"]
    print(
        f"probe events: {probe['acked']} acknowledged, {probe['lost']} lost, "
        f"{probe['paused_answers']} answers 503 paused, {probe['other_refusals']} other refusals"
    )
    cpu = report["broker_cpu_by_minute"]
    by_minute = " ".join("-" if c is None else f"{c:.0f}" for c in cpu)
    print(f"broker CPU by minute (% of a core; -: it rolled): {by_minute}")
    for topic, rate in sorted(report["traffic_per_minute"].items()):
        print(f"  {topic:<28} {rate['records']:>9,.0f} records/min {rate['kib']:>9,.0f} KiB/min")


async def _run(soak: Soak) -> None:
    until = soak.ready_at + soak.args.minutes * 60
    tasks = [
        asyncio.create_task(soak.sampler(until)),
        asyncio.create_task(soak.prober(until)),
        *(asyncio.create_task(soak.killer(k)) for k in soak.kills),
    ]
    if soak.args.traffic:
        tasks.append(asyncio.create_task(soak.tail(until)))
    await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="simulated events per second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of growth")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--memory-limit", default="1GiB", help="IOC_BROKER_MEMORY_LIMIT")
    parser.add_argument("--roll-interval", type=float, default=0.0, help="IOC_BROKER_ROLL_INTERVAL")
    parser.add_argument(
        "--kill", action="append", default=[], metavar="NAME@SECONDS[:TERM]", help="SIGKILL"
    )
    parser.add_argument("--probe-rate", type=float, default=2.0, help="ingest API events/s")
    parser.add_argument("--traffic", action="store_true", help="count records per topic")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="a setting for `ioc up` (repeatable); the caller's IOC_* variables are not passed",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    parser.add_argument("--quiet", action="store_true", help="no line per sample")
    args = parser.parse_args()
    if any("=" not in setting for setting in args.env):
        parser.error("--env takes NAME=VALUE")
    soak = Soak(args)
    # SIGTERM ends the run as Ctrl-C does, through `finally`: `ioc up` must not outlive it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = " ".join(args.env) or "defaults"
    print(f"soak: state {soak.state_dir}; settings {settings}; load average {os.getloadavg()}",
          flush=True)  # fmt: skip
    try:
        soak.start()
        print(f"ready after start; sampling for {args.minutes:g} min", flush=True)
        asyncio.run(_run(soak))
        lost = soak.probe_lost()
        report = soak.report(lost)
        _print(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    finally:
        soak.stop()


if __name__ == "__main__":
    main()
