"""Sends due deliveries from the log: one digest per recipient address, retries, rate limit.

Every `poll_interval` (or when the consumer recorded something new) it reads the pending
rows, plans the due digests (`grouping.due_digests`) and sends each in its own task, at most
`concurrency` at once and one per recipient address. A digest's rows stay locked in the
database while it is sent; the outcome (sent, retry at a later time, failed, held by the
rate limit) is written before the lock is released.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from alerts.notifier.backoff import RetryPolicy
from alerts.notifier.channels import Channel, DeliveryError, Envelope
from alerts.notifier.grouping import DigestPlan, GroupKey, due_digests
from alerts.notifier.limits import RateLimiter
from alerts.notifier.messages import MessageContext, render
from alerts.notifier.metrics import NotifierMetrics
from alerts.notifier.store import (
    Claim,
    ClaimedDelivery,
    DeliveryStore,
    digest_id,
    is_database_error,
)
from foundation.contract.alerts import SEVERITY_RANK, AlertTransition, RecordError

__all__ = ["DispatchConfig", "Dispatcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """How the dispatcher paces itself."""

    poll_interval: float = 0.25
    concurrency: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rate_limit: int = 20
    rate_period: float = 3600.0
    max_digest_items: int = 50
    drain_timeout: float = 15.0  # on stop: how long in-flight sends may finish


class Dispatcher:
    """Owns the sending tasks; `run` until stop, then lets in-flight sends finish."""

    def __init__(
        self,
        *,
        store: DeliveryStore,
        channels: Mapping[str, Channel],
        context: MessageContext,
        config: DispatchConfig,
        metrics: NotifierMetrics,
        clock: Callable[[], float] = time.time,
        spread: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._channels = channels
        self._context = context
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._spread = spread
        self._limiter = RateLimiter(limit=config.rate_limit, period=config.rate_period)
        self._busy: set[GroupKey] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.last_ok = 0.0  # monotonic time of the last successful look at the log

    def wake(self) -> None:
        """New rows were recorded: look now rather than at the next poll."""
        self._wake.set()

    async def seed_rate_limit(self) -> None:
        """Count the messages of the last period, so a restart does not reset the limit."""
        now = self._clock()
        self._limiter.seed(await self._store.recent_sends(now - self._config.rate_period))

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                    self.last_ok = time.monotonic()
                except Exception as exc:
                    if not is_database_error(exc):
                        raise
                    self._metrics.database_errors.labels("pending").inc()
                    log.warning("cannot read pending deliveries (retrying): %s", exc)
                self._wake.clear()
                stopping = asyncio.create_task(stop.wait())
                woken = asyncio.create_task(self._wake.wait())
                try:
                    await asyncio.wait(
                        {stopping, woken},
                        timeout=self._config.poll_interval,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    for waiter in (stopping, woken):
                        waiter.cancel()
                    await asyncio.gather(stopping, woken, return_exceptions=True)
        finally:
            await self._drain()

    async def tick(self) -> int:
        """One round: start the due digests; returns how many were started."""
        pending = await self._store.pending()
        self._metrics.pending.set(len(pending))
        plans = due_digests(
            pending,
            now=self._clock(),
            busy=self._busy,
            max_items=self._config.max_digest_items,
        )
        started = 0
        for plan in plans:
            if plan.key in self._busy:
                continue  # the rest of a split group goes next round
            if len(self._tasks) >= self._config.concurrency:
                break
            self._busy.add(plan.key)
            task = asyncio.create_task(self._deliver(plan), name=f"notify-{plan.channel}")
            self._tasks.add(task)
            task.add_done_callback(self._done)
            started += 1
        return started

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _done, still = await asyncio.wait(set(self._tasks), timeout=self._config.drain_timeout)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)

    async def _deliver(self, plan: DigestPlan) -> None:
        try:
            await self._deliver_locked(plan)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            # The claim rolled back: its rows are still pending and go out later. If the
            # message itself went out, this is where a duplicate can come from.
            self._metrics.database_errors.labels("claim").inc()
            log.warning(
                "delivery log write failed for %s/%s: %s", plan.recipient, plan.channel, exc
            )
        finally:
            self._busy.discard(plan.key)

    async def _deliver_locked(self, plan: DigestPlan) -> None:
        metrics = self._metrics
        outcome: tuple[str, int, list[float]] | None = None
        async with self._store.claim(plan.ids) as claim:
            rows = claim.rows
            if not rows:
                return  # another notifier holds or already sent them
            now = self._clock()
            limit_key = (plan.recipient, plan.channel)
            channel = self._channels.get(plan.channel)
            if channel is None:
                await claim.held("channel_not_configured", at=now)
                outcome = ("held", len(rows), [])
            elif not self._limiter.allow(limit_key, now) and not _urgent(rows):
                # Critical and emergency alerts are never held back by the rate limit: a
                # leader must hear of them even in an alert storm.
                await claim.held("rate_limited", at=now)
                log.warning(
                    "rate limit: %d notification(s) to %s on %s held (over %d per %g s)",
                    len(rows),
                    plan.recipient,
                    plan.channel,
                    self._config.rate_limit,
                    self._config.rate_period,
                )
                outcome = ("held", len(rows), [])
            else:
                try:
                    transitions = [AlertTransition.from_json(r.payload) for r in rows]
                except RecordError as exc:  # written by us from a valid record: a bug
                    await claim.failed(f"bad_payload: {exc}", at=now)
                    outcome = ("failed", len(rows), [])
                else:
                    outcome = await self._attempt(claim, plan, channel, transitions, limit_key)
        if outcome is not None:
            status, count, latencies = outcome
            if status != "retry":
                metrics.notifications.labels(plan.channel, status).inc(count)
            if status == "sent":
                metrics.messages.labels(plan.channel).inc()
                if count > 1:
                    metrics.digests.labels(plan.channel).inc()
                for latency in latencies:
                    metrics.delivery_latency.labels(plan.channel).observe(latency)
            elif status == "retry":
                metrics.retries.labels(plan.channel).inc()

    async def _attempt(
        self,
        claim: Claim,
        plan: DigestPlan,
        channel: Channel,
        transitions: list[AlertTransition],
        limit_key: tuple[str, str],
    ) -> tuple[str, int, list[float]]:
        rows = claim.rows
        message = render(transitions, self._context, recipient=plan.recipient)
        digest = digest_id(rows)
        started = time.monotonic()
        try:
            try:
                await channel.send(Envelope(plan.recipient, plan.address, message, digest))
            except DeliveryError:
                raise
            except Exception as unexpected:  # a bug or an odd library error: count it, retry
                log.exception("unexpected error sending to %s on %s", plan.recipient, plan.channel)
                raise DeliveryError(
                    f"{plan.channel}: {type(unexpected).__name__}: {unexpected}", permanent=False
                ) from unexpected
        except DeliveryError as exc:
            self._metrics.attempt_seconds.labels(plan.channel).observe(time.monotonic() - started)
            at = self._clock()
            attempts = max(r.attempts for r in rows) + 1
            if exc.permanent or self._config.retry.gives_up(attempts):
                await claim.failed(exc.reason, at=at)
                log.warning(
                    "notification to %s on %s failed after %d attempt(s): %s",
                    plan.recipient,
                    plan.channel,
                    attempts,
                    exc.reason,
                )
                return ("failed", len(rows), [])
            delay = self._config.retry.delay(
                attempts, spread=self._spread(), retry_after=exc.retry_after
            )
            await claim.retry(exc.reason, at=at, due_at=at + delay)
            log.info(
                "notification to %s on %s: attempt %d failed (%s); next in %.1f s",
                plan.recipient,
                plan.channel,
                attempts,
                exc.reason,
                delay,
            )
            return ("retry", len(rows), [])
        self._metrics.attempt_seconds.labels(plan.channel).observe(time.monotonic() - started)
        at = self._clock()
        self._limiter.record(limit_key, at)
        await claim.sent(digest, at=at)
        return ("sent", len(rows), [at - t.at for t in transitions])


def _urgent(rows: list[ClaimedDelivery]) -> bool:
    """True when a digest carries a critical or emergency alert."""
    return any(SEVERITY_RANK.get(str(r.payload.get("severity")), 0) >= 2 for r in rows)
