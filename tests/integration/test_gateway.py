"""The gateway protocol with real WebSocket clients, a real gateway and the real broker."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from foundation.contract.catalog import load_catalog
from foundation.contract.schemas import schema_documents
from tests.plugins.gateway import (
    GatewayTopics,
    Producer,
    alert_transition,
    kpi_point,
    make_token,
)
from tests.plugins.services import read_records

pytestmark = pytest.mark.integration


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  (our http:// URL)
        return str(response.read().decode())


def is_type(kind: str, channel: str | None = None) -> Any:
    return lambda m: m["type"] == kind and (channel is None or m.get("channel") == channel)


async def metric(gateway: Any, name: str) -> float:
    """One unlabelled sample of the gateway's /metrics (0 when absent)."""
    text = await asyncio.to_thread(http_get, gateway.url + "metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def metric_settles_at(gateway: Any, name: str, expected: float) -> None:
    """Wait (30 s at most) for a gauge of /metrics to read `expected`."""
    deadline = time.monotonic() + 30
    while (found := await metric(gateway, name)) != expected:
        assert time.monotonic() < deadline, f"{name} stayed {found}, expected {expected}"
        await asyncio.sleep(0.1)


async def subscribe(client: Any, *channels: str) -> dict[str, dict[str, Any]]:
    """Subscribe and collect one snapshot per channel the gateway confirms."""
    await client.send({"type": "subscribe", "channels": list(channels)})
    confirmed = await client.recv_until(is_type("subscribed"), what="subscribed")
    snapshots: dict[str, dict[str, Any]] = {}
    while len(snapshots) < len(confirmed["channels"]):
        message = await client.recv_until(is_type("snapshot"), what="a snapshot")
        snapshots[message["channel"]] = message
    return snapshots


async def test_snapshot_then_updates_in_sequence(start_gateway, producer: Producer, ws_client):
    """A subscriber gets the latest point per series, then every new point with seq + 1."""
    await producer.kpi(
        kpi_point(group="*", value=70.0, revision=0),
        kpi_point(group="*", value=72.0, revision=1),
        kpi_point(kpi="er_admissions_per_hour", group="dong-xoai", value=5),
    )
    gateway = await start_gateway()
    client = await ws_client(gateway.ws_url(make_token()))
    hello = await client.recv_until(is_type("hello"), what="hello")
    assert hello["role"] == "wall" and hello["may_act"] is False
    snapshots = await subscribe(client, "kpi:health", "kpi:traffic")
    health = snapshots["kpi:health"]
    assert health["epoch"] == hello["epoch"]
    by_series = {item["series"]: item for item in health["items"]}
    assert by_series["health.bed_occupancy_pct|*"]["value"] == 72.0
    assert by_series["health.bed_occupancy_pct|*"]["revision"] == 1
    assert [s[1] for s in by_series["health.bed_occupancy_pct|*"]["spark"]] == [72.0]
    assert by_series["health.er_admissions_per_hour|dong-xoai"]["value"] == 5
    assert snapshots["kpi:traffic"]["items"] == []

    seq = health["seq"]
    for value in (74.0, 75.0, 76.0):
        await producer.kpi(kpi_point(value=value, revision=int(value)))
        update = await client.recv_until(is_type("update", "kpi:health"), what="an update")
        assert update["from"] == seq + 1
        seq = update["seq"]
        assert update["items"][-1]["value"] == value


async def test_duplicates_and_old_revisions_are_not_pushed(
    start_gateway, producer: Producer, ws_client
):
    """At-least-once input: a repeated (series, window, revision) changes nothing."""
    gateway = await start_gateway()
    client = await ws_client(gateway.ws_url(make_token()))
    await client.recv_until(is_type("hello"))
    snapshot = (await subscribe(client, "kpi:health"))["kpi:health"]
    point = kpi_point(value=81.0, revision=3)
    await producer.kpi(
        point, point, kpi_point(value=60.0, revision=2), kpi_point(value=82.0, revision=4)
    )
    items: list[dict[str, Any]] = []
    while not any(i["revision"] == 4 for i in items):
        update = await client.recv_until(is_type("update", "kpi:health"))
        items.extend(update["items"])
    assert [(i["revision"], i["value"]) for i in items] == [(3, 81.0), (4, 82.0)]
    assert update["seq"] == snapshot["seq"] + 2


async def test_resume_replays_the_gap_from_the_buffer(start_gateway, producer: Producer, ws_client):
    """A client that reconnects with its last seq gets exactly what it missed."""
    gateway = await start_gateway()
    token = make_token()
    first = await ws_client(gateway.ws_url(token))
    hello = await first.recv_until(is_type("hello"))
    snapshot = (await subscribe(first, "kpi:health"))["kpi:health"]
    await producer.kpi(kpi_point(value=1.0, revision=1))
    update = await first.recv_until(is_type("update", "kpi:health"))
    last_seen = update["seq"]
    assert last_seen == snapshot["seq"] + 1
    await first.close()

    await producer.kpi(kpi_point(value=2.0, revision=2), kpi_point(value=3.0, revision=3))
    # Wait until the gateway has them (a second subscriber sees them in its snapshot).
    probe = await ws_client(gateway.ws_url(token))
    await probe.recv_until(is_type("hello"))
    deadline = time.monotonic() + 30
    while True:
        snap = (await subscribe(probe, "kpi:health"))["kpi:health"]
        if snap["seq"] >= last_seen + 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert snap["seq"] == last_seen + 2

    second = await ws_client(gateway.ws_url(token))
    await second.recv_until(is_type("hello"))
    await second.send(
        {"type": "resume", "epoch": hello["epoch"], "channels": {"kpi:health": last_seen}}
    )
    replay = await second.recv_until(is_type("update", "kpi:health"), what="the replay")
    assert (replay["from"], replay["seq"]) == (last_seen + 1, last_seen + 2)
    assert [i["value"] for i in replay["items"]] == [2.0, 3.0]


async def test_resume_beyond_the_buffer_or_epoch_falls_back_to_a_snapshot(
    start_gateway, producer: Producer, ws_client
):
    """A gap the buffer no longer holds, or another gateway's epoch, gets a full resync."""
    gateway = await start_gateway(resume_buffer=2)
    token = make_token()
    client = await ws_client(gateway.ws_url(token))
    hello = await client.recv_until(is_type("hello"))
    await subscribe(client, "kpi:health")
    await producer.kpi(*(kpi_point(value=float(v), revision=v) for v in range(1, 6)))
    seen = 0
    while seen < 5:
        update = await client.recv_until(is_type("update", "kpi:health"))
        seen += len(update["items"])
    current = update["seq"]

    for epoch, seq in ((hello["epoch"], current - 4), ("another-epoch", current)):
        other = await ws_client(gateway.ws_url(token))
        await other.recv_until(is_type("hello"))
        await other.send({"type": "resume", "epoch": epoch, "channels": {"kpi:health": seq}})
        resync = await other.recv_until(is_type("resync", "kpi:health"), what="a resync")
        assert resync["partial"] is False and resync["seq"] == current
        assert [i["value"] for i in resync["items"]] == [5.0]


async def test_client_asks_for_a_resync_after_a_gap(start_gateway, producer: Producer, ws_client):
    """`resync` returns the channel's full state at its current sequence."""
    await producer.kpi(kpi_point(value=42.0))
    gateway = await start_gateway()
    client = await ws_client(gateway.ws_url(make_token()))
    await client.recv_until(is_type("hello"))
    snapshot = (await subscribe(client, "kpi:health"))["kpi:health"]
    await client.send({"type": "resync", "channel": "kpi:health"})
    resync = await client.recv_until(is_type("resync", "kpi:health"))
    assert resync["seq"] == snapshot["seq"]
    assert [i["value"] for i in resync["items"]] == [42.0]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "token_missing"),
        ("not-a-token", "token_malformed"),
        (make_token()[:-4] + "AAAA", "token_bad_signature"),
        (make_token(ttl=1, now=time.time() - 10), "token_expired"),
    ],
)
async def test_bad_tokens_are_refused_with_4401(start_gateway, ws_client, token, reason):
    """No valid token, no data: the socket closes with 4401 and a reason code."""
    from websockets.exceptions import ConnectionClosed

    gateway = await start_gateway()
    client = await ws_client(gateway.ws_url(token))
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv(10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, reason)


