"""How every Kafka client of ioc-stream authenticates: one place turns the settings into options.

`kafka_client_options(settings)` gives the keyword arguments every aiokafka client takes
(producer, consumer, admin, bare client); `faust_broker_credentials(settings)` gives the same
for the Faust worker. Components pass them at client construction and add nothing of their
own, so a cluster with SASL/SCRAM over TLS needs only the `IOC_KAFKA_*` variables.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Literal

from foundation.errors import SettingsError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from foundation.settings import Settings

__all__ = [
    "faust_broker_credentials",
    "kafka_client_options",
    "kafka_ssl_context",
    "producer_compression",
]


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL/SASL_SSL (CA file, optional client certificate), else None."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        )
        if settings.kafka_ssl_certfile is not None:
            context.load_cert_chain(
                certfile=str(settings.kafka_ssl_certfile),
                keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"IOC_KAFKA_SSL_CAFILE/_CERTFILE/_KEYFILE: cannot load: {exc}") from exc
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def _sasl_login(settings: Settings) -> tuple[str, str]:
    username = settings.kafka_sasl_username
    password = settings.kafka_sasl_password
    if not username or password is None:
        raise SettingsError(
            f"IOC_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            "IOC_KAFKA_SASL_USERNAME and IOC_KAFKA_SASL_PASSWORD"
        )
    return username, password.get_secret_value()


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient/Client: protocol, TLS, SASL.

    The embedded broker (no KAFKA_BOOTSTRAP_SERVERS) speaks PLAINTEXT only, whatever is set.
    """
    if settings.embedded_broker:
        return {"security_protocol": "PLAINTEXT"}
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        username, password = _sasl_login(settings)
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = username
        options["sasl_plain_password"] = password
    return options


def producer_compression(settings: Settings) -> Literal["gzip"] | None:
    """The compression type our producers use (aiokafka's `compression_type`), None for none.

    Brokers keep batches compressed as they come: the embedded broker's memory, a cluster's
    disk and network (JSON shrinks several times under gzip), at the producers' CPU.
    """
    return "gzip" if settings.kafka_compression == "gzip" else None


def faust_broker_credentials(settings: Settings) -> CredentialsT | None:
    """The same choice as Faust `broker_credentials` (None: PLAINTEXT)."""
    from faust.auth import SASLCredentials, SSLCredentials

    if settings.embedded_broker:
        return None
    protocol = settings.kafka_security_protocol
    context = kafka_ssl_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        username, password = _sasl_login(settings)
        # Faust picks SASL_SSL when it is given a TLS context, SASL_PLAINTEXT otherwise.
        return SASLCredentials(
            username=username,
            password=password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return SSLCredentials(context)
    return None
