"""WebSocket gateway fan-out against raw `websockets` broadcast, measured in the same run.

    python bench/gateway.py [--clients 500] [--messages 1000] [--points 5000] [--seconds 20]
                            [--rate 500] [--stalled 10] [--rounds 2]

A delivery is one KPI point (one item of an `update` message) received by one client. Starts
its own embedded broker; 500 WebSocket clients run in two client processes (so their parsing
does not share the server's core), the servers run in this process:
  (a) raw: a bare `websockets` server broadcasts `--messages` update frames of one KPI point
      each (the gateway's frame format) with `websockets.broadcast`, as fast as the clients
      take them (it waits while any socket's write buffer is over 64 KiB);
  (b) gateway: `run_gateway` follows a fresh KPI topic; a producer process sends `--points`
      KPI points as fast as it can; every client is subscribed to `kpi:health`. The gateway
      puts the points of one Kafka fetch into one message, so its clients get fewer, larger
      messages than in (a); one client records how many points each message held;
  (c) push latency at `--rate` (500) updates/s for `--seconds`: producer → broker → gateway
      → client, from the point's `emitted_at` (set at send) to its arrival, on 50 probe
      clients that parse every message (the others only count);
  (d) the same, the same probes, while `--stalled` (10) other clients read nothing: they stop
      calling recv and their transports stop reading, so their TCP receive buffers (fixed at
      64 KiB when they connected, no autotuning) fill, then the gateway's send buffers, then
      their outboxes. Large points on a channel only they take fill them first (not
      measured); the phase starts once the gateway reports every one of them coalescing;
  (c) and (d) alternate in the order c d d c, `--rounds` times, so that a drift of the
      machine over the run weighs the same on both; each condition's p50/p99 pools its
      phases' samples, and the p99 change is pooled (d) against pooled (c). The spread of
      the single (c) phases shows the noise a single phase has on this machine;
  (f) raw broadcast at the pace and message size the gateway had in (c), for `--seconds`:
      the latency and server CPU of bare broadcasting, no Kafka, on the same clients;
  (a2) raw broadcast again, of exactly the messages (b) delivered (the same number of points
      in each): the like-for-like baseline.
Each of (b), (c) and (d) runs a new gateway on new topics (the embedded broker slows down as a
topic grows, see `Gateway`). Last line: `ratio: gateway/raw-broadcast = X.XX`, (b) over
(a2). CPU figures are this process's (the server's) CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import time
from array import array
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry

from bench.common import machine
from consumers.gateway.app import GatewayConfig, run_gateway
from foundation.auth.tokens import issue_token
from foundation.contract.catalog import load_catalog
from ioc.embedded import EmbeddedBroker
from ioc.topics import create_topics

SECRET = b"bench-secret-0123456789abcdef"
BUCKET = 0.0001  # latency histogram resolution: 0.1 ms
BUCKETS = 50_000  # up to 5 s; beyond goes to the last bucket
PROBES_PER_PROCESS = 25
SERIES = 100
STALL_RCVBUF = 64 * 1024
MARK = b'"kind":"kpi"'
FILL = b'"channel":"kpi:traffic"'
FILL_PADDING = 16_000  # bytes of padding in each point that fills a stalled client's buffers


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def kpi_point(index: int, now: float, sector: str = "health") -> dict[str, Any]:
    start = now - now % 900
    return {
        "kind": "kpi",
        "series": f"{sector}.bench|g{index % SERIES:03d}",
        "kpi": "bench",
        "sector": sector,
        "group": f"g{index % SERIES:03d}",
        "window_start": start,
        "window_end": start + 900,
        "value": float(index % 997),
        "count": 1,
        "final": False,
        "revision": index,
        "emitted_at": now,
        "newest": now,
    }


def update_frame(first: int, points: list[dict[str, Any]]) -> str:
    """The gateway's update message (consumers.gateway.protocol.update_frame's format)."""
    message = {"type": "update", "channel": "kpi:health", "from": first,
               "seq": first + len(points) - 1, "items": points}  # fmt: skip
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# -- client processes


class ClientStats:
    def __init__(self, probe: bool) -> None:
        self.probe = probe
        self.reset()

    def reset(self) -> None:
        self.items = 0
        self.messages = 0
        self.first = 0.0
        self.last = 0.0
        # An array, and for probes only: 500 lists of 50,000 ints would make every full
        # garbage collection of a client process a pause that shows in the p99.
        self.hist = array("I", bytes(4 * BUCKETS)) if self.probe else array("I")
        self.batches: list[int] = []

    def seen(self, items: int, now: float) -> None:
        self.items += items
        self.messages += 1
        self.first = self.first or now
        self.last = now


class Client:
    """One WebSocket client: counts points; a probe also records their latency."""

    def __init__(self, *, probe: bool, stallable: bool, record: bool) -> None:
        self.probe = probe
        self.stallable = stallable
        self.record = record  # keep the number of points of every message
        self.stats = ClientStats(probe)
        self.reading = asyncio.Event()
        self.reading.set()
        self.ready = asyncio.Event()
        self.ws: Any = None

    async def run(self, url: str, *, subscribe: bool) -> None:
        from websockets.asyncio.client import connect

        sock = None
        if self.stallable:
            # A fixed receive buffer (no autotuning): when it stops reading, it fills in
            # seconds, not after the megabytes an autotuned loopback buffer takes.
            parts = urlsplit(url)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALL_RCVBUF)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        async with connect(url, compression=None, max_queue=64, open_timeout=60,
                           sock=sock) as ws:  # fmt: skip
            self.ws = ws
            if subscribe:
                # The stallable ones also take `kpi:traffic`, where (d) sends the large
                # points that fill their buffers; nobody else receives those.
                channels = ["kpi:health", "kpi:traffic"] if self.stallable else ["kpi:health"]
                await ws.send(json.dumps({"type": "subscribe", "channels": channels}))
                snapshots = 0
                while snapshots < len(channels):
                    message = json.loads(await ws.recv())
                    snapshots += message["type"] == "snapshot"
            self.ready.set()
            stats = self.stats
            while True:
                if not self.reading.is_set():
                    await self.reading.wait()
                raw = await ws.recv(decode=False)
                now = time.time()
                count = raw.count(MARK)
                if not count or FILL in raw:
                    continue
                stats.seen(count, now)
                if self.record:
                    stats.batches.append(count)
                if self.probe:
                    hist = stats.hist
                    for item in json.loads(raw)["items"]:
                        slot = int((now - item["emitted_at"]) / BUCKET)
                        hist[min(max(slot, 0), BUCKETS - 1)] += 1

    def stall(self) -> None:
        self.reading.clear()
        self.ws.transport.pause_reading()


async def _client_process(pipe: Connection, clients: int, stallable: int, first: bool) -> None:
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    pool: list[Client] = []
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        if command == "connect":
            url, subscribe = args
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool = [
                Client(
                    probe=index < PROBES_PER_PROCESS,
                    stallable=PROBES_PER_PROCESS <= index < PROBES_PER_PROCESS + stallable,
                    record=first and index == 0,
                )
                for index in range(clients)
            ]
            tasks = []
            for index, client in enumerate(pool):
                tasks.append(asyncio.create_task(client.run(url, subscribe=subscribe)))
                if index % 25 == 24:
                    await asyncio.sleep(0.05)  # do not flood the accept queue
            async with asyncio.timeout(120):
                await asyncio.gather(*(c.ready.wait() for c in pool))
            gc.collect()
            gc.freeze()  # the connections are set up: later collections skip them
            pipe.send("ok")
        elif command == "reset":
            for client in pool:
                client.stats.reset()
            pipe.send("ok")
        elif command == "stall":
            for client in pool:
                if client.stallable:
                    client.stall()
            pipe.send("ok")
        elif command == "stats":
            merged = [0] * BUCKETS
            for client in pool:
                if client.probe:
                    for i, n in enumerate(client.stats.hist):
                        if n:
                            merged[i] += n
            stats = [c.stats for c in pool if not c.stallable]  # the stalled ones aside
            pipe.send({
                "items": [s.items for s in stats],
                "messages": [s.messages for s in stats],
                "first": min((s.first for s in stats if s.first), default=0.0),
                "last": max((s.last for s in stats), default=0.0),
                "hist": {i: n for i, n in enumerate(merged) if n},
                "batches": [b for c in pool for b in c.stats.batches],
                "stalled_items": [c.stats.items for c in pool if c.stallable],
            })  # fmt: skip
        elif command == "stop":
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pipe.send("ok")
            return


def client_main(pipe: Connection, clients: int, stallable: int, first: bool) -> None:
    asyncio.run(_client_process(pipe, clients, stallable, first))


# -- producer process


async def _producer_process(pipe: Connection, bootstrap: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    loop = asyncio.get_running_loop()
    sent = 0

    async def send(topic: str, sector: str = "health", padding: int = 0) -> None:
        nonlocal sent
        point = kpi_point(sent, time.time(), sector)
        if padding:
            point["padding"] = "x" * padding
        await producer.send(topic, json.dumps(point).encode(), key=point["series"].encode())
        sent += 1

    try:
        while True:
            command, *args = await loop.run_in_executor(None, pipe.recv)
            if command == "burst":
                topic, count = args
                started = time.time()
                for _ in range(count):
                    await send(topic)
                await producer.flush()
                pipe.send((started, time.time()))
            elif command in ("paced", "fill"):
                # paced: `rate` points/s of kpi:health; fill: one large kpi:traffic point a
                # tick. Either stops early on ("halt",).
                topic, rate, seconds = args
                tick = 0.02  # ten points every 20 ms at 500/s
                per_tick = 1 if command == "fill" else max(1, round(rate * tick))
                started = time.monotonic()
                done = 0
                for n in range(int(seconds / tick)):
                    if pipe.poll():
                        pipe.recv()
                        break
                    for _ in range(per_tick):
                        if command == "fill":
                            await send(topic, "traffic", FILL_PADDING)
                        else:
                            await send(topic)
                    done += per_tick
                    await asyncio.sleep(max(0.0, started + (n + 1) * tick - time.monotonic()))
                await producer.flush()
                pipe.send(done)
            elif command == "stop":
                pipe.send("ok")
                return
    finally:
        await producer.stop()


def producer_main(pipe: Connection, bootstrap: str) -> None:
    asyncio.run(_producer_process(pipe, bootstrap))


# -- the run


class Pool:
    """The client processes, driven through pipes."""

    def __init__(self, clients: int, stalled: int, processes: int = 2) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for index in range(processes):
            ours, theirs = ctx.Pipe()
            share = clients // processes + (1 if index < clients % processes else 0)
            stall = stalled // processes + (1 if index < stalled % processes else 0)
            proc = ctx.Process(target=client_main, args=(theirs, share, stall, index == 0),
                               daemon=True)  # fmt: skip
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    async def ask(self, *command: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        return [await asyncio.to_thread(pipe.recv) for pipe in self.pipes]

    async def totals(self) -> dict[str, Any]:
        """Counts of the clients that never stall, the probes' histogram, (b)'s batches."""
        parts = await self.ask("stats")
        hist: dict[int, int] = {}
        for part in parts:
            for slot, n in part["hist"].items():
                hist[slot] = hist.get(slot, 0) + n
        return {
            "items": [n for part in parts for n in part["items"]],
            "messages": [n for part in parts for n in part["messages"]],
            "first": min((p["first"] for p in parts if p["first"]), default=0.0),
            "last": max(p["last"] for p in parts),
            "hist": hist,
            "batches": [b for part in parts for b in part["batches"]],
            "stalled_items": [n for part in parts for n in part["stalled_items"]],
        }  # fmt: skip

    async def wait_items(self, each: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            totals = await self.totals()
            every = totals["items"] + totals["stalled_items"]
            if min(every) >= each or time.monotonic() > deadline:
                return totals
            await asyncio.sleep(0.2)

    def close(self) -> None:
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def percentile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = q * total
    seen = 0
    for slot in sorted(hist):
        seen += hist[slot]
        if seen >= rank:
            return (slot + 0.5) * BUCKET * 1000
    return float("nan")


def bucket_counts(registry: CollectorRegistry, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram of the registry."""
    out = []
    for metric in registry.collect():
        if metric.name == name:
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    out.append((float(sample.labels["le"]), sample.value))
    return out


