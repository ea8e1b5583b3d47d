"""Officers' alert actions from the socket onto `ioc.alert-actions` (thin I/O)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from foundation.contract.alerts import AlertAction
from foundation.contract.topics import ALERT_ACTIONS
from foundation.errors import BrokerUnreachableError

__all__ = ["ActionPublishError", "ActionSink", "KafkaActionSink"]


class ActionPublishError(Exception):
    """The action could not be published in time; the client is told to retry."""


class ActionSink(Protocol):
    async def publish(self, action: AlertAction) -> None:
        """Publish one action; ActionPublishError when it fails."""


class KafkaActionSink:
    """Publishes actions keyed by fingerprint, waiting for the broker's acknowledgement."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        timeout: float,
        topic: str = ALERT_ACTIONS,
        kafka_options: dict[str, Any] | None = None,
    ) -> None:
        self._timeout = timeout
        self._topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            enable_idempotence=False,  # not on the embedded broker (no transactions/idempotence)
            request_timeout_ms=int(timeout * 1000),
            **(kafka_options or {}),
        )

    async def start(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._producer.start()
        except (KafkaError, TimeoutError, OSError) as exc:
            await self._producer.stop()
            raise BrokerUnreachableError(f"cannot start the action producer: {exc!r}") from exc

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, action: AlertAction) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._producer.send_and_wait(
                    self._topic, value=action.encode(), key=action.key
                )
        except (KafkaError, TimeoutError) as exc:
            raise ActionPublishError(repr(exc)) from exc