async def test_token_for_an_unknown_sector_is_refused_with_4403(start_gateway, ws_client):
    """A token scoped to a sector this catalog does not have is forbidden."""
    from websockets.exceptions import ConnectionClosed

    gateway = await start_gateway()
    client = await ws_client(gateway.ws_url(make_token(sectors=["atlantis"])))
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_sector_scope_is_enforced(start_gateway, producer: Producer, ws_client):
    """A health-only token reads health channels only, and only health alerts."""
    health_alert = alert_transition(sector="health")
    traffic_alert = alert_transition(sector="traffic")
    await producer.alerts(health_alert, traffic_alert)
    gateway = await start_gateway()
    client = await ws_client(gateway.ws_url(make_token(role="officer", sectors=["health"])))
    await client.recv_until(is_type("hello"))
    await client.send({"type": "subscribe", "channels": ["kpi:traffic"]})
    denied = await client.recv_until(is_type("error"))
    assert denied["code"] == "forbidden_channel"
    snapshots = await subscribe(client, "kpi:*", "alerts")
    assert set(snapshots) == {"kpi:health", "alerts:health"}
    fingerprints = [a["fingerprint"] for a in snapshots["alerts:health"]["items"]]
    assert fingerprints == [health_alert["fingerprint"]]
    # and it may not act on the other sector's alert
    await client.send(
        {
            "type": "action",
            "request_id": "r1",
            "action": "ack",
            "fingerprint": traffic_alert["fingerprint"],
        }
    )
    result = await client.recv_until(is_type("action_result"))
    assert (result["ok"], result["code"]) == (False, "forbidden_sector")


