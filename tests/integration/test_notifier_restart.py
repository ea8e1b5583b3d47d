"""`ioc notifier` as a real process: SIGKILL mid-scenario loses and doubles nothing."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest

from tests.plugins.notify import (
    LocalServers,
    NotifyCase,
    deliveries,
    notifier_env,
    publish,
    transition,
)
from tests.plugins.services import CliResult, IocProcess, eventually

pytestmark = pytest.mark.integration

CHANNELS = ("webhook", "email", "telegram", "zalo")


def _count(case: NotifyCase, status: str, keys: set[str]) -> int:
    return sum(
        1
        for r in deliveries(case.database_url)
        if r["status"] == status and r["idempotency_key"] in keys
    )


async def test_sigkill_and_restart_neither_loses_nor_duplicates(
    notify_case: NotifyCase,
    notify_servers: LocalServers,
    kafka_bootstrap: str,
    ioc_process: Callable[..., IocProcess],
) -> None:
    """Kill -9 while two alerts wait in group_wait and a third is unread; restart; count."""
    # group_wait 8 s: b and c stay pending long enough to be killed in that state.
    env = notifier_env(notify_case, notify_servers, kafka_bootstrap, IOC_NOTIFIER_GROUP_WAIT="8")
    sector = notify_case.sector
    a, b, c, d = (notify_case.fingerprint(n) for n in "abcd")

    first = ioc_process("notifier", env=env)
    first.wait_for_output("ready:", timeout=90)
    await publish(kafka_bootstrap, [transition(a, 1, sector=sector)])
    await eventually(lambda: _count(notify_case, "sent", {f"{a}#1"}) == 4, 60, "a delivered")

    # b and c recorded as pending (their group_wait is running): kill the notifier right then.
    await publish(
        kafka_bootstrap, [transition(b, 1, sector=sector), transition(c, 1, sector=sector)]
    )
    keys = {f"{b}#1", f"{c}#1"}
    await eventually(lambda: _count(notify_case, "pending", keys) == 8, 60, "b, c recorded")
    first.proc.kill()
    first.proc.wait(10)
    assert _count(notify_case, "sent", keys) == 0
    # d arrives while no notifier runs.
    await publish(kafka_bootstrap, [transition(d, 1, sector=sector)])

    second = ioc_process("notifier", env=env)
    second.wait_for_output("ready:", timeout=90)
    every = {f"{fp}#1" for fp in (a, b, c, d)}
    try:
        await eventually(lambda: _count(notify_case, "sent", every) == 16, 90, "all delivered")
    except AssertionError:  # say why: the notifier's log and the delivery log
        print(second.output()[-5000:])
        for row in deliveries(notify_case.database_url):
            print(row)
        raise

    for channel in CHANNELS:
        seen: Counter[str] = Counter()
        for message in notify_servers.received(channel):
            for fp in (a, b, c, d):
                seen[fp] += fp in message.text
        assert seen == Counter({a: 1, b: 1, c: 1, d: 1}), (channel, seen)
    webhook_items = Counter(
        item["idempotency_key"]
        for message in notify_servers.received("webhook")
        for item in message.body["items"]
    )
    assert webhook_items == Counter(dict.fromkeys(every, 1))
    assert notify_servers.bad_signatures == 0
    metrics_url = re.search(r"notifier metrics: (\S+)", second.output())
    assert metrics_url is not None
    # b, c and d went out after the restart: 3 deliveries per channel (metrics move just
    # after the log's commit, so poll).
    exported = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(metrics_url.group(1).replace("/metrics", "/healthz")) as health:
            assert health.status == 200
        for _ in range(300):
            async with http.get(metrics_url.group(1)) as response:
                exported = await response.text()
            if 'ioc_notifier_notifications_total{channel="zalo",status="sent"} 3.0' in exported:
                break
            await asyncio.sleep(0.1)
    assert 'ioc_notifier_notifications_total{channel="zalo",status="sent"} 3.0' in exported
    assert "ioc_notifier_delivery_latency_seconds_bucket" in exported
    second.proc.terminate()
    assert second.proc.wait(30) == 0
    assert "stopped" in second.output()


def test_check_reports_a_bad_routing_file_in_one_line_and_its_problems(
    ioc_cli: Callable[..., CliResult], tmp_path
) -> None:
    """`ioc notifier --check` on a broken file: exit 1, [routing_invalid], file:line problems."""
    path = tmp_path / "routing.yaml"
    path.write_text(
        "version: 1\nrecipients:\n  - {id: a, name: A, telegram: '1'}\n"
        "routes:\n  - {role: duty_officer, notify: [b]}\n",
        encoding="utf-8",
    )
    result = ioc_cli("notifier", "--check", "--routing", str(path))
    assert result.returncode == 1
    first, *problems = result.stderr.strip().splitlines()
    assert first.startswith("ioc: error [routing_invalid] routing ")
    assert "Traceback" not in result.stderr
    assert any(f"{path}:" in p and "unknown recipient or group 'b'" in p for p in problems)
    ok = ioc_cli("notifier", "--check")
    assert ok.returncode == 0, ok.stderr
    assert "ok · 10 recipients" in ok.stdout
