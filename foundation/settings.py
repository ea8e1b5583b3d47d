"""The one typed, frozen settings object, built once at start from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, ByteSize, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from foundation.errors import SettingsError

__all__ = [
    "CLUSTER_SESSION_TIMEOUT",
    "CLUSTER_TOPIC_PARTITIONS",
    "EMBEDDED_SESSION_TIMEOUT",
    "EMBEDDED_TOPIC_PARTITIONS",
    "Settings",
    "load_settings",
]

# Consumer-group session timeouts when none is set. A SIGKILLed member keeps its partitions
# until its session expires, so this bounds the recovery after a crash. On the embedded broker
# (one machine, loopback) a short one is safe; a cluster sees network hiccups and long GCs.
EMBEDDED_SESSION_TIMEOUT = 4.0
CLUSTER_SESSION_TIMEOUT = 10.0
# Partitions per contract topic when none is set: a cluster spreads them over workers; the
# embedded broker runs one worker, and its cost per fetch grows with each partition named.
CLUSTER_TOPIC_PARTITIONS = 4
EMBEDDED_TOPIC_PARTITIONS = 1

LogLevel = Literal["debug", "info", "warning", "error"]

# Fields read from variables without the IOC_ prefix, as operators know them.
_PLAIN_ENV_NAMES = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "database_url": "DATABASE_URL",
}


class Settings(BaseSettings):
    """Every knob of ioc-stream: env `IOC_<FIELD>`, `KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`."""

    model_config = SettingsConfigDict(
        env_prefix="IOC_", frozen=True, extra="ignore", populate_by_name=True
    )

    # Where the services are. None means: run the embedded one.
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url"), repr=False
    )

    # How every Kafka client authenticates (ioc/kafka_client.py turns these into options).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None  # None: the system's trusted CAs
    kafka_ssl_certfile: Path | None = None  # a client certificate (mutual TLS), optional
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_check_hostname: bool = True
    # Whether the stream worker and the SDK publisher compress what they send. A broker keeps
    # batches as they come: the embedded one grew 4.6x slower at 2,000 ev/s (bench/RESULTS.md),
    # a Kafka cluster saves disk and network.
    kafka_compression: Literal["gzip", "none"] = "gzip"

    # The embedded runtime.
    state_dir: Path = Path(".ioc")
    broker_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    postgres_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    # The embedded broker keeps every record in memory (no retention): `ioc up` rolls it (pause
    # intake, drain, fresh broker under a new epoch, resume) when its RSS passes
    # broker_roll_at × broker_memory_limit, and every broker_roll_interval seconds if set.
    broker_memory_limit: ByteSize = Field(
        default=ByteSize(1 << 30), ge=0, description="e.g. 1GiB, 512MiB; 0: never roll for memory"
    )
    broker_roll_at: float = Field(default=0.8, gt=0, le=1, description="fraction of the limit")
    broker_roll_interval: float = Field(default=0.0, ge=0, description="seconds; 0: off")
    # Its cost per fetch grows with the record batches a partition holds, so its CPU climbs
    # with its age even at a steady rate: roll when it passes this share of a core (0: off).
    broker_cpu_limit: float = Field(default=0.6, ge=0, le=64, description="cores; 0: off")
    broker_drain_timeout: float = Field(default=30.0, gt=0, le=600, description="seconds")
    # The embedded PostgreSQL's shared buffers: most of its memory once its data outgrows them.
    # 16 MiB (PostgreSQL's own default is 128 MB): they fill within minutes at the demo rate,
    # so its memory is flat from then on; the writer is as fast, and the history API's
    # answers as fast from the rollups (bench/RESULTS.md, "PostgreSQL with smaller shared
    # buffers"). Raise it where the history is read hard.
    postgres_shared_buffers: ByteSize = Field(
        default=ByteSize(16 << 20), ge=16 << 20, le=64 << 30, description="e.g. 16MiB, 128MiB"
    )
    # An embedded service alive but answering no probe for this long is killed and restarted.
    service_hung_after: float = Field(default=60.0, ge=0, le=3600, description="0: never")

    # How often every component (and `ioc up`) asks whether the broker and the database answer;
    # /healthz says "degraded" when one does not.
    health_probe_interval: float = Field(default=2.0, gt=0, le=60, description="seconds")

    # Topics of the contract. None: 4 on a Kafka cluster, 1 on the embedded broker (one worker
    # there; and each partition a fetch names costs it in proportion to all it holds).
    topic_partitions: int | None = Field(default=None, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=16)

    # The sector catalog; None means the default catalog of Bình Phước.
    catalog: Path | None = None

    # The HTTP ingest API (`ioc ingest-api`).
    ingest_host: str = Field(default="127.0.0.1", min_length=1)
    ingest_port: int = Field(default=8081, ge=0, le=65535, description="0 picks a free port")
    ingest_key_cache_ttl: float = Field(
        default=30.0, ge=0, le=3600, description="seconds a looked-up API key is trusted"
    )
    # The history API (GET /v1/history/…, served by the ingest API's server).
    history_query_timeout: float = Field(
        default=10.0, gt=0, le=300, description="seconds a history query may take"
    )

    # The stream worker (`ioc worker`); workers of one group share the partitions.
    worker_group: str = Field(default="ioc-worker", pattern=r"^[A-Za-z0-9._-]+$")
    worker_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535, description="0: a free port")
    worker_session_timeout: float | None = Field(
        default=None, ge=1, le=300, description="seconds; unset: 4 embedded, 10 with a cluster"
    )
    worker_checkpoint_interval: float = Field(default=1.0, gt=0, le=60, description="seconds")
    # Faust's own aiokafka transport ("faust"), or the same with a 100 ms fetch wait
    # ("short-wait", for the embedded broker); "auto" picks short-wait on the embedded broker.
    worker_transport: Literal["auto", "short-wait", "faust"] = "auto"

    # The notifier (`ioc notifier`): routing file, grouping, retries, rate limit, channels.
    # Secrets live here (env), never in the routing file.
    notifier_group: str = Field(default="ioc-notifier", pattern=r"^[A-Za-z0-9._-]+$")
    notifier_routing: Path | None = None  # None: the built-in Bình Phước demo routing
    notifier_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    notifier_metrics_port: int = Field(default=9104, ge=0, le=65535, description="0: a free port")
    notifier_session_timeout: float | None = Field(
        default=None, ge=1, le=300, description="seconds; unset: 4 embedded, 10 with a cluster"
    )
    notifier_group_wait: float = Field(default=30.0, ge=0, le=3600, description="seconds")
    notifier_max_age: float = Field(default=3600.0, gt=0, description="older transitions skipped")
    notifier_rate_limit: int = Field(default=20, ge=1, description="messages per period")
    notifier_rate_period: float = Field(default=3600.0, gt=0, description="seconds")
    notifier_max_attempts: int = Field(default=8, ge=1, le=100)
    notifier_retry_base: float = Field(default=1.0, gt=0, le=600, description="seconds")
    notifier_retry_max: float = Field(default=300.0, gt=0, le=86400, description="seconds")
    notifier_request_timeout: float = Field(default=10.0, gt=0, le=300, description="seconds")
    notifier_poll_interval: float = Field(default=0.25, gt=0, le=10, description="seconds")
    notifier_concurrency: int = Field(default=4, ge=1, le=64, description="messages in flight")
    notifier_webhook_base_url: str = "http://127.0.0.1:8090"
    notifier_webhook_secret: SecretStr | None = None
    notifier_telegram_base_url: str = "https://api.telegram.org"
    notifier_telegram_bot_token: SecretStr | None = None
    notifier_zalo_base_url: str = "https://openapi.zalo.me"
    notifier_zalo_access_token: SecretStr | None = None
    notifier_smtp_host: str | None = None
    notifier_smtp_port: int = Field(default=25, ge=1, le=65535)
    notifier_smtp_security: Literal["none", "starttls", "ssl"] = "none"
    notifier_smtp_username: str | None = None
    notifier_smtp_password: SecretStr | None = None
    notifier_smtp_from: str = "IOC Bình Phước <ioc@binhphuoc.gov.vn>"

    # The WebSocket gateway and wall page (`ioc gateway`), and its tokens (`ioc tokens create`).
    gateway_host: str = Field(default="127.0.0.1", min_length=1)
    gateway_port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    # None: a secret generated once and kept in the state dir (one machine); a cluster of
    # gateways must share one, so set it there.
    gateway_token_secret: SecretStr | None = Field(default=None, min_length=16)
    gateway_heartbeat: float = Field(default=10.0, ge=0.5, le=300, description="seconds")
    gateway_client_queue: int = Field(default=256, ge=4, le=100_000, description="updates")
    gateway_resume_buffer: int = Field(default=5000, ge=0, le=1_000_000, description="per channel")
    gateway_resume_seconds: float = Field(default=120.0, gt=0, le=86400, description="seconds")
    gateway_send_timeout: float = Field(default=30.0, gt=0, le=600, description="seconds")
    gateway_replay_seconds: float = Field(default=600.0, ge=0, le=86400, description="seconds")

    # Leaders and analysts: where people reach the gateway (links in notifications and
    # reports; None: http://<gateway host>:<gateway port>), how long a link stays valid,
    # and the morning report (`ioc reporter`).
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    link_ttl: float = Field(default=72 * 3600.0, gt=0, le=90 * 86400, description="seconds")
    report_link_ttl: float = Field(default=30 * 86400.0, gt=0, le=366 * 86400)
    reporter_hour: int = Field(default=7, ge=0, le=23, description="local hour of the report")
    reporter_catch_up: float = Field(
        default=86400.0, ge=0, le=30 * 86400, description="seconds a missed report is still sent"
    )
    reporter_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    reporter_metrics_port: int = Field(default=9107, ge=0, le=65535, description="0: a free port")
    reporter_poll_interval: float = Field(default=60.0, gt=0, le=3600, description="seconds")

    # Storage (`ioc db migrate`, `ioc writer`). auto: TimescaleDB when the extension can be
    # created, else plain PostgreSQL; chosen once per database.
    storage_path: Literal["auto", "plain-postgresql", "timescaledb"] = "auto"
    retention_events_days: int = Field(default=90, ge=1, le=36500)
    retention_kpi_points_days: int = Field(default=730, ge=1, le=36500)
    retention_dead_letters_days: int = Field(default=90, ge=1, le=36500)
    partitions_ahead_days: int = Field(default=7, ge=1, le=366, description="plain path")

    # The storage writer (`ioc writer`); writers of one group share the partitions.
    writer_group: str = Field(default="ioc-writer", pattern=r"^[A-Za-z0-9._-]+$")
    writer_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    writer_metrics_port: int = Field(default=9105, ge=0, le=65535, description="0: a free port")
    writer_batch_rows: int = Field(default=5000, ge=1, le=100_000)
    writer_linger: float = Field(default=0.5, gt=0, le=60, description="seconds")
    writer_maintenance_interval: float = Field(default=30.0, gt=0, le=3600, description="s")
    writer_retry_max: float = Field(default=10.0, gt=0, le=600, description="seconds")
    writer_session_timeout: float | None = Field(
        default=None, ge=1, le=300, description="seconds; unset: 4 embedded, 10 with a cluster"
    )

    connect_timeout: float = Field(default=10.0, gt=0, le=300, description="seconds")
    log_level: LogLevel = "info"

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        hosts = [part.strip() for part in value.split(",") if part.strip()]
        for host in hosts:
            name, sep, port = host.rpartition(":")
            if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port…]; {host!r} is not")
        return ",".join(hosts)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = urlsplit(value.strip()).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("expected a postgresql:// URL")
        return value.strip()

    @property
    def public_base_url(self) -> str:
        """The gateway as people reach it: IOC_PUBLIC_URL, else its own host and port."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def embedded_broker(self) -> bool:
        """True when no external Kafka is configured."""
        return self.kafka_bootstrap_servers is None

    def session_timeout(self, configured: float | None) -> float:
        """A consumer group's session timeout: the one set, else the mode's default."""
        if configured is not None:
            return configured
        return EMBEDDED_SESSION_TIMEOUT if self.embedded_broker else CLUSTER_SESSION_TIMEOUT

    @property
    def partitions_per_topic(self) -> int:
        """The partitions of each contract topic: the one set, else the mode's default."""
        if self.topic_partitions is not None:
            return self.topic_partitions
        return EMBEDDED_TOPIC_PARTITIONS if self.embedded_broker else CLUSTER_TOPIC_PARTITIONS

    @property
    def embedded_database(self) -> bool:
        """True when no external PostgreSQL is configured."""
        return self.database_url is None


def _env_name(field: str) -> str:
    if field in _PLAIN_ENV_NAMES.values():
        return field
    return _PLAIN_ENV_NAMES.get(field, f"IOC_{field.upper()}")


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and overrides); a bad value is a SettingsError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        given = first.get("input")
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{_env_name(field)}: {message} (got {given!r})") from exc
