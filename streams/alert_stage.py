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
from collections.abc import Callable, Sequence
from typing import Any

from alerts.engine import AlertEngine
from foundation.contract.alerts import AlertAction, AlertTransition, RecordError
from foundation.contract.topics import ALERT_INPUT, ALERTS, BrokerEpoch
from streams.checkpoints import Checkpoint, CheckpointStore, load_with_retries
from streams.cursor import Admission, Cursors, PartitionCursor
from streams.records import encode_entries
from streams.worker import STATE_FORMAT, Record, Sink, TopicPartition
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
        epoch: BrokerEpoch = BrokerEpoch(),  # noqa: B008 - frozen
        clock: Callable[[], float] = time.time,
        acknowledge: Callable[[Any], None] = lambda _token: None,
        is_current: Callable[[Any], bool] = lambda _token: True,
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
        self._acknowledge = acknowledge
        self._is_current = is_current
        self._feed: list[dict[str, Any]] = []
        self._empty_engine = engine.snapshot()
        self._cursors: Cursors[Any] = Cursors()
        self._checkpointing = asyncio.Lock()

    @property
    def owned(self) -> bool:
        return (ALERT_INPUT, ALERT_PARTITION) in self._cursors

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
        await self._sink.send(ALERT_INPUT, b"alerts", encode_entries(batch), ALERT_PARTITION)

    async def forward_action(self, value: bytes) -> None:
        """An action from ioc.alert-actions, checked, onto the alert input."""
        try:
            action = AlertAction.decode(value)
        except RecordError as exc:
            self._metrics.alert_actions.labels("invalid", exc.args[0].split(":")[0]).inc()
            log.warning("ignoring an unreadable alert action: %s", exc)
            return
        value = encode_entries([action.to_json()])
        await self._sink.send(ALERT_INPUT, b"alerts", value, ALERT_PARTITION)

    # ---- ownership --------------------------------------------------------------------

    async def assign(self, assigned: set[TopicPartition]) -> None:
        """Owner of the alert state when partition 0 of the alert input is assigned here."""
        opened = self._cursors.open(tp for tp in assigned if tp == (ALERT_INPUT, ALERT_PARTITION))
        if not opened:
            return
        (cursor,) = opened
        try:
            loaded = await load_with_retries(self._store, self._consumer, [cursor.tp])
        except BaseException:
            self._cursors.close([cursor.tp])
            raise
        checkpoint = loaded.get(cursor.tp)
        saved = _state_of(checkpoint)
        if checkpoint is None or saved is None:
            self._engine.restore(self._empty_engine)  # not what a past owner left
            cursor.restore(None)
            how = "fresh"
        else:
            self._engine.restore(saved["engine"])
            if saved.get("epoch") == self._epoch.id:
                cursor.restore(checkpoint.next_offset)
                how = "restored"
            else:  # an earlier broker epoch: the alerts go on from the new topic's start
                cursor.restore(None)
                cursor.mark_changed()
                how = "carried over from an earlier broker epoch"
        self._metrics.owned_partitions.labels("alerts").set(1)
        self._update_gauges()
        log.info("alert stage: owner now (%s)", how)

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        if (ALERT_INPUT, ALERT_PARTITION) in revoked and self.owned:
            try:
                await self.checkpoint()
            finally:  # as StreamWorker.revoke: the next owner replays from the last checkpoint
                self._cursors.close([(ALERT_INPUT, ALERT_PARTITION)])
                self._metrics.owned_partitions.labels("alerts").set(0)

    # ---- the owner's work -----------------------------------------------------------------

    async def on_input_records(self, records: Sequence[Record]) -> None:
        """Records of the alert input; each one's broker timestamp is the engine's `now`.

        With the record's own time, a replay after a restart evaluates `for` durations and
        escalations at the same moments as the first run, so the same seq means the same
        transition.
        """
        for record in records:
            cursor = await self._admit(record)
            if cursor is None:
                continue
            now = record.timestamp if record.timestamp else self._clock()
            try:
                inputs = json.loads(record.value)
                if not isinstance(inputs, list):
                    raise TypeError("not a list")
            except (ValueError, TypeError, RecursionError):
                self._metrics.poison_records.labels(record.topic).inc()
                log.warning("skipping an unreadable alert input at offset %d", record.offset)
                inputs = []
            for item in inputs:
                try:
                    transitions = self._apply(item, now)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    self._metrics.poison_records.labels(record.topic).inc()
                    log.warning(
                        "skipping an unreadable alert input item at offset %d: %s: %s",
                        record.offset, type(exc).__name__, exc,
                    )  # fmt: skip
                    continue
                await self._publish(transitions)
            cursor.taken(record.offset, record.token)

    async def _admit(self, record: Record) -> PartitionCursor[Any] | None:
        if record.partition != ALERT_PARTITION or not self._is_current(record.token):
            return None
        cursor = await self._cursors.ready((record.topic, record.partition))
        if cursor is None or not self._is_current(record.token):
            return None
        admission, lost = cursor.admit(record.offset)
        if admission is Admission.COVERED:
            self._acknowledge(record.token)
            return None
        if lost is not None:
            self._metrics.records_lost.labels(lost.topic).inc(lost.count)
            log.error(
                "alert input records %d…%d (%d) are gone from the broker; the alert state "
                "goes on without them from offset %d",
                lost.first, lost.last, lost.count, record.offset,
            )  # fmt: skip
        return cursor

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
        if self.owned:
            await self._sink.send(
                ALERT_INPUT, b"alerts", encode_entries([{"kind": "tick"}]), ALERT_PARTITION
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

    async def checkpoint(self) -> int:
        async with self._checkpointing:
            cursor = self._cursors.get((ALERT_INPUT, ALERT_PARTITION))
            if cursor is None or not cursor.changed or cursor.next_offset is None:
                return 0
            version = cursor.version
            checkpoint = Checkpoint.of(
                self._consumer,
                cursor.tp,
                cursor.next_offset,
                {
                    "format": STATE_FORMAT,
                    "epoch": self._epoch.id,
                    "generation": self._epoch.generation,
                    "engine": self._engine.snapshot(),
                },
                self._clock(),
            )
            await self._sink.flush()  # transitions sent before the snapshot are on the broker
            await self._store.save([checkpoint])
            for token in cursor.checkpointed(checkpoint.next_offset, version):
                self._acknowledge(token)
            return 1


def _state_of(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    try:
        saved = checkpoint.state()
    except ValueError:
        return None
    if saved.get("format") != STATE_FORMAT:
        log.warning("alert stage: checkpoint in another layout; starting fresh and replaying")
        return None
    return saved
