"""The worker's alert stage, free of Faust: one ordered input, the pure alert engine, ioc.alerts.

KPI points (from stage 2), freshness changes (from stage 1), officers' actions (forwarded
from `ioc.alert-actions`) and the owner's own clock ticks all travel on partition 0 of
`ioc.internal.alert-input`, so the one worker that owns that partition owns every alert and
sees its inputs in one order. Its state (the engine's snapshot) is checkpointed with the
offset it covers, like the other stages; a restarted owner replays from there, and since
the engine is deterministic on its inputs and their broker timestamps, the transitions it
re-publishes are the same, with the same `(fingerprint, seq)`: consumers drop them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from alerts.engine import AlertEngine
from foundation.contract.alerts import AlertAction, AlertTransition, RecordError
from foundation.contract.topics import ALERT_INPUT, ALERTS
from streams.checkpoints import Checkpoint, CheckpointStore
from streams.worker import RESEEKS_BEFORE_GIVING_UP, SEEK_PATIENCE, Sink, TopicPartition
from streams.worker_metrics import WorkerMetrics

__all__ = ["ALERT_PARTITION", "AlertStage"]

log = logging.getLogger(__name__)

ALERT_PARTITION = 0
_MAX_FEED = 10_000  # records held between two flushes; beyond, the oldest KPI point goes


class AlertStage:
    """Feeds the alert engine from its input partition; publishes transitions; checkpoints."""

    def __init__(
        self,
        *,
        engine: AlertEngine,
        store: CheckpointStore,
        sink: Sink,
        metrics: WorkerMetrics,
        watched_kpis: set[str],
        sectors: set[str],
        group: str = "ioc-worker",
        epoch: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._store = store
        self._sink = sink
        self._metrics = metrics
        self._watched = watched_kpis
        self._sectors = sectors
        self._consumer = f"{group}/alerts"
        self._epoch = epoch
        self._clock = clock
        self._feed: list[dict[str, Any]] = []
        self._owned = False
        self._ready = asyncio.Event()
        self._ready.set()
        self._empty_engine = engine.snapshot()
        self._next_offset: int | None = None
        self._seek_to: int | None = None
        self._sought_at = 0.0
        self._overshot = False  # a record past _seek_to came while _seek_to had not
        self._reseeks = 0
        self._generation = 0  # counts ownerships: a seek begun under an earlier one is stale
        self._seek: Callable[[TopicPartition, int], Any] | None = None
        self._changed = False

    @property
    def owned(self) -> bool:
        return self._owned

    # ---- the feed: other stages hand records on ------------------------------------------

    def offer(self, record: dict[str, Any]) -> None:
        """A KPI point (`kpi`: `<sector>.<kpi id>`) or freshness change, if a rule uses it."""
        if record.get("kind") == "kpi" and record.get("kpi") not in self._watched:
            return
        if len(self._feed) >= _MAX_FEED:
            # Never a freshness change (an absence alert hangs on it): the oldest KPI point.
            oldest = next((i for i, r in enumerate(self._feed) if r.get("kind") == "kpi"), None)
            if oldest is None and record.get("kind") == "kpi":
                self._metrics.alert_feed_dropped.inc()
                return
            if oldest is not None:
                del self._feed[oldest]
                self._metrics.alert_feed_dropped.inc()
        self._feed.append(record)

    async def flush_feed(self) -> None:
        """Send what was offered as one record to the alert input (a timer calls this)."""
        if not self._feed:
            return
        batch, self._feed = self._feed, []
        await self._sink.send(ALERT_INPUT, b"alerts", _encode(batch), ALERT_PARTITION)

    async def forward_action(self, value: bytes) -> None:
        """An action from ioc.alert-actions, checked, onto the alert input."""
        try:
            action = AlertAction.decode(value)
        except RecordError as exc:
            self._metrics.alert_actions.labels("invalid", exc.args[0].split(":")[0]).inc()
            log.warning("ignoring an unreadable alert action: %s", exc)
            return
        await self._sink.send(ALERT_INPUT, b"alerts", _encode([action.to_json()]), ALERT_PARTITION)

    # ---- ownership --------------------------------------------------------------------

    async def assign(
        self, assigned: set[TopicPartition], seek: Callable[[TopicPartition, int], Any]
    ) -> None:
        tp = (ALERT_INPUT, ALERT_PARTITION)
        if tp not in assigned or self._owned:
            return
        self._seek = seek
        # Owned before the first await: records delivered meanwhile wait for the restore
        # instead of being dropped as not ours.
        self._owned = True
        self._generation += 1
        self._ready.clear()
        try:
            loaded = await self._store.load(self._consumer, [tp])
            checkpoint = loaded.get(tp)
            restored = checkpoint is not None and checkpoint.state.get("epoch") == self._epoch
            if checkpoint is not None and restored:
                self._engine.restore(checkpoint.state["engine"])
                start = checkpoint.next_offset
            else:  # from the first record, with an empty engine (not what a past owner left)
                self._engine.restore(self._empty_engine)
                start = 0
            # Sought either way: no offset is committed, the consumer may stand anywhere.
            landed = await seek(tp, start)
            offset = max(start, landed) if isinstance(landed, int) else start
            if restored and offset > start:
                log.warning(
                    "alert input records %d…%d are gone from the broker; resuming at %d",
                    start, offset - 1, offset,
                )  # fmt: skip
            self._next_offset = offset
            self._await_record(offset)
        except BaseException:
            self._owned = False
            raise
        finally:
            self._ready.set()
        self._metrics.owned_partitions.labels("alerts").set(1)
        self._update_gauges()
        log.info("alert stage: owner now (%s)", "restored" if restored else "fresh")

    def _await_record(self, offset: int) -> None:
        self._seek_to = offset
        self._sought_at = self._clock()
        self._overshot = False
        self._reseeks = 0

    async def watch_seek(self) -> bool:
        """As StreamWorker.watch_seeks, for the alert input; True when it acted."""
        wanted = self._seek_to
        if (
            wanted is None
            or self._seek is None
            or not self._owned
            or not self._overshot
            or self._clock() - self._sought_at < SEEK_PATIENCE
        ):
            return False
        if self._reseeks >= RESEEKS_BEFORE_GIVING_UP:
            log.error(
                "alert input record %d never came after %d seeks; taking the records after it",
                wanted, self._reseeks,
            )  # fmt: skip
            self._seek_to = None
            self._metrics.reseeks.labels("alerts-gave-up").inc()
            return True
        generation = self._generation
        landed = await self._seek((ALERT_INPUT, ALERT_PARTITION), wanted)
        if generation != self._generation or self._seek_to != wanted:
            return True  # ownership or the sought record changed meanwhile
        target = max(wanted, landed) if isinstance(landed, int) else wanted
        log.warning(
            "alert input record %d never came while later ones did; sought again, resuming at %d",
            wanted, target,
        )  # fmt: skip
        if self._next_offset is not None and target > self._next_offset:
            self._next_offset = target
        reseeks = self._reseeks + 1 if target == wanted else 0
        self._await_record(target)
        self._reseeks = reseeks
        self._metrics.reseeks.labels("alerts").inc()
        return True

    def resume_offsets(self) -> dict[TopicPartition, int]:
        """As StreamWorker.resume_offsets: where the consumer must resume the alert input."""
        if not self._owned or not self._ready.is_set() or self._next_offset is None:
            return {}
        self._await_record(self._next_offset)
        return {(ALERT_INPUT, ALERT_PARTITION): self._next_offset}

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        if (ALERT_INPUT, ALERT_PARTITION) in revoked and self._owned:
            try:
                await self.checkpoint()
            finally:  # as StreamWorker.revoke: the next owner replays from the last checkpoint
                self._owned = False
                self._metrics.owned_partitions.labels("alerts").set(0)

    # ---- the owner's work -----------------------------------------------------------------

    async def on_input_record(
        self, partition: int, offset: int, value: bytes, timestamp: float | None = None
    ) -> None:
        """One record of the alert input; its broker timestamp is the engine's `now`.

        With the record's own time, a replay after a restart evaluates `for` durations and
        escalations at the same moments as the first run, so the same seq means the same
        transition.
        """
        if partition != ALERT_PARTITION or not self._owned:
            return
        if not self._ready.is_set():
            await self._ready.wait()
        if not self._owned or not self._accepts(offset):
            return
        now = timestamp if timestamp else self._clock()
        try:
            records = json.loads(value)
            if not isinstance(records, list):
                raise TypeError("not a list")
        except (ValueError, TypeError):
            log.warning("skipping an unreadable alert input at offset %d", offset)
            records = []
        for record in records:
            await self._publish(self._apply(record, now))
        self._next_offset = offset + 1
        self._changed = True

    def _apply(self, record: Any, now: float) -> list[AlertTransition]:
        kind = record.get("kind") if isinstance(record, dict) else None
        if kind in ("kpi", "freshness") and record.get("sector") not in self._sectors:
            return []  # another catalog's worker group shares the topic (tests do)
        if kind == "tick":
            transitions = self._engine.tick(now)
            self._update_gauges()
            return transitions
        if kind == "kpi":
            return self._engine.on_kpi(record, now)
        if kind == "freshness":
            return self._engine.on_freshness(record, now)
        if kind == "action":
            try:
                action = AlertAction.from_json(record)
            except RecordError as exc:
                self._metrics.alert_actions.labels("invalid", exc.args[0].split(":")[0]).inc()
                return []
            transitions, rejection = self._engine.on_action(action, now)
            if rejection is not None:
                self._metrics.alert_actions.labels(action.action, rejection).inc()
                log.info("alert action %s rejected: %s", action.action_id, rejection)
            else:
                self._metrics.alert_actions.labels(action.action, "applied").inc()
            return transitions
        return []

    async def tick(self) -> None:
        """Put a tick on the alert input (a timer calls this on the owner).

        Ticks travel through the input like everything else, so that after a restart the
        replay interleaves `for` durations, escalations and actions exactly as the first run
        did: every input of the engine, and its time, comes from the log.
        """
        if self._owned:
            await self._sink.send(
                ALERT_INPUT, b"alerts", _encode([{"kind": "tick"}]), ALERT_PARTITION
            )

    async def _publish(self, transitions: list[AlertTransition]) -> None:
        for transition in transitions:
            await self._sink.send(ALERTS, transition.fingerprint.encode(), transition.encode())
            self._metrics.alert_transitions.labels(
                transition.transition, transition.severity, transition.sector
            ).inc()
            if transition.transition == "escalate":
                self._metrics.escalations.labels(transition.sector).inc()

    def _update_gauges(self) -> None:
        counts: dict[tuple[str, str, str], int] = {}
        for alert in self._engine.open_alerts():
            key = (alert.state, alert.severity, alert.sector)
            counts[key] = counts.get(key, 0) + 1
        self._metrics.open_alerts.clear()
        for (state, severity, sector), count in counts.items():
            self._metrics.open_alerts.labels(state, severity, sector).set(count)

    def _accepts(self, offset: int) -> bool:
        if self._seek_to is not None:  # records fetched before the seek took effect
            if offset != self._seek_to:
                self._overshot = self._overshot or offset > self._seek_to
                return False
            self._seek_to = None
        return self._next_offset is None or offset >= self._next_offset

    async def checkpoint(self) -> int:
        if not self._owned or not self._changed or self._next_offset is None:
            return 0
        state = {"epoch": self._epoch, "engine": self._engine.snapshot()}
        await self._sink.flush()  # transitions sent before the snapshot are on the broker
        await self._store.save(
            [
                Checkpoint(
                    self._consumer,
                    ALERT_INPUT,
                    ALERT_PARTITION,
                    self._next_offset,
                    state,
                    self._clock(),
                )
            ]
        )
        self._changed = False
        return 1


def _encode(records: list[dict[str, Any]]) -> bytes:
    return json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()
