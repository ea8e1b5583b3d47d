"""The embedded runtime: a local Kafka-compatible broker and a local PostgreSQL."""

from ioc.embedded._process import find_free_port, spawn
from ioc.embedded.broker import EmbeddedBroker
from ioc.embedded.postgres import EmbeddedPostgres

__all__ = ["EmbeddedBroker", "EmbeddedPostgres", "find_free_port", "spawn"]
