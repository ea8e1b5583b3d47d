"""The notifier against the real broker and PostgreSQL, with local channel servers."""

from __future__ import annotations

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
