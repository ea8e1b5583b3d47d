"""ioc/kafka_client.py: one place turns the IOC_KAFKA_* settings into client options."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from foundation.errors import SettingsError
from foundation.kafka_client import (
    faust_broker_credentials,
    kafka_client_options,
    producer_compression,
)
from foundation.settings import Settings, load_settings

EXTERNAL = {"kafka_bootstrap_servers": "kafka-1:9093,kafka-2:9093"}


def settings(**fields: object) -> Settings:
    return load_settings(**{**EXTERNAL, **fields})


def test_plaintext_is_the_default_and_adds_nothing_else() -> None:
    assert kafka_client_options(settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_broker_credentials(settings()) is None


def test_the_embedded_broker_is_always_plaintext() -> None:
    """Without KAFKA_BOOTSTRAP_SERVERS the embedded broker is used, and it speaks PLAINTEXT."""
    embedded = load_settings(
        kafka_bootstrap_servers=None, kafka_security_protocol="SASL_SSL", kafka_sasl_username="u"
    )
    assert kafka_client_options(embedded) == {"security_protocol": "PLAINTEXT"}
    assert faust_broker_credentials(embedded) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_gives_login_and_a_verifying_tls_context(mechanism: str) -> None:
    options = kafka_client_options(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="dept-health",
            kafka_sasl_password="s3cret",
        )
    )
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "dept-health",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_sasl_plaintext_has_no_tls_context() -> None:
    options = kafka_client_options(
        settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert "ssl_context" not in options
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"


def test_ssl_only_and_hostname_check_can_be_relaxed() -> None:
    options = kafka_client_options(
        settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    )
    assert options["security_protocol"] == "SSL"
    assert not options["ssl_context"].check_hostname
    assert "sasl_mechanism" not in options


@pytest.mark.parametrize("missing", ["kafka_sasl_username", "kafka_sasl_password"])
def test_sasl_without_a_login_is_a_setting_error_naming_the_variables(missing: str) -> None:
    fields: dict[str, object] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "u",
        "kafka_sasl_password": "p",
    }
    del fields[missing]
    with pytest.raises(SettingsError, match="IOC_KAFKA_SASL_USERNAME and IOC_KAFKA_SASL_PASSWORD"):
        kafka_client_options(settings(**fields))
    with pytest.raises(SettingsError):
        faust_broker_credentials(settings(**fields))


def test_an_unreadable_ca_file_is_a_setting_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="IOC_KAFKA_SSL_CAFILE") as caught:
        kafka_client_options(
            settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "missing.crt")
        )
    assert caught.value.code == "bad_setting"


def test_an_unknown_protocol_is_refused_at_load() -> None:
    with pytest.raises(SettingsError, match="IOC_KAFKA_SECURITY_PROTOCOL"):
        settings(kafka_security_protocol="KERBEROS")


def test_producers_compress_with_gzip_unless_told_not_to() -> None:
    """gzip by default (brokers keep batches as sent); `none` turns it off; others refused."""
    assert producer_compression(settings()) == "gzip"
    assert producer_compression(settings(kafka_compression="none")) is None
    with pytest.raises(SettingsError, match="IOC_KAFKA_COMPRESSION"):
        settings(kafka_compression="lz4")  # aiokafka needs a package we do not install


def test_faust_gets_the_same_choice() -> None:
    sasl = faust_broker_credentials(
        settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="ioc-worker",
            kafka_sasl_password="p",
        )
    )
    assert isinstance(sasl, SASLCredentials)
    assert (sasl.username, sasl.password, sasl.mechanism.value) == (
        "ioc-worker",
        "p",
        "SCRAM-SHA-256",
    )
    assert sasl.protocol.value == "SASL_SSL"
    plain_sasl = faust_broker_credentials(
        settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert isinstance(plain_sasl, SASLCredentials)
    assert plain_sasl.protocol.value == "SASL_PLAINTEXT"
    tls = faust_broker_credentials(settings(kafka_security_protocol="SSL"))
    assert isinstance(tls, SSLCredentials)


def test_the_worker_app_carries_the_credentials(tmp_path: Path) -> None:
    """`ioc worker` hands faust_broker_credentials to the Faust app it builds."""
    from prometheus_client import CollectorRegistry

    from foundation.contract.catalog import load_catalog
    from foundation.contract.topics import BrokerEpoch
    from streams.checkpoints import MemoryCheckpointStore
    from streams.faust_app import WorkerConfig, create_app

    credentials = faust_broker_credentials(
        settings(
            kafka_security_protocol="SASL_SSL", kafka_sasl_username="u", kafka_sasl_password="p"
        )
    )
    config = WorkerConfig(
        bootstrap_servers="kafka-1:9093",
        group="g",
        epoch=BrokerEpoch("e", 1),
        partitions=4,
        replication_factor=3,
        data_dir=tmp_path,
        broker_credentials=credentials,
    )
    app, _worker, _metrics = create_app(
        config, catalog=load_catalog(), store=MemoryCheckpointStore(), registry=CollectorRegistry()
    )
    assert app.conf.broker_credentials is credentials
