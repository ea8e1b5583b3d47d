"""Fan-out: sequence logs and resume, direct writes, bounded outboxes, coalescing, slow clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.gateway.fanout import ChannelLog, ClientGoneError, ClientSession, Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.state import Change, GatewayState


class FakeTransport:
    """Records what is sent; `gate` cleared means the client stopped reading (backed up)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.gone = False
        self.arrived = asyncio.Event()
        self.direct = 0  # messages taken by write_now
        self.waited = 0  # messages that went through send

    def write_now(self, frame: bytes) -> bool:
        if self.gone:
            raise ClientGoneError("closed")
        if not self.gate.is_set():
            return False
        self.direct += 1
        self._record(frame)
        return True

    async def send(self, frame: bytes) -> None:
        await self.gate.wait()
        if self.gone:
            raise ClientGoneError("closed")
        self.waited += 1
        self._record(frame)

    def _record(self, frame: bytes) -> None:
        self.sent.append(json.loads(frame))
        self.arrived.set()

    async def wait_for(self, predicate: Any) -> None:
        async with asyncio.timeout(10):
            while not predicate(self.sent):
                self.arrived.clear()
                await self.arrived.wait()


def kpi(series: str, value: float, revision: int = 0) -> dict[str, Any]:
    return {
        "kind": "kpi",
        "series": series,
        "kpi": "k",
        "sector": "health",
        "group": "*",
        "window_start": 0.0,
        "window_end": 60.0,
        "value": value,
        "count": 1,
        "final": False,
        "revision": revision,
        "emitted_at": 1.0,
        "newest": 1.0,
    }


def setup(queue_limit: int = 4, send_timeout: float = 5.0):
    metrics = GatewayMetrics.create(CollectorRegistry())
    hub = Hub(GatewayState(), epoch="e1", buffer_size=3, metrics=metrics)

    def session(transport: FakeTransport) -> ClientSession:
        return ClientSession(
            transport=transport,
            epoch="e1",
            queue_limit=queue_limit,
            send_timeout=send_timeout,
            metrics=metrics,
        )

    return hub, session, metrics


def publish(hub: Hub, *items: dict[str, Any]) -> None:
    changes = []
    for item in items:
        changes.extend(hub.state.apply_kpi(item))
    hub.publish(changes)


async def drain(transport: FakeTransport, count: int) -> None:
    await transport.wait_for(lambda sent: len(sent) >= count)


def test_channel_log_since():
    log = ChannelLog(size=3)
    for i in range(5):
        log.append({"i": i})
    assert log.seq == 5
    assert log.since(5) == []
    assert [x["i"] for x in log.since(3) or []] == [3, 4]
    assert [x["i"] for x in log.since(2) or []] == [2, 3, 4]
    assert log.since(1) is None  # fell out of the buffer
    assert log.since(6) is None  # from the future (another epoch)
    assert log.since(-1) is None


def test_channel_log_forgets_items_older_than_its_horizon():
    """The log holds the last `horizon` seconds: flat memory at any rate; older is a resync."""
    now = [100.0]
    log = ChannelLog(size=1000, horizon=60.0, clock=lambda: now[0])
    for i in range(3):
        log.append({"i": i})
        now[0] += 20.0
    assert [x["i"] for x in log.since(0) or []] == [0, 1, 2]  # 60, 40, 20 s old
    now[0] += 1.0
    assert log.since(0) is None  # item 1 is 61 s old: gone, though the count is far from full
    assert [x["i"] for x in log.since(1) or []] == [1, 2]
    now[0] += 3600.0
    log.append({"i": 3})
    assert log.since(2) is None and log.since(3) == [{"i": 3}] and log.since(4) == []


async def test_subscribe_sends_snapshot_then_updates_in_order():
    hub, session_for, _ = setup()
    publish(hub, kpi("a", 1))
    transport = FakeTransport()
    session = session_for(transport)
    writer = asyncio.create_task(session.run())
    hub.subscribe(session, "kpi:health")
    publish(hub, kpi("a", 2, 1), kpi("b", 3))
    await drain(transport, 2)
    snapshot, update = transport.sent
    assert (snapshot["type"], snapshot["seq"], len(snapshot["items"])) == ("snapshot", 1, 1)
    assert (update["type"], update["from"], update["seq"]) == ("update", 2, 3)
    session.close()
    await writer