def bucket_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]],
                    q: float) -> str:  # fmt: skip
    """The bucket bound holding quantile q of the observations between two snapshots."""
    counts = [(le, a - b) for (le, a), (_le, b) in zip(after, before, strict=True)]
    total = counts[-1][1] if counts else 0
    if not total:
        return "n/a"
    for le, n in counts:
        if n >= q * total:
            return f"≤ {le * 1000:g} ms" if le != float("inf") else "> last bucket"
    return "n/a"


def sample(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name) or 0.0


async def raw_broadcast(pool: Pool, label: str, batches: list[int]) -> tuple[float, str]:
    """Broadcast one message per entry of `batches` (that many points each) to every client."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    connected: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connected.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connected.discard(ws)

    points = sum(batches)
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        await pool.ask("connect", f"ws://127.0.0.1:{port}/", False)
        await pool.ask("reset")
        log(f"{label} raw broadcast: {len(connected)} clients, {len(batches)} messages, "
            f"{points} points")  # fmt: skip
        started, cpu = time.time(), time.process_time()
        sent = 0
        written = 0
        for count in batches:
            now = time.time()
            frame = update_frame(sent + 1, [kpi_point(sent + i, now) for i in range(count)])
            sent += count
            broadcast(connected, frame)
            written += len(frame)
            if written < 4096:
                continue
            written = 0
            await asyncio.sleep(0)
            # Raw broadcast has no backpressure: poll the buffers (a bench, not a server).
            while max(c.transport.get_write_buffer_size() for c in connected) > 65536:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        totals = await pool.wait_items(points, 300)
        cpu = time.process_time() - cpu
        elapsed = totals["last"] - started
        delivered = sum(totals["items"]) + sum(totals["stalled_items"])
        rate = float(delivered / elapsed)
        per = cpu / delivered * 1e6
        detail = (f"{delivered:,} deliveries in {elapsed:.2f} s, {len(batches):,} messages "
                  f"to each client; server CPU {per:.2f} µs/delivery")  # fmt: skip
        log(f"    {detail}")
        return rate, detail


async def raw_paced(pool: Pool, per_second: float, points: int, seconds: float
                    ) -> dict[str, Any]:  # fmt: skip
    """Broadcast `per_second` messages of `points` points each for `seconds`: the latency."""
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    connected: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connected.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connected.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        await pool.ask("connect", f"ws://127.0.0.1:{port}/", False)
        await pool.ask("reset")
        cpu = time.process_time()
        started = time.monotonic()
        ticks = int(seconds * per_second)
        for n in range(ticks):
            now = time.time()
            first = n * points
            broadcast(connected, update_frame(first + 1, [kpi_point(first + i, now)
                                                          for i in range(points)]))  # fmt: skip
            await asyncio.sleep(max(0.0, started + (n + 1) / per_second - time.monotonic()))
        await asyncio.sleep(1.0)  # let the tail arrive
        cpu = time.process_time() - cpu
        totals = await pool.totals()
    hist = totals["hist"]
    return {
        "p50": percentile(hist, 0.50),
        "p99": percentile(hist, 0.99),
        "samples": sum(hist.values()),
        "cpu": cpu / (seconds + 1.0),
    }


class Gateway:
    """A gateway on its own fresh topics, its clients connected and subscribed.

    Each phase gets a new one: the embedded broker's latency grows with the records a topic
    holds (measured: p50 +2 to 3 ms per 5,000 records; back to the start on a new topic), so
    phases sharing a topic would not run under the same conditions.
    """

    def __init__(self, broker: EmbeddedBroker, name: str) -> None:
        self.broker = broker
        self.kpi_topic = f"bench.{name}.kpi"
        self.topics = (self.kpi_topic, f"bench.{name}.alerts", f"bench.{name}.actions")
        self.registry = CollectorRegistry()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self, pool: Pool) -> None:
        await create_topics(self.broker.bootstrap_servers, list(self.topics), partitions=4,
                            replication_factor=1, timeout=30)  # fmt: skip
        announced: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        config = GatewayConfig(
            bootstrap_servers=self.broker.bootstrap_servers, database_url=None,
            host="127.0.0.1", port=0, secret=SECRET, heartbeat=10.0, queue_limit=256,
            # Stalled clients stay connected through (d): the worst case for the others.
            resume_buffer=5000, resume_seconds=600.0, send_timeout=600.0, replay_seconds=600.0,
            connect_timeout=30.0,
            kpi_topic=self.topics[0], alerts_topic=self.topics[1], actions_topic=self.topics[2],
        )  # fmt: skip
        self.task = asyncio.create_task(run_gateway(
            config, catalog=load_catalog(), stop=self.stop, registry=self.registry,
            announce=lambda url: announced.set_result(url),
        ))  # fmt: skip
        url = await asyncio.wait_for(announced, 120)
        token, _ = issue_token(SECRET, role="wall", name="bench", sectors=None, now=time.time(),
                               ttl=3600)  # fmt: skip
        await pool.ask("connect", url.replace("http://", "ws://") + f"ws?token={token}", True)
        await pool.ask("reset")

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=30)
            self.task = None


async def latency_phase(pool: Pool, producer_pipe: Connection, gateway: Gateway,
                        rate: float, seconds: float) -> dict[str, Any]:  # fmt: skip
    """Paced points for `seconds`: the probes' latency histogram and what the gateway did."""
    registry = gateway.registry
    await pool.ask("reset")
    fanout_before = bucket_counts(registry, "ioc_gateway_fanout_seconds")
    sum_before = sample(registry, "ioc_gateway_fanout_seconds_sum")
    count_before = sample(registry, "ioc_gateway_fanout_seconds_count")
    cpu = time.process_time()
    producer_pipe.send(("paced", gateway.kpi_topic, rate, seconds))
    sent = await asyncio.to_thread(producer_pipe.recv)
    await asyncio.sleep(1.0)  # let the tail arrive
    cpu = time.process_time() - cpu
    totals = await pool.totals()
    fanout_after = bucket_counts(registry, "ioc_gateway_fanout_seconds")
    hist = totals["hist"]
    return {
        "p50": percentile(hist, 0.50),
        "p99": percentile(hist, 0.99),
        "samples": sum(hist.values()),
        "sent": sent,
        "messages_per_client_s": sum(totals["messages"]) / len(totals["messages"]) / seconds,
        "missing": sum(1 for n in totals["items"] if n < sent),
        "cpu": cpu / (seconds + 1.0),
        "fanout_mean": (sample(registry, "ioc_gateway_fanout_seconds_sum") - sum_before)
        / max(1.0, sample(registry, "ioc_gateway_fanout_seconds_count") - count_before),
        "fanout_p50": bucket_quantile(fanout_before, fanout_after, 0.50),
        "fanout_p99": bucket_quantile(fanout_before, fanout_after, 0.99),
        "stalled_items": totals["stalled_items"],
        "hist": hist,
    }


