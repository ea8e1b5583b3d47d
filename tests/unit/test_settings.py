"""The settings object: defaults, environment names, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.errors import SettingsError
from foundation.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("IOC_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
            monkeypatch.delenv(name)


def test_defaults_mean_embedded_services() -> None:
    settings = load_settings()
    assert settings.embedded_broker and settings.embedded_database
    assert settings.state_dir == Path(".ioc")
    assert settings.topic_partitions is None and settings.partitions_per_topic == 1


def test_topic_partitions_default_to_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 on the embedded broker (one worker; fetch cost), 4 on a cluster, else what is set."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092")
    assert load_settings().partitions_per_topic == 4
    monkeypatch.setenv("IOC_TOPIC_PARTITIONS", "2")
    assert load_settings().partitions_per_topic == 2
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    assert load_settings().partitions_per_topic == 2


def test_reads_plain_and_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", " k1:9092, k2:9093 ")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/ioc")
    monkeypatch.setenv("IOC_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("IOC_STATE_DIR", "/var/lib/ioc")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9093"
    assert settings.database_url == "postgresql://u:p@db:5432/ioc"
    assert settings.topic_partitions == 12 and settings.partitions_per_topic == 12
    assert settings.state_dir == Path("/var/lib/ioc")
    assert not settings.embedded_broker


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.topic_partitions = 8  # type: ignore[misc]


def test_password_is_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db/ioc")
    assert "hunter2" not in repr(load_settings())


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("IOC_TOPIC_PARTITIONS", "abc", "IOC_TOPIC_PARTITIONS: Input should be a valid integer"),
        (
            "IOC_TOPIC_PARTITIONS",
            "0",
            "IOC_TOPIC_PARTITIONS: Input should be greater than or equal to 1",
        ),
        (
            "IOC_BROKER_PORT",
            "70000",
            "IOC_BROKER_PORT: Input should be less than or equal to 65535",
        ),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "KAFKA_BOOTSTRAP_SERVERS: expected host:port"),
        ("KAFKA_BOOTSTRAP_SERVERS", "k1:notaport", "KAFKA_BOOTSTRAP_SERVERS: expected host:port"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL: expected a postgresql:// URL"),
        ("IOC_LOG_LEVEL", "loud", "IOC_LOG_LEVEL: Input should be"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.code == "bad_setting"
    assert expected in caught.value.message
    assert "\n" not in str(caught.value)


def test_the_state_dir_check_holds_when_many_processes_check_at_once(tmp_path: Path) -> None:
    """Components started together each probe the directory; none sees another's probe."""
    import concurrent.futures

    from foundation.state_dir import ensure_state_dir

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _n: ensure_state_dir(tmp_path / "state"), range(200)))
    assert set(results) == {(tmp_path / "state").resolve()}
    assert list((tmp_path / "state").iterdir()) == []


@pytest.mark.parametrize(
    ("bootstrap", "configured", "expected"),
    [(None, None, 4.0), ("k:9092", None, 10.0), (None, 7.0, 7.0), ("k:9092", 3.0, 3.0)],
)
def test_group_session_timeouts_are_short_on_the_embedded_broker(
    monkeypatch: pytest.MonkeyPatch,
    bootstrap: str | None,
    configured: float | None,
    expected: float,
) -> None:
    """A SIGKILLed member holds its partitions for a session: 4 s embedded, 10 s on a cluster."""
    if bootstrap:
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    if configured is not None:
        monkeypatch.setenv("IOC_WRITER_SESSION_TIMEOUT", str(configured))
    settings = load_settings()
    assert settings.session_timeout(settings.writer_session_timeout) == expected


@pytest.mark.parametrize(("value", "expected"), [("1GiB", 2**30), ("512MiB", 2**29), ("0", 0)])
def test_broker_memory_limit_takes_sizes(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("IOC_BROKER_MEMORY_LIMIT", value)
    assert int(load_settings().broker_memory_limit) == expected


def test_broker_memory_limit_defaults_to_one_gibibyte() -> None:
    settings = load_settings()
    assert int(settings.broker_memory_limit) == 2**30 and settings.broker_roll_at == 0.8