async def test_resume_replays_or_resyncs():
    hub, session_for, _ = setup()
    for revision in range(4):
        publish(hub, kpi("a", revision, revision))  # seq 1..4, buffer keeps 2..4
    transport = FakeTransport()
    session = session_for(transport)
    assert hub.resume(session, "kpi:health", "e1", 2) is True
    assert hub.resume(session, "kpi:health", "e1", 0) is False  # out of the buffer
    assert hub.resume(session, "kpi:health", "other", 4) is False  # another gateway
    writer = asyncio.create_task(session.run())
    await drain(transport, 3)
    replay, resync1, resync2 = transport.sent
    assert (replay["type"], replay["from"], replay["seq"]) == ("update", 3, 4)
    assert resync1["type"] == resync2["type"] == "resync"
    assert resync1["partial"] is False and resync1["seq"] == 4
    session.close()
    await writer


async def test_a_stalled_client_is_coalesced_and_the_others_get_everything():
    hub, session_for, metrics = setup(queue_limit=2)
    stalled, reader = FakeTransport(), FakeTransport()
    stalled.gate.clear()
    sessions = [session_for(stalled), session_for(reader)]
    writers = [asyncio.create_task(s.run()) for s in sessions]
    for session in sessions:
        hub.subscribe(session, "kpi:health")
    for revision in range(1, 21):
        publish(hub, kpi("a", revision, revision), kpi("b", -revision, revision))
        await asyncio.sleep(0)  # the reader's writer runs between batches
    await drain(reader, 21)
    assert [m["seq"] for m in reader.sent[1:]] == list(range(2, 41, 2))
    stalled_session = sessions[0]
    assert stalled_session.coalescing and stalled_session.queued <= 3
    assert metrics.coalesced_updates._value.get() > 0

    stalled.gate.set()  # it reads again: the queued updates, then one partial resync
    await stalled.wait_for(lambda sent: any(m["type"] == "resync" for m in sent))
    resync = next(m for m in stalled.sent if m["type"] == "resync")
    assert resync["partial"] is True and resync["seq"] == 40
    assert sorted((i["series"], i["revision"]) for i in resync["items"]) == [("a", 20), ("b", 20)]
    before = len(stalled.sent)
    publish(hub, kpi("a", 99, 21))  # written at once or queued: it arrives either way
    await drain(stalled, before + 1)
    assert stalled.sent[-1]["from"] == 41  # the sequence goes on after the resync
    for session in sessions:
        session.close()
    await asyncio.gather(*writers)


async def test_a_send_that_never_finishes_closes_the_client_with_4408():
    hub, session_for, metrics = setup(send_timeout=0.05)
    transport = FakeTransport()
    transport.gate.clear()
    session = session_for(transport)
    hub.subscribe(session, "kpi:health")
    await asyncio.wait_for(session.run(), 10)
    assert session.closed and session.close_code == (4408, "too_slow")
    assert metrics.slow_clients_closed._value.get() == 1


async def test_a_gone_client_ends_its_writer():
    hub, session_for, _ = setup()
    transport = FakeTransport()
    transport.gone = True
    session = session_for(transport)
    hub.subscribe(session, "kpi:health")
    await asyncio.wait_for(session.run(), 10)
    assert session.closed and session.close_code is None


def test_unsubscribe_and_drop_stop_the_offers():
    hub, session_for, _ = setup()
    session = session_for(FakeTransport())
    hub.subscribe(session, "kpi:health")
    hub.drop(session)
    assert session.channels == set()
    assert hub.publish([Change("kpi:health", "a", kpi("a", 1))]) == 0


def updates_written(metrics: GatewayMetrics) -> float:
    return float(metrics.messages_pushed.labels("update")._value.get())


