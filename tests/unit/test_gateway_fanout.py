"""Fan-out: sequence logs and resume, bounded outboxes, coalescing, slow-client closing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import CollectorRegistry

from consumers.gateway.fanout import ChannelLog, ClientGoneError, ClientSession, Hub
from consumers.gateway.metrics import GatewayMetrics
from consumers.gateway.state import Change, GatewayState


class FakeTransport:
    """Records what is sent; `gate` cleared means the client stopped reading."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.gone = False
        self.arrived = asyncio.Event()

    async def send(self, frame: str) -> None:
        await self.gate.wait()
        if self.gone:
            raise ClientGoneError("closed")
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
    publish(hub, kpi("a", 99, 21))
    await drain(stalled, len(stalled.sent) + 1)
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
