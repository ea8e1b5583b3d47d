"""WebSocket gateway fan-out against raw `websockets` broadcast, measured in the same run.

    python bench/gateway.py [--clients 500] [--messages 1000] [--seconds 20]

Starts its own embedded broker. 500 WebSocket clients run in two separate processes (so
their parsing does not share the server's core); the servers run in this process:
  (a) raw: a bare `websockets` server broadcasts `--messages` update frames (one KPI point
      each, the gateway's frame format) to every client with `websockets.broadcast`, as fast
      as the clients take them (it waits while any socket's write buffer is over 64 KiB);
  (b) gateway: `run_gateway` follows a fresh KPI topic; a producer process sends
      `--messages` KPI points as fast as it can; every client is subscribed to `kpi:health`;
  (c) push latency at 500 updates/s for `--seconds`: producer → broker → gateway → client,
      from the point's `emitted_at` (set at send) to its arrival, on 50 probe clients that
      parse every message (the others only count);
  (d) the same with 10 of the other clients no longer reading: the p99 change.
Deliveries are KPI points received by clients. The gateway puts the points one fetch from
Kafka brings for a channel into one message, so it writes fewer, larger messages than (a);
both figures are printed. Last line: `ratio: gateway/raw-broadcast = X.XX`, (b) over (a).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine
from consumers.gateway.app import GatewayConfig, run_gateway
from consumers.gateway.tokens import issue_token
from ioc.embedded import EmbeddedBroker
from ioc.topics import create_topics
from streams.catalog import load_catalog

SECRET = b"bench-secret-0123456789abcdef"
BUCKET = 0.0001  # latency histogram resolution: 0.1 ms
BUCKETS = 50_000  # up to 5 s; beyond goes to the last bucket
PROBES_PER_PROCESS = 25
SERIES = 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def kpi_point(index: int, now: float) -> dict[str, Any]:
    start = now - now % 900
    return {
        "kind": "kpi",
        "series": f"health.bench|g{index % SERIES:03d}",
        "kpi": "bench",
        "sector": "health",
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


# -- client processes


class ClientStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.items = 0
        self.messages = 0
        self.first = 0.0
        self.last = 0.0
        self.hist = [0] * BUCKETS

    def seen(self, items: int, now: float) -> None:
        self.items += items
        self.messages += 1
        self.first = self.first or now
        self.last = now


async def _client(url: str, *, subscribe: bool, probe: bool, stats: ClientStats,
                  ready: asyncio.Event, connections: list[tuple[bool, Any]]) -> None:  # fmt: skip
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_queue=64, open_timeout=60) as ws:
        connections.append((probe, ws))
        if subscribe:
            await ws.send(json.dumps({"type": "subscribe", "channels": ["kpi:health"]}))
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "snapshot":
                    break
        ready.set()
        async for raw in ws:
            now = time.time()
            text = raw if isinstance(raw, str) else raw.decode()
            count = text.count('"kind":"kpi"')
            if not count:
                continue
            stats.seen(count, now)
            if probe:
                for item in json.loads(text)["items"]:
                    slot = int((now - item["emitted_at"]) / BUCKET)
                    stats.hist[min(max(slot, 0), BUCKETS - 1)] += 1


async def _client_process(pipe: Connection, clients: int) -> None:
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    stats: list[ClientStats] = []
    connections: list[tuple[bool, Any]] = []
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        if command == "connect":
            url, subscribe = args
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks, stats, connections = [], [ClientStats() for _ in range(clients)], []
            readies = []
            for index in range(clients):
                ready = asyncio.Event()
                readies.append(ready)
                tasks.append(asyncio.create_task(_client(
                    url, subscribe=subscribe, probe=index < PROBES_PER_PROCESS,
                    stats=stats[index], ready=ready, connections=connections,
                )))  # fmt: skip
                if index % 25 == 24:
                    await asyncio.sleep(0.05)  # do not flood the accept queue
            async with asyncio.timeout(120):
                await asyncio.gather(*(r.wait() for r in readies))
            pipe.send("ok")
        elif command == "reset":
            for s in stats:
                s.reset()
            pipe.send("ok")
        elif command == "pause":
            (count,) = args
            others = [ws for probe, ws in connections if not probe]
            for ws in others[:count]:
                ws.transport.pause_reading()
            pipe.send("ok")
        elif command == "stats":
            merged = [0] * BUCKETS
            for s in stats[:PROBES_PER_PROCESS]:
                for i, n in enumerate(s.hist):
                    if n:
                        merged[i] += n
            pipe.send({
                "items": [s.items for s in stats],
                "messages": sum(s.messages for s in stats),
                "first": min((s.first for s in stats if s.first), default=0.0),
                "last": max((s.last for s in stats), default=0.0),
                "hist": {i: n for i, n in enumerate(merged) if n},
            })  # fmt: skip
        elif command == "stop":
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pipe.send("ok")
            return


def client_main(pipe: Connection, clients: int) -> None:
    asyncio.run(_client_process(pipe, clients))


# -- producer process


async def _producer_process(pipe: Connection, bootstrap: str, topic: str) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    loop = asyncio.get_running_loop()
    sent = 0
    try:
        while True:
            command, *args = await loop.run_in_executor(None, pipe.recv)
            if command == "burst":
                (count,) = args
                started = time.time()
                for _ in range(count):
                    point = kpi_point(sent, time.time())
                    await producer.send(topic, json.dumps(point).encode(),
                                        key=point["series"].encode())  # fmt: skip
                    sent += 1
                await producer.flush()
                pipe.send(started)
            elif command == "paced":
                rate, seconds = args
                tick = 0.02  # ten points every 20 ms at 500/s
                per_tick = max(1, round(rate * tick))
                started = time.monotonic()
                ticks = int(seconds / tick)
                for n in range(ticks):
                    for _ in range(per_tick):
                        point = kpi_point(sent, time.time())
                        await producer.send(topic, json.dumps(point).encode(),
                                            key=point["series"].encode())  # fmt: skip
                        sent += 1
                    await asyncio.sleep(max(0.0, started + (n + 1) * tick - time.monotonic()))
                await producer.flush()
                pipe.send(ticks * per_tick)
            elif command == "stop":
                pipe.send("ok")
                return
    finally:
        await producer.stop()


def producer_main(pipe: Connection, bootstrap: str, topic: str) -> None:
    asyncio.run(_producer_process(pipe, bootstrap, topic))


# -- the run


class Pool:
    """The client processes, driven through pipes."""

    def __init__(self, clients: int, processes: int = 2) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for index in range(processes):
            ours, theirs = ctx.Pipe()
            share = clients // processes + (1 if index < clients % processes else 0)
            proc = ctx.Process(target=client_main, args=(theirs, share), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    async def ask(self, *command: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        return [await asyncio.to_thread(pipe.recv) for pipe in self.pipes]

    async def totals(self) -> dict[str, Any]:
        parts = await self.ask("stats")
        hist: dict[int, int] = {}
        for part in parts:
            for slot, n in part["hist"].items():
                hist[slot] = hist.get(slot, 0) + n
        return {
            "items": [n for part in parts for n in part["items"]],
            "messages": sum(p["messages"] for p in parts),
            "first": min((p["first"] for p in parts if p["first"]), default=0.0),
            "last": max(p["last"] for p in parts),
            "hist": hist,
        }  # fmt: skip

    async def wait_items(self, each: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            totals = await self.totals()
            if min(totals["items"]) >= each or time.monotonic() > deadline:
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


async def raw_broadcast(pool: Pool, clients: int, messages: int) -> float:
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
        log(f"(a) raw broadcast: {len(connected)} clients, {messages} messages")
        started = time.time()
        for index in range(messages):
            point = kpi_point(index, time.time())
            frame = json.dumps({"type": "update", "channel": "kpi:health", "from": index + 1,
                                "seq": index + 1, "items": [point]},
                               ensure_ascii=False, separators=(",", ":"))  # fmt: skip
            broadcast(connected, frame)
            if index % 10 == 9:
                await asyncio.sleep(0)
                # Raw broadcast has no backpressure: poll the buffers (a bench, not a server).
                while max(c.transport.get_write_buffer_size() for c in connected) > 65536:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
        totals = await pool.wait_items(messages, 300)
        elapsed = totals["last"] - started
        rate = float(sum(totals["items"]) / elapsed)
        log(f"    {sum(totals['items']):,} deliveries in {elapsed:.2f} s; "
            f"{totals['messages']:,} messages")  # fmt: skip
        return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--stalled", type=int, default=10)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ioc-bench-gw-"))
    broker = EmbeddedBroker(state_dir=root)
    await broker.start()
    pool = Pool(args.clients)
    ctx = mp.get_context("spawn")
    producer_pipe, theirs = ctx.Pipe()
    topics = ("bench.kpi", "bench.alerts", "bench.actions")
    await create_topics(broker.bootstrap_servers, list(topics), partitions=4,
                        replication_factor=1, timeout=30)  # fmt: skip
    producer = ctx.Process(target=producer_main, args=(theirs, broker.bootstrap_servers, topics[0]),
                           daemon=True)  # fmt: skip
    producer.start()
    stop = asyncio.Event()
    gateway_task: asyncio.Task[None] | None = None
    try:
        print(f"machine: {machine()}; {args.clients} clients in 2 processes", flush=True)
        raw_rate = await raw_broadcast(pool, args.clients, args.messages)
        print(f"(a) raw websockets broadcast: {raw_rate:,.0f} deliveries/s", flush=True)

        announced: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        config = GatewayConfig(
            bootstrap_servers=broker.bootstrap_servers, database_url=None, host="127.0.0.1",
            port=0, secret=SECRET, heartbeat=10.0, queue_limit=256, resume_buffer=5000,
            send_timeout=30.0, replay_seconds=600.0, connect_timeout=30.0,
            kpi_topic=topics[0], alerts_topic=topics[1], actions_topic=topics[2],
        )  # fmt: skip
        gateway_task = asyncio.create_task(run_gateway(
            config, catalog=load_catalog(), stop=stop,
            announce=lambda url: announced.set_result(url),
        ))  # fmt: skip
        url = await asyncio.wait_for(announced, 120)
        token, _ = issue_token(SECRET, role="wall", name="bench", sectors=None, now=time.time(),
                               ttl=3600)  # fmt: skip
        await pool.ask("connect", url.replace("http://", "ws://") + f"ws?token={token}", True)
        await pool.ask("reset")
        log(f"(b) gateway: {args.clients} subscribed clients, {args.messages} KPI points")
        producer_pipe.send(("burst", args.messages))
        started = await asyncio.to_thread(producer_pipe.recv)
        totals = await pool.wait_items(args.messages, 300)
        elapsed = totals["last"] - started
        gateway_rate = sum(totals["items"]) / elapsed
        log(f"    {sum(totals['items']):,} deliveries in {elapsed:.2f} s in "
            f"{totals['messages']:,} messages")  # fmt: skip
        print(f"(b) gateway from Kafka: {gateway_rate:,.0f} deliveries/s "
              f"({totals['messages'] / elapsed:,.0f} messages/s)", flush=True)  # fmt: skip

        results = []
        for phase, stalled in (("(c)", 0), ("(d)", args.stalled)):
            if stalled:
                for index, pipe in enumerate(pool.pipes):
                    share = stalled // len(pool.pipes) + (
                        1 if index < stalled % len(pool.pipes) else 0
                    )
                    pipe.send(("pause", share))
                for pipe in pool.pipes:
                    await asyncio.to_thread(pipe.recv)
            await pool.ask("reset")
            producer_pipe.send(("paced", args.rate, args.seconds))
            sent = await asyncio.to_thread(producer_pipe.recv)
            await asyncio.sleep(1.0)  # let the tail arrive
            totals = await pool.totals()
            p50, p99 = percentile(totals["hist"], 0.50), percentile(totals["hist"], 0.99)
            samples = sum(totals["hist"].values())
            results.append(p99)
            label = f"{stalled} clients not reading" if stalled else "all clients reading"
            print(f"{phase} {args.rate:.0f} updates/s for {args.seconds:.0f} s, {label}: "
                  f"push latency p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                  f"({samples:,} samples on 50 probes; {sent:,} points sent)",
                  flush=True)  # fmt: skip
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url + "metrics", timeout=10).read().decode()  # noqa: S310
        )
        for line in metrics.splitlines():
            if line.startswith(("ioc_gateway_coalesced_updates_total", "ioc_gateway_resyncs_total",
                                "ioc_gateway_slow_clients_closed_total")):  # fmt: skip
                log(f"    {line}")
        change = (results[1] - results[0]) / results[0] * 100
        print(f"p99 change with {args.stalled} stalled clients: {change:+.1f} %", flush=True)
        print(f"ratio: gateway/raw-broadcast = {gateway_rate / raw_rate:.2f}", flush=True)
    finally:
        stop.set()
        if gateway_task is not None:
            await asyncio.wait({gateway_task}, timeout=30)
        await pool.ask("stop")
        pool.close()
        producer_pipe.send(("stop",))
        producer.join(10)
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
