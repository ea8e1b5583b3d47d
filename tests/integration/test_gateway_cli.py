"""`ioc tokens create` and `ioc gateway` as the operator runs them (real processes)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.test_gateway import http_get, is_type
from tests.plugins.gateway import make_token
from tests.plugins.services import wait_until

pytestmark = pytest.mark.integration


def test_tokens_create_signs_with_a_secret_kept_in_the_state_dir(ioc_cli, state_dir: Path):
    """Without IOC_GATEWAY_TOKEN_SECRET the secret is generated once, owner-only."""
    env = {"IOC_STATE_DIR": str(state_dir)}
    first = ioc_cli("tokens", "create", "--role", "wall", "--name", "Màn hình 1", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("iot1.") and first.stdout.count("\n") == 1
    assert "wall token for 'Màn hình 1' (every sector)" in first.stderr
    secret = state_dir / "gateway-token.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    before = secret.read_text()
    claims = ioc_cli(
        "tokens",
        "create",
        "--role",
        "officer",
        "--name",
        "An",
        "--sectors",
        "health,traffic",
        "--ttl",
        "12h",
        "--json",
        env=env,
    )
    assert claims.returncode == 0, claims.stderr
    parsed = json.loads(claims.stdout)
    assert (parsed["role"], parsed["sectors"]) == ("officer", ["health", "traffic"])
    assert parsed["exp"] - parsed["iat"] == 12 * 3600
    assert secret.read_text() == before
    url = ioc_cli(
        "tokens",
        "create",
        "--role",
        "wall",
        "--name",
        "W",
        "--url",
        env={**env, "IOC_GATEWAY_PORT": "8123"},
    )
    assert re.fullmatch(r"http://127\.0\.0\.1:8123/\?token=iot1\.\S+\n", url.stdout)


def test_tokens_url_names_the_gateway_a_running_ioc_up_serves(ioc_cli, state_dir: Path):
    """IOC_PUBLIC_URL, else IOC_GATEWAY_PORT set here, else the gateway `ioc up` recorded."""
    runtime = {
        "bootstrap_servers": "127.0.0.1:9", "database_url": "postgresql://x@127.0.0.1:9/x",
        "broker_mode": "embedded", "database_mode": "embedded", "owner_pid": os.getpid(),
        "gateway_address": "127.0.0.1:18123",
    }  # fmt: skip
    (state_dir / "runtime.json").write_text(json.dumps(runtime))
    env = {"IOC_STATE_DIR": str(state_dir)}
    args = ("tokens", "create", "--role", "wall", "--name", "W", "--url")
    for extra, base in (
        ({}, "http://127.0.0.1:18123"),
        ({"IOC_GATEWAY_PORT": "8123"}, "http://127.0.0.1:8123"),
        ({"IOC_GATEWAY_HOST": "10.0.0.5"}, "http://10.0.0.5:18123"),  # each part on its own
        ({"IOC_PUBLIC_URL": "https://ioc.binhphuoc.gov.vn/"}, "https://ioc.binhphuoc.gov.vn"),
    ):
        url = ioc_cli(*args, env={**env, **extra})
        assert url.stdout.startswith(f"{base}/?token=iot1."), (extra, url)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--role", "officer", "--name", "An", "--sectors", "atlantis"], "unknown_sector"),
        (["--role", "wall", "--name", "W", "--ttl", "forever"], "bad_setting"),
        (["--role", "wall", "--name", "  "], "bad_setting"),
    ],
)
def test_tokens_create_errors_are_one_line(ioc_cli, state_dir: Path, args, code):
    result = ioc_cli("tokens", "create", *args, env={"IOC_STATE_DIR": str(state_dir)})
    assert result.returncode == 1
    assert result.stderr.startswith(f"ioc: error [{code}]") and "Traceback" not in result.stderr


def test_ioc_gateway_serves_with_cli_tokens_and_stops_on_sigterm(
    ioc_cli,
    ioc_process,
    state_dir: Path,
    kafka_bootstrap: str,
    contract_topics: list[str],
    fresh_database: str,
):
    """The real command: ready line, wall URL, token check, /healthz counts walls, clean stop."""
    env = {
        "IOC_STATE_DIR": str(state_dir),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": fresh_database,
        "IOC_GATEWAY_REPLAY_SECONDS": "5",
    }
    gateway = ioc_process("gateway", "--port", "0", env=env)
    gateway.wait_for_output("ready:", timeout=90)
    match = re.search(r"gateway: wall (http://127\.0\.0\.1:\d+/)", gateway.output())
    assert match, gateway.output()
    url = match.group(1)
    token = ioc_cli("tokens", "create", "--role", "wall", "--name", "Sảnh chính", env=env).stdout
    ws_url = url.replace("http://", "ws://") + "ws?token="

    async def scenario() -> None:
        async with connect(ws_url + token.strip(), compression=None) as wall:
            hello = json.loads(await asyncio.wait_for(wall.recv(), 30))
            assert is_type("hello")(hello) and hello["name"] == "Sảnh chính"
            health = json.loads(await asyncio.to_thread(http_get, url + "healthz"))
            assert health["walls"] == 1 and health["clients"] == {"wall": 1}
        async with connect(ws_url + make_token(), compression=None) as stranger:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(stranger.recv(), 30)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                4401,
                "token_bad_signature",
            )

    asyncio.run(scenario())
    gateway.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: gateway.proc.poll() is not None, 30, "the gateway to stop")
    assert gateway.proc.returncode == 0, gateway.output()
    assert "stopped" in gateway.output() and "Traceback" not in gateway.output()
