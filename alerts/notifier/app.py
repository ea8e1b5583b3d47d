"""Composition of `ioc notifier`: settings in, consumer + dispatcher + /metrics running."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from prometheus_client import CollectorRegistry

from alerts.notifier.backoff import RetryPolicy
from alerts.notifier.channels import (
    Channel,
    EmailChannel,
    SmtpConfig,
    TelegramChannel,
    WebhookChannel,
    ZaloChannel,
)
from alerts.notifier.consumer import AlertConsumer
from alerts.notifier.dispatcher import DispatchConfig, Dispatcher
from alerts.notifier.messages import LinkMaker, MessageContext
from alerts.notifier.metrics import NotifierMetrics
from alerts.notifier.store import PostgresDeliveryStore
from alerts.routing import CHANNELS, PlannedDelivery, Routing, Target, check_roles, load_routing
from alerts.routing import plan_deliveries as route
from foundation.auth.links import issue_link
from foundation.auth.token_secret import token_secret
from foundation.contract.alerts import AlertTransition
from foundation.contract.catalog import load_catalog
from foundation.kafka_client import kafka_client_options
from foundation.settings import Settings

__all__ = ["NotifierHandle", "build_channels", "link_maker", "run_notifier"]

log = logging.getLogger("ioc.notifier")


@dataclass
class NotifierHandle:
    """What a caller (the CLI, a test) can observe of a running notifier."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics: NotifierMetrics | None = None
    channels: list[str] = field(default_factory=list)
    assigned: asyncio.Event = field(default_factory=asyncio.Event)
    consumer: AlertConsumer | None = None
    dispatcher: Dispatcher | None = None

    def healthy(self, *, stale_after: float = 30.0) -> bool:
        """Both loops made progress recently (the consumer polled, the dispatcher read the log)."""
        now = time.monotonic()
        return (
            self.consumer is not None
            and self.dispatcher is not None
            and now - self.consumer.last_ok < stale_after
            and now - self.dispatcher.last_ok < stale_after
        )


def build_channels(settings: Settings, session: aiohttp.ClientSession) -> dict[str, Channel]:
    """The channels whose credentials are configured; the others are left out (held)."""
    timeout = settings.notifier_request_timeout
    channels: dict[str, Channel] = {}
    if settings.notifier_webhook_secret is not None:
        channels["webhook"] = WebhookChannel(
            session,
            base_url=settings.notifier_webhook_base_url,
            secret=settings.notifier_webhook_secret.get_secret_value().encode(),
            timeout=timeout,
        )
    if settings.notifier_smtp_host:
        password = settings.notifier_smtp_password
        channels["email"] = EmailChannel(
            SmtpConfig(
                host=settings.notifier_smtp_host,
                port=settings.notifier_smtp_port,
                sender=settings.notifier_smtp_from,
                security=settings.notifier_smtp_security,
                username=settings.notifier_smtp_username,
                password=password.get_secret_value() if password else None,
            ),
            timeout=timeout,
        )
    if settings.notifier_telegram_bot_token is not None:
        channels["telegram"] = TelegramChannel(
            session,
            base_url=settings.notifier_telegram_base_url,
            token=settings.notifier_telegram_bot_token.get_secret_value(),
            timeout=timeout,
        )
    if settings.notifier_zalo_access_token is not None:
        channels["zalo"] = ZaloChannel(
            session,
            base_url=settings.notifier_zalo_base_url,
            access_token=settings.notifier_zalo_access_token.get_secret_value(),
            timeout=timeout,
        )
    return channels


