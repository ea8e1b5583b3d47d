"""The gateway under hostile input (issue 13): tokens of any bytes, bad client messages,
poison records on its topics, and a screen that stops reading — real gateway, real broker,
real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.test_gateway import is_type, metric, subscribe
from tests.plugins.gateway import GatewayTopics, Producer, alert_transition, kpi_point, make_token

pytestmark = pytest.mark.integration


async def test_hostile_tokens_messages_and_records_never_close_a_screen(
    start_gateway: Any,
    producer: Producer,
    gateway_topics: GatewayTopics,
    ws_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tokens of any bytes close with 4401 token_malformed and one log line without a
    traceback; bad client messages get an `error`; poison records on ioc.kpi and ioc.alerts
    are counted and stepped over while subscribed screens keep their connection and updates."""
    gateway = await start_gateway(heartbeat=1.0, send_timeout=5.0)
    caplog.set_level(logging.INFO, logger="ioc.gateway")

    base = gateway.url.replace("http://", "ws://") + "ws?token="
    for _ in range(20):
        client = await ws_client(base + "iot1.%C3%A9.x")
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv(10)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "token_malformed")
    refused = [r for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(refused) == 1, "refusals are logged at most once a minute per reason"
    assert not [r for r in caplog.records if r.exc_info], "no traceback"

    screen = await ws_client(gateway.ws_url(make_token()))
    await screen.recv_until(is_type("hello"))
    await subscribe(screen, "kpi:health", "alerts")
    for bad, code in (
        ("[" * 30_000 + "]" * 30_000, "bad_json"),
        ('{"type": "ping", "nonce": NaN}', "bad_json"),
        ('{"type": "ping", "nonce": 1e999}', "bad_json"),
        ('{"type": "subscribe", "channels": ["\\ud800"]}', "bad_json"),
        ('{"type": "ping", "nonce": {"a": [1]}}', "bad_message"),
        ("[]", "bad_json"),
    ):
        await screen.connection.send(bad)
        answer = await screen.recv_until(is_type("error"), what=f"an error for {bad[:30]}")
        assert answer["code"] == code
    await screen.send({"type": "ping", "nonce": "still-here"})
    assert (await screen.recv_until(is_type("pong")))["nonce"] == "still-here"

    poison_kpi: list[bytes] = [
        b"not json",
        b"\xff\xfe\x00",
        b"[" * 100_000,
        json.dumps(kpi_point(value=float("nan"))).encode(),  # NaN: what json.dumps writes
        json.dumps(kpi_point() | {"value": "87.5"}).encode(),
        json.dumps(kpi_point() | {"revision": 1e308}).encode(),
        json.dumps(kpi_point() | {"series": "\ud800"}).encode(),
        json.dumps(kpi_point(sector="atlantis")).encode(),
        json.dumps(kpi_point() | {"extra": [float("inf")]}).encode(),
        b'{"kind": "kpi", "value": ' + b"9" * 5000 + b"}",
    ]
    poison_alerts: list[bytes] = [
        b"{",
        json.dumps(alert_transition() | {"value": float("inf")}).encode(),
        json.dumps(alert_transition() | {"note": "\ud800"}).encode(),
        json.dumps(alert_transition() | {"labels": "health"}).encode(),
        json.dumps(alert_transition() | {"seq": "1"}).encode(),
    ]
    mark = len(screen.received)
    await producer.send_raw(gateway_topics.kpi, poison_kpi)
    await producer.send_raw(gateway_topics.alerts, poison_alerts)
    await producer.kpi(kpi_point(value=42.0))
    await producer.alerts(alert_transition(fingerprint="fp-after-poison"))
    update = await screen.recv_until(
        lambda m: m["type"] == "update" and m["channel"] == "kpi:health",
        what="the good point",
        since=mark,
    )
    assert [i["value"] for i in update["items"]] == [42.0]
    await screen.recv_until(
        lambda m: (
            m["type"] == "update"
            and m["channel"] == "alerts"
            and any(i.get("fingerprint") == "fp-after-poison" for i in m["items"])
        ),
        what="the good alert",
        since=mark,
    )

    async def poison_counted() -> bool:
        kpi = await metric(
            gateway, f'ioc_gateway_poison_records_total{{topic="{gateway_topics.kpi}"}}'
        )
        alerts = await metric(
            gateway, f'ioc_gateway_poison_records_total{{topic="{gateway_topics.alerts}"}}'
        )
        return (kpi, alerts) == (len(poison_kpi), len(poison_alerts))

    deadline = time.monotonic() + 30
    while not await poison_counted():
        assert time.monotonic() < deadline, "every poison record counted, per topic"
        await asyncio.sleep(0.2)
    # A screen that subscribes now gets a snapshot holding the good values only.
    late = await ws_client(gateway.ws_url(make_token()))
    await late.recv_until(is_type("hello"))
    snapshots = await subscribe(late, "kpi:health")
    assert [i["value"] for i in snapshots["kpi:health"]["items"]] == [42.0]
    poison_lines = [r for r in caplog.records if "poison record" in r.getMessage()]
    assert len(poison_lines) == 2, "one line per topic, not one per record"
    await screen.send({"type": "ping", "nonce": 1})
    await screen.recv_until(is_type("pong"))


async def test_a_screen_that_stops_reading_is_closed_with_4408(
    start_gateway: Any, ws_client: Any
) -> None:
    """A socket that never reads answers no ping: it is reported as a slow client and
    closed with 4408 after the send timeout, not by a library keepalive's 1011."""
    gateway = await start_gateway(heartbeat=0.5, send_timeout=2.0)
    reader = await ws_client(gateway.ws_url(make_token()), ping_interval=None)
    stalled = await ws_client(gateway.ws_url(make_token()), ping_interval=None)
    for client in (reader, stalled):
        await client.recv_until(is_type("hello"))
    stalled.connection.transport.pause_reading()
    started = time.monotonic()
    while await metric(gateway, "ioc_gateway_slow_clients_closed_total") < 1:
        assert time.monotonic() - started < 30, "the stalled client was never reported"
        await asyncio.sleep(0.1)
    # It reads again and finds the close frame the gateway sent: 4408.
    stalled.connection.transport.resume_reading()
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await stalled.recv(10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4408, "too_slow")
    # The one that reads answers the pings and stays, past several send timeouts.
    await asyncio.sleep(3 * gateway.config.send_timeout)
    await reader.send({"type": "ping", "nonce": 2})
    assert (await reader.recv_until(is_type("pong")))["nonce"] == 2
    assert await metric(gateway, "ioc_gateway_slow_clients_closed_total") == 1
