"""`ioc up`, `ioc status` and `ioc topics create` as a user runs them, against real services."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from foundation.contract.catalog import load_catalog
from ioc.embedded import EmbeddedBroker
from ioc.embedded._process import PidRecord, read_pid_file
from ioc.embedded.postgres import timescaledb_files
from ioc.topics import contract_topics
from tests.plugins.services import CliResult, IocProcess, run_sync, wait_until

pytestmark = pytest.mark.integration

ALL_TOPICS = contract_topics(load_catalog())

Cli = Callable[..., CliResult]
StartIoc = Callable[..., IocProcess]


def _runtime(state_dir: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((state_dir / "runtime.json").read_text())
    return data


def _record(state_dir: Path, name: str) -> PidRecord:
    record = read_pid_file(state_dir / f"{name}.pid")
    assert record is not None, f"no {name}.pid in {state_dir}"
    return record


def test_topics_create_twice_is_idempotent(ioc_cli: Cli, kafka_bootstrap: str) -> None:
    """The second run creates nothing and fails on nothing."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "IOC_TOPIC_PARTITIONS": "4"}
    first = ioc_cli("topics", "create", env=env)
    second = ioc_cli("topics", "create", env=env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "ioc.events.health" in second.stdout and "ioc.alert-actions" in second.stdout
    assert f"topics: 0 created, {len(ALL_TOPICS)} already existed" in second.stdout
    lines = [line for run in (first, second) for line in run.stdout.splitlines()]
    epochs = [line for line in lines if line.startswith("broker epoch:")]
    assert len(epochs) == 2 and epochs[0] == epochs[1]  # written once, then read back


def test_up_status_kill_and_restart_leave_no_orphans(
    ioc_cli: Cli, ioc_process: StartIoc, state_dir: Path
) -> None:
    """SIGKILL of `ioc up` takes its broker and PostgreSQL along; the data survives a restart.
    The embedded PostgreSQL runs TimescaleDB (preloaded) when its installation has it, and the
    schema takes that path; `ioc status` names the path and the extension's version."""
    state = state_dir
    env = {"IOC_STATE_DIR": str(state), "IOC_POSTGRES_SHARED_BUFFERS": "48MiB"}
    up = ioc_process("up", "--services-only", env=env)
    up.wait_for_output("ready:")

    status = ioc_cli("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["broker"]["reachable"] and report["broker"]["mode"] == "embedded"
    assert report["database"]["reachable"] and report["database"]["mode"] == "embedded"
    assert report["database"]["version"].startswith("PostgreSQL ")
    assert report["topics"]["present"] == report["topics"]["expected"] == len(ALL_TOPICS)
    timescale = timescaledb_files()
    details = report["database"]["details"]
    if timescale is not None:
        assert details["storage_path"] == "timescaledb" and details["timescaledb_preloaded"]
        assert details["timescaledb_version"] == timescale.version
        assert f"storage path timescaledb (TimescaleDB {timescale.version})" in up.output()
        expected = f"storage path: timescaledb (TimescaleDB {timescale.version})"
    else:
        assert details["storage_path"] == "plain-postgresql"
        assert details["timescaledb_version"] is None
        expected = "storage path: plain-postgresql (TimescaleDB not installed on this server)"
    text = ioc_cli("status", env=env)
    assert expected in text.stdout, text.stdout

    url = str(_runtime(state)["database_url"])
    with psycopg.connect(url) as conn:
        assert conn.execute("SHOW shared_buffers").fetchone() == ("48MB",)
        conn.execute("CREATE TABLE survives (note text)")
        conn.execute("INSERT INTO survives VALUES ('còn đây')")
    broker, postgres = _record(state, "broker"), _record(state, "postgres")

    os.kill(up.proc.pid, signal.SIGKILL)
    up.proc.wait(10)
    wait_until(lambda: not broker.alive() and not postgres.alive(), 20, "children to die with ioc")

    again = ioc_process("up", "--services-only", env=env)
    again.wait_for_output("ready:")
    with psycopg.connect(str(_runtime(state)["database_url"])) as conn:
        assert conn.execute("SELECT note FROM survives").fetchall() == [("còn đây",)]
    broker2, postgres2 = _record(state, "broker"), _record(state, "postgres")

    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(15) == 0, again.output()
    assert "stopped" in again.output()
    assert not broker2.alive() and not postgres2.alive()
    assert not (state / "runtime.json").exists()

    after = ioc_cli("status", env=env)
    assert after.returncode == 1
    assert "not running" in after.stdout


def test_a_stale_broker_from_a_crash_is_cleaned_on_start(tmp_path: Path) -> None:
    """A broker whose owner vanished without the death signal is stopped by the next start."""
    stale = EmbeddedBroker(state_dir=tmp_path)
    run_sync(stale.start())
    old = _record(tmp_path, "broker")
    fresh = EmbeddedBroker(state_dir=tmp_path)
    try:
        run_sync(fresh.start())
        assert not old.alive()
        assert _record(tmp_path, "broker").pid != old.pid
    finally:
        fresh.stop()
        stale.stop()


def test_an_alert_action_on_a_broker_without_its_topics_is_sent_unconfirmed(
    ioc_cli: Cli, tmp_path: Path
) -> None:
    """A broker that lost its topics (an embedded one restarted): the action is still sent,
    and the command says it could not wait for the outcome (it crashed on an assertion)."""
    broker = EmbeddedBroker(state_dir=tmp_path)
    run_sync(broker.start())
    try:
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
        sent = ioc_cli("alerts", "ack", "0" * 16, "--by", "An", "--wait", "2", env=env)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("đã gửi ack 0000000000000000 (An, ")
        assert "applied within seconds" in sent.stdout
    finally:
        broker.stop()


def test_second_up_on_the_same_state_dir_is_refused(
    ioc_cli: Cli, ioc_process: StartIoc, state_dir: Path
) -> None:
    """Two owners of one embedded runtime would fight; the second gets a clear error."""
    env = {"IOC_STATE_DIR": str(state_dir)}
    ioc_process("up", "--services-only", env=env).wait_for_output("ready:")
    second = ioc_cli("up", "--services-only", "--exit-after", "1", env=env)
    assert second.returncode != 0
    assert second.stderr.startswith("ioc: error [state_dir_locked]")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_one_clear_line(result: CliResult, code: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("ioc: error")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ioc: error [{code}] "), result.stderr


def test_bad_settings_give_one_clear_line(ioc_cli: Cli, tmp_path: Path, database_url: str) -> None:
    """Unreachable broker, wrong DSN, port in use, unwritable state dir, bad value: a line each."""
    state = str(tmp_path / "state")
    unreachable = ioc_cli(
        "up", "--services-only", "--exit-after", "1",
        env={"IOC_STATE_DIR": state, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}",
             "IOC_CONNECT_TIMEOUT": "3"},
    )  # fmt: skip
    _assert_one_clear_line(unreachable, "broker_unreachable")

    wrong_password = database_url.replace("postgres:", "postgres:wrong", 1).replace("@", "x@", 1)
    wrong_dsn = ioc_cli(
        "up",
        "--services-only",
        "--exit-after",
        "1",
        env={"IOC_STATE_DIR": state, "DATABASE_URL": wrong_password},
    )
    _assert_one_clear_line(wrong_dsn, "database_unreachable")

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        in_use = ioc_cli(
            "up",
            "--services-only",
            "--exit-after",
            "1",
            env={"IOC_STATE_DIR": state, "IOC_BROKER_PORT": str(port)},
        )
    _assert_one_clear_line(in_use, "port_in_use")
    assert str(port) in in_use.stderr

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    unwritable = ioc_cli(
        "up", "--services-only", "--exit-after", "1", env={"IOC_STATE_DIR": str(blocker / "state")}
    )
    _assert_one_clear_line(unwritable, "state_dir_unwritable")

    bad_value = ioc_cli("status", env={"IOC_TOPIC_PARTITIONS": "many"})
    _assert_one_clear_line(bad_value, "bad_setting")
    assert "IOC_TOPIC_PARTITIONS" in bad_value.stderr