def describe(phase: str, label: str, args: argparse.Namespace, r: dict[str, Any]) -> str:
    return (f"{phase} {args.rate:.0f} updates/s for {args.seconds:.0f} s, {label}: push latency "
            f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms ({r['samples']:,} samples on 50 "
            f"probes; {r['sent']:,} points sent, {r['messages_per_client_s']:.0f} messages/s "
            f"per client; gateway fan-out per batch mean {r['fanout_mean'] * 1000:.2f} ms, "
            f"p50 {r['fanout_p50']}, p99 "
            f"{r['fanout_p99']}; server CPU {r['cpu'] * 100:.0f} % of a core)")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--messages", type=int, default=1000, help="(a): one point each")
    parser.add_argument("--points", type=int, default=5000, help="(b): produced at full speed")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--stalled", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="c d d c, this many times")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ioc-bench-gw-"))
    broker = EmbeddedBroker(state_dir=root)
    await broker.start()
    pool = Pool(args.clients, args.stalled)
    ctx = mp.get_context("spawn")
    producer_pipe, theirs = ctx.Pipe()
    producer = ctx.Process(target=producer_main, args=(theirs, broker.bootstrap_servers),
                           daemon=True)  # fmt: skip
    producer.start()
    gateways: list[Gateway] = []
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"machine: {machine()}; {args.clients} clients in 2 processes; "
              f"load average at start {load}", flush=True)  # fmt: skip
        print("a delivery is one KPI point (one item of an update message) received by one "
              "client", flush=True)  # fmt: skip
        raw_rate, detail = await raw_broadcast(pool, "(a)", [1] * args.messages)
        print(f"(a) raw websockets broadcast, one point per message: {raw_rate:,.0f} "
              f"deliveries/s ({detail})", flush=True)  # fmt: skip

        gateway = Gateway(broker, "b")
        gateways.append(gateway)
        await gateway.start(pool)
        log(f"(b) gateway: {args.clients} subscribed clients, {args.points} KPI points")
        cpu = time.process_time()
        producer_pipe.send(("burst", gateway.kpi_topic, args.points))
        started, produced = await asyncio.to_thread(producer_pipe.recv)
        totals = await pool.wait_items(args.points, 300)
        cpu = time.process_time() - cpu
        await gateway.close()
        elapsed = totals["last"] - started
        delivered = sum(totals["items"]) + sum(totals["stalled_items"])
        gateway_rate = delivered / elapsed
        batches = totals["batches"]
        print(f"(b) gateway from Kafka: {gateway_rate:,.0f} deliveries/s ({delivered:,} in "
              f"{elapsed:.2f} s from the producer's first send, which took "
              f"{produced - started:.2f} s; {len(batches):,} messages to each client, "
              f"{sum(batches) / max(1, len(batches)):.0f} points each on average; server CPU "
              f"{cpu / delivered * 1e6:.2f} µs/delivery)", flush=True)  # fmt: skip

        # Phases of 'all reading' (c) and 'stalled' (d), in the order c d d c, `--rounds`
        # times: a drift of the machine over the run weighs the same on both conditions.
        # Each condition's p50/p99 pools the probes' samples of all its phases.
        order = ["c", "d", "d", "c"] * args.rounds
        results: dict[str, list[dict[str, Any]]] = {"c": [], "d": []}
        for number, condition in enumerate(order, 1):
            phase = f"({condition}{number})"
            stalling = condition == "d" and args.stalled > 0
            label = (f"{args.stalled} other clients not reading" if condition == "d"
                     else "all clients reading")  # fmt: skip
            gateway = Gateway(broker, f"{condition}{number}")
            gateways.append(gateway)
            await gateway.start(pool)
            registry = gateway.registry
            if stalling:
                await pool.ask("stall")
                # Fill their buffers and outboxes with large points on a channel only they
                # take (not measured): the phase starts once the gateway folds every one of
                # them into pending resyncs.
                filled = time.monotonic()
                producer_pipe.send(("fill", gateway.kpi_topic, 0.0, 300.0))
                while sample(registry, "ioc_gateway_clients_coalescing") < args.stalled:
                    if time.monotonic() - filled > 280:
                        raise SystemExit("the stalled clients did not back up within 280 s")
                    await asyncio.sleep(0.1)
                fill = time.monotonic() - filled
                producer_pipe.send(("halt",))
                fill_points = await asyncio.to_thread(producer_pipe.recv)
                log(f"    {args.stalled} clients stalled: all coalescing after {fill:.1f} s, "
                    f"{fill_points} points of {FILL_PADDING / 1000:.0f} kB")  # fmt: skip
            coalesced = sample(registry, "ioc_gateway_coalesced_updates_total")
            r = await latency_phase(pool, producer_pipe, gateway, args.rate, args.seconds)
            results[condition].append(r)
            print(describe(phase, label, args, r), flush=True)
            if stalling:
                coalescing = sample(registry, "ioc_gateway_clients_coalescing")
                folded = sample(registry, "ioc_gateway_coalesced_updates_total") - coalesced
                print(f"    during {phase}: {coalescing:.0f} clients coalescing at the end, "
                      f"{folded:,.0f} items coalesced, the stalled clients received "
                      f"{sum(r['stalled_items'])} points, "
                      f"{sample(registry, 'ioc_gateway_slow_clients_closed_total'):.0f} "
                      f"clients closed as too slow", flush=True)  # fmt: skip
            if r["missing"]:
                print(f"    {r['missing']} reading clients missed points", flush=True)
            await gateway.close()

        pooled = {}
        for condition, runs in results.items():
            hist: dict[int, int] = {}
            for r in runs:
                for slot, n in r["hist"].items():
                    hist[slot] = hist.get(slot, 0) + n
            pooled[condition] = (percentile(hist, 0.50), percentile(hist, 0.99),
                                 [r["p99"] for r in runs])  # fmt: skip
        for condition, label in (("c", "all clients reading"),
                                 ("d", f"{args.stalled} other clients not reading")):  # fmt: skip
            p50, p99, p99s = pooled[condition]
            print(f"({condition}) pooled, {len(p99s)} phases of {args.seconds:.0f} s at "
                  f"{args.rate:.0f} updates/s, {label}: push latency p50 {p50:.1f} ms, p99 "
                  f"{p99:.1f} ms (p99 of each phase: "
                  f"{', '.join(f'{x:.1f}' for x in p99s)} ms)", flush=True)  # fmt: skip

        pace = results["c"][0]["messages_per_client_s"]
        points = max(1, round(args.rate / pace))
        log(f"(f) raw broadcast, {pace:.0f} messages/s of {points} points for {args.seconds:.0f} s")
        f = await raw_paced(pool, pace, points, args.seconds)
        print(f"(f) raw websockets broadcast at the pace of (c), {pace:.0f} messages/s of "
              f"{points} points for {args.seconds:.0f} s: push latency (broadcast → client) "
              f"p50 {f['p50']:.1f} ms, p99 {f['p99']:.1f} ms ({f['samples']:,} samples on 50 "
              f"probes; server CPU {f['cpu'] * 100:.0f} % of a core)", flush=True)  # fmt: skip
        raw_same, detail = await raw_broadcast(pool, "(a2)", batches)
        print(f"(a2) raw websockets broadcast of (b)'s messages: {raw_same:,.0f} deliveries/s "
              f"({detail})", flush=True)  # fmt: skip

        base, stalled = pooled["c"][1], pooled["d"][1]
        spread = [x / base - 1 for x in pooled["c"][2]]
        print(f"p99 change with {args.stalled} stalled clients: {stalled / base - 1:+.1%} "
              f"(pooled (d) against pooled (c)); the all-reading phases alone range "
              f"{min(spread):+.1%} to {max(spread):+.1%} around their pooled p99",
              flush=True)  # fmt: skip
        print(f"(b)/(a), gateway against one point per message: {gateway_rate / raw_rate:.2f}",
              flush=True)  # fmt: skip
        print(f"ratio: gateway/raw-broadcast = {gateway_rate / raw_same:.2f}", flush=True)
    finally:
        for gateway in gateways:
            await gateway.close()
        await pool.ask("stop")
        pool.close()
        producer_pipe.send(("stop",))
        producer.join(10)
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
