"""The notifier against the real broker and PostgreSQL, with local channel servers."""

from __future__ import annotations

from functools import partial

import pytest

from tests.plugins.notify import (
    LocalServers,
    NotifyCase,
    deliveries,
    notifier_env,
    publish,
    running_notifier,
    transition,
)
from tests.plugins.services import eventually

pytestmark = pytest.mark.integration


def _settled(case: NotifyCase, expected_rows: int) -> bool:
    """Every expected delivery row exists and none is still pending."""
    rows = deliveries(case.database_url)
    return len(rows) >= expected_rows and all(r["status"] != "pending" for r in rows)


async def test_one_firing_alert_reaches_each_channel_exactly_once(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """One fire: the webhook (HMAC checked), SMTP, Telegram and Zalo servers get one message."""
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap)
    fp = notify_case.fingerprint()
    async with running_notifier(env) as handle:
        await publish(kafka_bootstrap, [transition(fp, 1, sector=notify_case.sector)])
        await eventually(lambda: _settled(notify_case, 4), 60, "four deliveries settled")
        assert handle.metrics is not None

    rows = deliveries(notify_case.database_url)
    assert sorted(r["channel"] for r in rows) == ["email", "telegram", "webhook", "zalo"]
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["idempotency_key"] for r in rows} == {f"{fp}#1"}
    for channel in ("webhook", "email", "telegram", "zalo"):
        got = notify_servers.received(channel)
        assert len(got) == 1, channel
        text = got[0].text
        # Vietnamese first, then English; the fingerprint and the ack command in both.
        assert text.index("NGHIÊM TRỌNG") < text.index("— English —") < text.index("CRITICAL")
        assert "Công suất giường bệnh 97% vượt ngưỡng 95%" in text
        assert f"ioc alerts ack {fp}" in text
        assert "đã 12 phút" in text
    assert notify_servers.bad_signatures == 0
    webhook = notify_servers.received("webhook")[0]
    assert webhook.to == "/hooks/ioc"
    assert webhook.body["items"][0]["idempotency_key"] == f"{fp}#1"
    mail = notify_servers.received("email")[0]
    assert mail.to == "officer@ioc.test"
    assert mail.subject.startswith("[IOC Bình Phước] CẢNH BÁO · NGHIÊM TRỌNG")
    assert notify_servers.received("telegram")[0].to == "1001"
    assert notify_servers.received("zalo")[0].to == "2001"


def _rows_for(case: NotifyCase, key: str) -> list[dict[str, object]]:
    return [r for r in deliveries(case.database_url) if r["idempotency_key"] == key]


def _messages_with(servers: LocalServers, channel: str, fingerprint: str) -> int:
    """How many messages a channel's server accepted that carry this alert."""
    return sum(f"{fingerprint}" in r.text for r in servers.received(channel))


async def test_a_transient_failure_is_retried_and_delivered_once(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """The webhook answers 500 twice, then 200: three attempts, one message accepted."""
    notify_servers.script("webhook", [500, 500])
    notify_servers.script("telegram", [429])  # with retry_after 1 s
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap)
    fp = notify_case.fingerprint()
    async with running_notifier(env) as handle:
        await publish(kafka_bootstrap, [transition(fp, 1, sector=notify_case.sector)])
        await eventually(lambda: _settled(notify_case, 4), 60, "deliveries settled")
    # Metrics move just after the log's commit: read them once the notifier has drained.
    assert (
        handle.registry.get_sample_value("ioc_notifier_retries_total", {"channel": "webhook"}) == 2
    )

    rows = {r["channel"]: r for r in deliveries(notify_case.database_url)}
    assert rows["webhook"]["status"] == "sent"
    assert rows["webhook"]["attempts"] == 3
    assert "HTTP 500" in str(rows["webhook"]["last_error"])
    assert rows["telegram"]["status"] == "sent" and rows["telegram"]["attempts"] == 2
    assert notify_servers.requests("webhook") == 3
    assert len(notify_servers.received("webhook")) == 1
    assert len(notify_servers.received("telegram")) == 1
    assert rows["email"]["attempts"] == rows["zalo"]["attempts"] == 1


async def test_a_4xx_answer_is_permanent_and_not_retried(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """A 400 from Zalo fails the delivery after one attempt; the other channels deliver."""
    notify_servers.script("zalo", [400, 400, 400])
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap)
    async with running_notifier(env) as handle:
        await publish(
            kafka_bootstrap, [transition(notify_case.fingerprint(), 1, sector=notify_case.sector)]
        )
        await eventually(lambda: _settled(notify_case, 4), 60, "deliveries settled")
    failed = handle.registry.get_sample_value(
        "ioc_notifier_notifications_total", {"channel": "zalo", "status": "failed"}
    )
    assert failed == 1
    rows = {r["channel"]: r for r in deliveries(notify_case.database_url)}
    assert rows["zalo"]["status"] == "failed" and rows["zalo"]["attempts"] == 1
    assert "HTTP 400" in str(rows["zalo"]["last_error"])
    assert notify_servers.requests("zalo") == 1
    assert {rows[c]["status"] for c in ("webhook", "email", "telegram")} == {"sent"}