async def test_officer_ack_is_published_as_an_alert_action(
    start_gateway,
    producer: Producer,
    ws_client,
    kafka_bootstrap: str,
    gateway_topics: GatewayTopics,
):
    """An officer's ack goes to the actions topic, signed with the token's name; a wall's not."""
    alert = alert_transition()
    await producer.alerts(alert)
    gateway = await start_gateway()
    wall = await ws_client(gateway.ws_url(make_token(role="wall")))
    await wall.recv_until(is_type("hello"))
    await wall.send(
        {"type": "action", "request_id": "w1", "action": "ack", "fingerprint": alert["fingerprint"]}
    )
    refused = await wall.recv_until(is_type("action_result"))
    assert (refused["ok"], refused["code"]) == (False, "forbidden_action")

    officer = await ws_client(gateway.ws_url(make_token(role="officer", name="Nguyễn Văn An")))
    hello = await officer.recv_until(is_type("hello"))
    assert hello["may_act"] is True
    await officer.send(
        {
            "type": "action",
            "request_id": "o1",
            "action": "ack",
            "fingerprint": alert["fingerprint"],
            "note": "đang xử lý",
        }
    )
    result = await officer.recv_until(is_type("action_result"))
    assert result["ok"] is True, result

    from foundation.contract.alerts import AlertAction

    records = await read_records(
        kafka_bootstrap, gateway_topics.actions, until=lambda r: len(r) >= 1, timeout=30
    )
    assert len(records) == 1
    action = AlertAction.decode(records[0].value)
    contract = schema_documents(load_catalog())["schemas/topics/ioc.alert-actions.json"]
    Draft202012Validator(contract).validate(json.loads(records[0].value))
    assert records[0].key == alert["fingerprint"].encode()
    assert (action.action, action.by, action.fingerprint, action.note) == (
        "ack",
        "Nguyễn Văn An",
        alert["fingerprint"],
        "đang xử lý",
    )
    assert action.action_id == result["action_id"]


async def test_alerts_channel_tracks_open_alerts(start_gateway, producer: Producer, ws_client):
    """Transitions stream in order; a resolved alert leaves the snapshot; old seqs are dropped."""
    gateway = await start_gateway()
    client = await ws_client(gateway.ws_url(make_token()))
    await client.recv_until(is_type("hello"))
    await subscribe(client, "alerts")
    fp = "fp-lifecycle"
    await producer.alerts(alert_transition(fp, seq=1))
    await producer.alerts(
        alert_transition(fp, seq=2, state="acknowledged", transition="ack", acknowledged_by="An")
    )
    await producer.alerts(alert_transition(fp, seq=1))  # a replayed duplicate
    states: list[tuple[int, str]] = []
    while len(states) < 2:
        update = await client.recv_until(is_type("update", "alerts"))
        states += [(i["seq"], i["state"]) for i in update["items"]]
    assert states == [(1, "firing"), (2, "acknowledged")]
    await producer.alerts(alert_transition(fp, seq=3, state="resolved", transition="resolve"))
    update = await client.recv_until(is_type("update", "alerts"))
    assert update["items"][0]["state"] == "resolved"
    other = await ws_client(gateway.ws_url(make_token()))
    await other.recv_until(is_type("hello"))
    assert (await subscribe(other, "alerts"))["alerts"]["items"] == []