def link_maker(
    settings: Settings, routing: Routing, *, clock: Callable[[], float] = time.time
) -> LinkMaker:
    """Links to an alert's phone page (`<IOC_PUBLIC_URL>/m/<signed link>`), one per recipient:
    actions taken there are recorded under the recipient's name from the routing file."""
    secret = token_secret(settings)
    base = settings.public_base_url
    names = {r.id: r.name for r in routing.recipients}

    def make(recipient: str, transition: AlertTransition) -> str | None:
        name = names.get(recipient)
        if name is None:
            return None
        link, _claims = issue_link(
            secret,
            kind="alert",
            subject=transition.fingerprint,
            sector=transition.sector,
            recipient=recipient,
            name=name,
            now=clock(),
            ttl=settings.link_ttl,
        )
        return f"{base}/m/{link}"

    return make


async def run_notifier(
    settings: Settings,
    *,
    bootstrap_servers: str,
    database_url: str,
    stop: asyncio.Event,
    handle: NotifierHandle | None = None,
    on_ready: Callable[[NotifierHandle], None] = lambda _h: None,
) -> None:
    """Run until `stop` is set; the delivery table must exist (`ioc db migrate`)."""
    handle = handle or NotifierHandle()
    catalog = load_catalog(settings.catalog)
    routing = load_routing(settings.notifier_routing)
    roles = [level.role for level in catalog.escalation.levels]
    check_roles(routing, roles, path=settings.notifier_routing)
    context = MessageContext.from_catalog(catalog, link=link_maker(settings, routing))
    metrics = handle.metrics = NotifierMetrics.create(handle.registry)

    store = PostgresDeliveryStore(
        database_url,
        timeout=settings.connect_timeout,
        pool_size=settings.notifier_concurrency + 2,
    )
    await store.open()
    try:
        async with aiohttp.ClientSession() as session:
            channels = build_channels(settings, session)
            handle.channels = sorted(channels)
            missing = [c for c in CHANNELS if c not in channels]
            if missing:
                log.warning(
                    "channels not configured (their deliveries are recorded as held): %s",
                    ", ".join(missing),
                )

            def plan(t: AlertTransition, before: list[Target]) -> list[PlannedDelivery]:
                return route(
                    t, routing, roles=roles, notified_before=before, enabled_channels=channels
                )

            dispatcher = handle.dispatcher = Dispatcher(
                store=store,
                channels=channels,
                context=context,
                config=DispatchConfig(
                    poll_interval=settings.notifier_poll_interval,
                    concurrency=settings.notifier_concurrency,
                    retry=RetryPolicy(
                        max_attempts=settings.notifier_max_attempts,
                        base=settings.notifier_retry_base,
                        cap=settings.notifier_retry_max,
                    ),
                    rate_limit=settings.notifier_rate_limit,
                    rate_period=settings.notifier_rate_period,
                    drain_timeout=settings.notifier_request_timeout * 1.5,
                ),
                metrics=metrics,
            )
            await dispatcher.seed_rate_limit()

            def assigned(count: int) -> None:
                if not handle.assigned.is_set():
                    log.info("notifier owns %d partition(s) of ioc.alerts", count)
                handle.assigned.set()

            consumer = handle.consumer = AlertConsumer(
                bootstrap_servers=bootstrap_servers,
                group=settings.notifier_group,
                session_timeout=settings.session_timeout(settings.notifier_session_timeout),
                connect_timeout=settings.connect_timeout,
                store=store,
                plan=plan,
                group_wait=settings.notifier_group_wait,
                max_age=settings.notifier_max_age,
                metrics=metrics,
                on_recorded=dispatcher.wake,
                on_assigned=assigned,
                kafka_options=kafka_client_options(settings),
            )
            on_ready(handle)
            await _run_both(consumer, dispatcher, stop)
    finally:
        await store.close()


async def _run_both(consumer: AlertConsumer, dispatcher: Dispatcher, stop: asyncio.Event) -> None:
    """Run the two loops; when one ends (stop, or a crash), stop the other and await it."""
    tasks = [
        asyncio.create_task(consumer.run(stop), name="notifier-consumer"),
        asyncio.create_task(dispatcher.run(stop), name="notifier-dispatcher"),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