async def test_two_alerts_within_group_wait_go_out_as_one_digest(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """Two fires for one recipient within group_wait (5 s): one message per channel."""
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap, IOC_NOTIFIER_GROUP_WAIT="5")
    first, second = notify_case.fingerprint("a"), notify_case.fingerprint("b")
    async with running_notifier(env) as handle:
        await publish(
            kafka_bootstrap,
            [
                transition(first, 1, sector=notify_case.sector),
                transition(second, 1, sector=notify_case.sector, severity="warning"),
            ],
        )
        await eventually(lambda: _settled(notify_case, 8), 60, "deliveries settled")
    assert handle.registry.get_sample_value("ioc_notifier_digests_total", {"channel": "email"}) == 1

    rows = deliveries(notify_case.database_url)
    assert {r["status"] for r in rows} == {"sent"}
    for channel in ("webhook", "email", "telegram", "zalo"):
        [message] = notify_servers.received(channel)
        assert first in message.text and second in message.text
        assert message.text.index("2 thông báo cảnh báo") < message.text.index("— English —")
        # Both rows of a channel name the same message.
        assert len({r["digest_id"] for r in rows if r["channel"] == channel}) == 1
    webhook = notify_servers.received("webhook")[0]
    # Two keys, two partitions: the digest lists them in the order they were fetched.
    assert sorted(i["fingerprint"] for i in webhook.body["items"]) == sorted([first, second])
    assert notify_servers.received("email")[0].subject.startswith(
        "[IOC Bình Phước] 2 thông báo cảnh báo"
    )