async def test_a_reading_client_gets_updates_written_at_once_without_its_writer():
    """No writer task runs: a connection that keeps up takes every update inside publish()."""
    hub, session_for, metrics = setup(queue_limit=2)
    transports = [FakeTransport() for _ in range(3)]
    sessions = [session_for(t) for t in transports]
    for session in sessions:
        hub.subscribe(session, "kpi:health")  # the snapshot too goes straight out
    for revision in range(1, 11):
        publish(hub, kpi("a", revision, revision))
    for transport, session in zip(transports, sessions, strict=True):
        assert [m["type"] for m in transport.sent] == ["snapshot"] + ["update"] * 10
        assert [m["seq"] for m in transport.sent[1:]] == list(range(1, 11))
        assert (transport.direct, transport.waited) == (11, 0)
        assert session.queued == 0 and not session.backed_up
    assert updates_written(metrics) == 30
    assert metrics.items_pushed._value.get() == 30
    assert metrics.updates_queued._value.get() == 0
    count = next(
        s for s in metrics.fanout_seconds.collect()[0].samples if s.name.endswith("_count")
    )
    assert count.value == 10  # one a batch, not one a client


async def test_a_backed_up_connection_queues_and_nothing_overtakes_the_outbox():
    """Once backed up, updates wait in order; direct writes resume only when the outbox is empty."""
    hub, session_for, metrics = setup(queue_limit=100)
    transport = FakeTransport()
    session = session_for(transport)
    writer = asyncio.create_task(session.run())
    hub.subscribe(session, "kpi:health")
    publish(hub, kpi("a", 1, 1))
    transport.gate.clear()  # the socket's buffer is full from here
    for revision in range(2, 6):
        publish(hub, kpi("a", revision, revision))
    assert session.queued >= 3 and session.backed_up
    transport.gate.set()  # room again: but the queued ones go first
    publish(hub, kpi("a", 6, 6))  # queued behind them, not written ahead
    await drain(transport, 7)
    assert [m["seq"] for m in transport.sent[1:]] == [1, 2, 3, 4, 5, 6]
    assert metrics.updates_queued._value.get() == 5
    await transport.wait_for(lambda _sent: not session.backed_up)
    publish(hub, kpi("a", 7, 7))  # the outbox is empty again: written at once
    assert transport.sent[-1]["seq"] == 7 and session.queued == 0
    assert updates_written(metrics) == 7
    session.close()
    await writer


async def test_stalled_clients_cost_the_readers_nothing_in_the_fan_out():
    """With stalled neighbours, every reader gets each update inside the same publish() call."""
    hub, session_for, metrics = setup(queue_limit=4)
    readers = [FakeTransport() for _ in range(5)]
    stalled = [FakeTransport() for _ in range(3)]
    for transport in stalled:
        transport.gate.clear()
    sessions = [session_for(t) for t in readers + stalled]
    writers = [asyncio.create_task(s.run()) for s in sessions]
    for session in sessions:
        hub.subscribe(session, "kpi:health")
    for revision in range(1, 51):
        publish(hub, kpi("a", revision, revision), kpi("b", -revision, revision))
        for transport in readers:  # no await in between: nothing depends on the event loop
            assert transport.sent[-1]["seq"] == 2 * revision
    for transport in readers:
        assert transport.waited == 0 and len(transport.sent) == 51
    for session in sessions[len(readers) :]:
        assert session.coalescing and session.queued <= 5  # bounded: snapshot + 4 updates
    assert metrics.coalesced_updates._value.get() > 0
    for session in sessions:
        session.close()
    for transport in stalled:
        transport.gate.set()
    await asyncio.gather(*writers)


async def test_a_client_gone_during_a_direct_write_is_closed():
    """write_now finding the connection closed ends the session; its writer returns."""
    hub, session_for, _ = setup()
    transport = FakeTransport()
    session = session_for(transport)
    writer = asyncio.create_task(session.run())
    hub.subscribe(session, "kpi:health")
    transport.gone = True
    publish(hub, kpi("a", 1, 1))
    await asyncio.wait_for(writer, 10)
    assert session.closed and session.close_code is None