async def test_slow_client_is_coalesced_and_never_delays_the_others(
    start_gateway, producer: Producer, ws_client
):
    """A client that stops reading gets a partial resync later; a reading client keeps up."""
    gateway = await start_gateway(queue_limit=4, send_timeout=120.0)
    token = make_token()
    # A small receive buffer and no reading: the server's sends back up quickly.
    slow = await ws_client(gateway.ws_url(token), max_queue=1)
    fast = await ws_client(gateway.ws_url(token))
    for client in (slow, fast):
        await client.recv_until(is_type("hello"))
        await subscribe(client, "kpi:health")
    slow.connection.transport.pause_reading()

    groups = [f"g{i:03d}" for i in range(60)]
    padding = "x" * 16000  # large items fill the socket buffers fast

    async def coalesced() -> float:
        return await metric(gateway, "ioc_gateway_coalesced_updates_total")

    round_ = -1
    while round_ < 2 or await coalesced() == 0:
        round_ += 1
        assert round_ < 200, "the slow client never filled its outbox"
        points = []
        for group in groups:
            point = kpi_point(
                kpi="er_admissions_per_hour", group=group, value=round_, revision=round_
            )
            point["padding"] = padding
            points.append(point)
        await producer.kpi(*points)
        # the reading client sees every round promptly, stalled neighbour or not
        seen: set[str] = set()
        while len(seen) < len(groups):
            update = await fast.recv_until(is_type("update", "kpi:health"), timeout=30)
            seen |= {i["series"] for i in update["items"] if i["revision"] == round_}
    last_round = round_
    # Only the stalled client is backed up; the reader's updates go straight to its socket.
    await metric_settles_at(gateway, "ioc_gateway_clients_coalescing", 1)
    await metric_settles_at(gateway, "ioc_gateway_clients_backed_up", 1)

    # The slow client reads again: it catches up through a partial resync holding the latest.
    slow.connection.transport.resume_reading()
    latest: dict[str, int] = {}
    deadline = time.monotonic() + 60
    saw_resync = False
    while time.monotonic() < deadline and (
        len(latest) < len(groups) or min(latest.values()) < last_round
    ):
        message = await slow.recv(30)
        if message["type"] == "resync":
            saw_resync = True
            assert message["partial"] is True
        if message["type"] in ("update", "resync"):
            for item in message["items"]:
                latest[item["series"]] = item["revision"]
    assert saw_resync
    assert set(latest.values()) == {last_round}


async def test_updates_to_reading_clients_are_written_without_queueing(
    start_gateway, producer: Producer, ws_client
):
    """Clients that keep up get every update written at once: no outbox, no coalescing."""
    gateway = await start_gateway()
    clients = [await ws_client(gateway.ws_url(make_token())) for _ in range(3)]
    for client in clients:
        await client.recv_until(is_type("hello"))
        await subscribe(client, "kpi:health")
    groups = [f"g{i:02d}" for i in range(20)]
    for revision in range(5):
        await producer.kpi(*(kpi_point(group=g, value=revision, revision=revision) for g in groups))
    for client in clients:
        latest: dict[str, int] = {}
        while len(latest) < len(groups) or min(latest.values()) < 4:
            update = await client.recv_until(is_type("update", "kpi:health"))
            latest |= {i["series"]: i["revision"] for i in update["items"]}
    pushed = await metric(gateway, 'ioc_gateway_messages_pushed_total{type="update"}')
    assert pushed >= 3  # at least one update message per client
    assert await metric(gateway, "ioc_gateway_items_pushed_total") >= 3 * len(groups) * 5
    assert await metric(gateway, "ioc_gateway_updates_queued_total") == 0
    assert await metric(gateway, "ioc_gateway_coalesced_updates_total") == 0
    await metric_settles_at(gateway, "ioc_gateway_clients_backed_up", 0)


async def test_http_endpoints(start_gateway):
    """The same port serves the page, its config, /healthz with client counts, and /metrics."""
    gateway = await start_gateway()

    def get(path: str) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(gateway.url + path, timeout=10) as response:  # noqa: S310
            return response.status, response.headers["Content-Type"], response.read()

    status, kind, body = await asyncio.to_thread(get, "")
    assert status == 200 and kind.startswith("text/html") and b'charset="utf-8"' in body
    assert b'<link rel="icon" href="data:,">' in body  # no /favicon.ico request from the page
    status, kind, body = await asyncio.to_thread(get, "favicon.ico")
    assert (status, body) == (204, b"")  # and none is an error for a browser that asks
    status, kind, body = await asyncio.to_thread(get, "config.json")
    config = json.loads(body)
    assert len(config["sectors"]) == 11
    assert all(2 <= len(s["kpis"]) <= 3 for s in config["sectors"])
    assert config["sectors"][0]["name_vi"] == "Y tế"
    status, kind, body = await asyncio.to_thread(get, "healthz")
    health = json.loads(body)
    assert health["ok"] is True and health["walls"] == 0
    status, kind, body = await asyncio.to_thread(get, "metrics")
    assert b"ioc_gateway_push_latency_seconds" in body
    # The Kafka contract for integrators: the AsyncAPI document and the JSON Schemas.
    status, kind, body = await asyncio.to_thread(get, "asyncapi.json")
    assert status == 200 and kind.startswith("application/json")
    assert json.loads(body)["asyncapi"] == "3.0.0"
    status, kind, body = await asyncio.to_thread(get, "schemas/")
    paths = [d["path"] for d in json.loads(body)["documents"]]
    assert "schemas/topics/ioc.events.health.json" in paths
    status, kind, body = await asyncio.to_thread(get, "schemas/topics/ioc.kpi.json")
    assert kind.startswith("application/schema+json") and json.loads(body)["oneOf"]