async def test_the_rate_limit_holds_back_excess_per_recipient(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """At most 2 messages per recipient and channel per 10 min: the third warning is held,
    a critical one after it is still sent."""
    env = notifier_env(
        notify_case,
        notify_servers,
        kafka_bootstrap,
        IOC_NOTIFIER_RATE_LIMIT="2",
        IOC_NOTIFIER_RATE_PERIOD="600",
        IOC_NOTIFIER_GROUP_WAIT="0.2",
    )
    fps = [notify_case.fingerprint(name) for name in ("a", "b", "c", "d")]
    async with running_notifier(env) as handle:
        for count, fp in enumerate(fps, 1):
            severity = "critical" if fp == fps[3] else "warning"
            await publish(
                kafka_bootstrap,
                [transition(fp, 1, sector=notify_case.sector, severity=severity)],
            )
            await eventually(partial(_settled, notify_case, 4 * count), 60, f"alert {count}")
    held = handle.registry.get_sample_value(
        "ioc_notifier_notifications_total", {"channel": "telegram", "status": "held"}
    )
    assert held == 1
    for channel in ("webhook", "email", "telegram", "zalo"):
        assert len(notify_servers.received(channel)) == 3, channel
        assert _messages_with(notify_servers, channel, fps[2]) == 0
        assert _messages_with(notify_servers, channel, fps[3]) == 1  # critical: never held
    third = _rows_for(notify_case, f"{fps[2]}#1")
    assert {(r["status"], r["hold_reason"]) for r in third} == {("held", "rate_limited")}


async def test_flapping_and_silenced_transitions_are_recorded_as_held_never_sent(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """A flapping and a silenced fire are held; a normal one after them is delivered."""
    flapping, silenced, normal = (notify_case.fingerprint(n) for n in ("f", "s", "n"))
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap)
    async with running_notifier(env):
        await publish(
            kafka_bootstrap,
            [
                transition(flapping, 1, sector=notify_case.sector, flapping=True),
                transition(silenced, 1, sector=notify_case.sector, silenced_by="sil-7"),
            ],
        )
        await publish(kafka_bootstrap, [transition(normal, 1, sector=notify_case.sector)])
        await eventually(lambda: _settled(notify_case, 12), 60, "deliveries settled")
    reasons = {r["idempotency_key"]: r["hold_reason"] for r in deliveries(notify_case.database_url)}
    assert reasons[f"{flapping}#1"] == "flapping"
    assert reasons[f"{silenced}#1"] == "silenced:sil-7"
    assert reasons[f"{normal}#1"] is None
    for channel in ("webhook", "email", "telegram", "zalo"):
        [message] = notify_servers.received(channel)
        assert normal in message.text and flapping not in message.text


async def test_escalation_reaches_leaders_and_resolve_everyone_notified(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """fire → officer; escalate 1 → Vice-Chairman; escalate 2 → Chairman; resolve → all three."""
    fp = notify_case.fingerprint()
    sector = notify_case.sector
    steps = [
        (transition(fp, 1, sector=sector), 4),
        (transition(fp, 2, "escalate", sector=sector, level=1), 5),
        (transition(fp, 3, "escalate", sector=sector, level=2), 6),
        (transition(fp, 4, "resolve", sector=sector, state="resolved", level=2), 12),
    ]
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap, IOC_NOTIFIER_GROUP_WAIT="0.2")
    async with running_notifier(env):
        for step, rows in steps:
            await publish(kafka_bootstrap, [step])
            await eventually(partial(_settled, notify_case, rows), 60, step.transition)
    by_chat: dict[str, list[str]] = {}
    for message in notify_servers.received("telegram"):
        by_chat.setdefault(message.to, []).append(message.text.splitlines()[1])
    assert by_chat == {
        "1001": ["CẢNH BÁO · NGHIÊM TRỌNG · " + sector, "ĐÃ XỬ LÝ · NGHIÊM TRỌNG · " + sector],
        "1002": [
            f"CHUYỂN CẤP 1 (Phó Chủ tịch UBND tỉnh phụ trách lĩnh vực) · NGHIÊM TRỌNG · {sector}",
            "ĐÃ XỬ LÝ · NGHIÊM TRỌNG · " + sector,
        ],
        "1003": [
            f"CHUYỂN CẤP 2 (Chủ tịch UBND tỉnh) · NGHIÊM TRỌNG · {sector}",
            "ĐÃ XỬ LÝ · NGHIÊM TRỌNG · " + sector,
        ],
    }
    # The officer's other channels heard of the resolution too.
    for channel in ("webhook", "email", "zalo"):
        assert len(notify_servers.received(channel)) == 2


async def test_a_transition_read_again_is_never_sent_again(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """A notifier of a new group re-reads ioc.alerts: sent deliveries are not repeated."""
    fp = notify_case.fingerprint()
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap)
    async with running_notifier(env):
        await publish(kafka_bootstrap, [transition(fp, 1, sector=notify_case.sector)])
        await eventually(lambda: _settled(notify_case, 4), 60, "fire delivered")
    # Lost offsets: a new group reads from the beginning. The resolve (same key, so the same
    # partition, after the fire) proves the fire was read again before we look.
    env["IOC_NOTIFIER_GROUP"] = notify_case.group + "-again"
    async with running_notifier(env):
        await publish(
            kafka_bootstrap,
            [transition(fp, 2, "resolve", sector=notify_case.sector, state="resolved")],
        )
        await eventually(lambda: _settled(notify_case, 8), 60, "resolve delivered")
    for channel in ("webhook", "email", "telegram", "zalo"):
        texts = [m.text.splitlines()[1] for m in notify_servers.received(channel)]
        assert [t.split(" · ")[0] for t in texts] == ["CẢNH BÁO", "ĐÃ XỬ LÝ"], channel


async def test_poison_records_on_ioc_alerts_are_stepped_over(
    notify_case: NotifyCase, notify_servers: LocalServers, kafka_bootstrap: str
) -> None:
    """Records of any bytes before a good transition: counted per topic, never a stuck
    partition (each would once stop the consumer or make it retry its batch forever)."""
    import json

    from foundation.contract.topics import ALERTS
    from tests.plugins.storage import produce

    fp = notify_case.fingerprint()
    good = transition(fp, 1, sector=notify_case.sector).to_json()
    poison: list[bytes] = [
        b"\xff",
        b"[" * 100_000,  # deeper than the JSON parser goes
        b'{"seq": ' + b"9" * 5000 + b"}",  # more digits than int() takes
        json.dumps(good | {"note": "a\u0000b"}).encode(),  # NUL: jsonb cannot hold it
        json.dumps(good | {"message_vi": "\ud800"}).encode(),  # not encodable as UTF-8
        json.dumps(good | {"seq": 2**40}).encode(),  # beyond the delivery log's integer
        json.dumps(good | {"at": float("nan")}).encode(),
    ]
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap)
    async with running_notifier(env) as handle:
        await produce(kafka_bootstrap, [(ALERTS, fp, raw) for raw in poison])
        await publish(kafka_bootstrap, [transition(fp, 1, sector=notify_case.sector)])
        await eventually(lambda: _settled(notify_case, 4), 60, "the good transition delivered")
        poisoned = handle.registry.get_sample_value(
            "ioc_notifier_poison_records_total", {"topic": ALERTS}
        )
        assert poisoned is not None and poisoned >= len(poison)
        assert handle.healthy()
    assert {r["idempotency_key"] for r in deliveries(notify_case.database_url)} == {f"{fp}#1"}
