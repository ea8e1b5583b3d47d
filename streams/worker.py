"""The stream worker's logic around the pure core, free of Faust: the agents only call it.

It owns, per assigned partition, the stage-1 state (event topics: panes and freshness)
or the stage-2 state (the partials topic: series windows), restores it from its
checkpoint on assignment, skips records the state already covers, and checkpoints
state together with the offset it covers. Each partition's position is a
`PartitionCursor`; a record is acknowledged (so Faust may commit past it) only once a
durable checkpoint covers it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from foundation.contract.catalog import Catalog
from foundation.contract.envelope import ContractIndex, Event, Rejection, parse_record
from foundation.contract.kpi import DataGap, encode_record
from foundation.contract.topics import (
    DEADLETTER,
    EVENTS_PREFIX,
    KPI,
    KPI_PARTIALS,
    BrokerEpoch,
    event_topic,
)
from streams.aggregations import as_finite
from streams.checkpoints import Checkpoint, CheckpointStore, load_with_retries
from streams.cursor import Admission, Cursors, LostRecords, PartitionCursor
from streams.freshness import SectorLastSeen, SourceFreshness
from streams.kpi_engine import FUTURE_SKEW, PanePartial, PartitionPanes, SeriesBook
from streams.kpi_plan import KpiPlan
from streams.records import encode_entries
from streams.worker_metrics import WorkerMetrics

__all__ = [
    "STATE_FORMAT",
    "AlertFeed",
    "Record",
    "Sink",
    "StreamWorker",
    "TopicPartition",
]

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
# A dead letter keeps at most this much of the refused record (the size says how much it had).
MAX_DEAD_LETTER_ORIGINAL = 256 * 1024
STAGE1, STAGE2 = "events", "partials"
# Checkpoints written in another layout are not restored (the partition replays instead).
STATE_FORMAT = 2
# What reading back a checkpoint's state or a partial of any shape can raise: the entry is
# refused (a partial) or the partition replayed (a checkpoint), and the worker goes on.
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, RecursionError)


class Record(Protocol):
    """A delivered record (`streams.faust_adapter.Delivered` in production)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...
    @property
    def timestamp(self) -> float | None: ...
    @property
    def token(self) -> Any: ...


class AlertFeed(Protocol):
    """Where KPI points and freshness changes go for alert evaluation (the alert stage)."""

    def offer(self, record: dict[str, Any]) -> None: ...

    async def flush_feed(self) -> None: ...


class Sink(Protocol):
    """Where the worker's records go (the Faust producer in production)."""

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> None: ...

    async def flush(self) -> None:
        """Return when every record sent so far is acknowledged by the broker."""


@dataclass(kw_only=True)
class _EventState:
    panes: PartitionPanes
    freshness: SourceFreshness
    restored_at: float | None = None  # when the restored checkpoint was taken


@dataclass(kw_only=True)
class _PartialState:
    book: SeriesBook
    sectors: SectorLastSeen = field(default_factory=SectorLastSeen)


def _no_ack(_token: Any) -> None:
    return None


def _always(_token: Any) -> bool:
    return True


class StreamWorker:
    """Validation, dead letters, KPI panes and windows, freshness; checkpointed per partition."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        store: CheckpointStore,
        sink: Sink,
        metrics: WorkerMetrics,
        partition_of: Callable[[str], int],
        group: str = "ioc-worker",
        epoch: BrokerEpoch = BrokerEpoch(),  # noqa: B008 - frozen
        clock: Callable[[], float] = time.time,
        alert_feed: AlertFeed | None = None,
        acknowledge: Callable[[Any], None] = _no_ack,
        is_current: Callable[[Any], bool] = _always,
    ) -> None:
        """`acknowledge(token)` lets the consumer commit past a record once a checkpoint covers
        it; `is_current(token)` says whether a record was fetched under the consumer's current
        generation (an earlier one's records are delivered again and must not count)."""
        self._index = ContractIndex(catalog)
        # KPI points and freshness changes are also handed to the alert stage: offered before
        # they are sent, and the feed is flushed before every snapshot, so a checkpoint never
        # covers a point the alert stage has not been sent.
        self._alert_feed = alert_feed
        self._plan = KpiPlan(catalog)
        self._store = store
        self._sink = sink
        self._metrics = metrics
        self._clock = clock
        self._acknowledge = acknowledge
        self._is_current = is_current
        # Memoised: murmur2 in pure Python took ~2 % of a worker's time, once per partial.
        # Keys are series and sector keys of the catalog, so the cache stays small.
        self._partition_of = functools.lru_cache(maxsize=65536)(partition_of)
        self._epoch = epoch
        # Checkpoints belong to a consumer group and a stage.
        self._stage1 = f"{group}/{STAGE1}"
        self._stage2 = f"{group}/{STAGE2}"
        # Counted per topic here and added to the metrics on each flush: a Prometheus increment
        # takes a lock, too much for every record.
        self._sector_of_topic = {s.topic: s.id for s in catalog.sectors}
        self._sectors = [s.id for s in catalog.sectors]
        self._records_seen: dict[str, int] = {}
        self._events_seen: dict[str, int] = {}
        stale_factor = catalog.stale_factor
        # Sources by the partition their key hashes to: a partition's owner watches them.
        self._sources_of: dict[int, dict[str, tuple[str, float]]] = {}
        for sector in catalog.sectors:
            for source in sector.sources:
                owned = self._sources_of.setdefault(partition_of(source.id), {})
                owned[source.id] = (sector.id, source.cadence * stale_factor)
        self.last_checkpoint_ok = clock()  # for /healthz: state that cannot be saved is at risk
        self._event_cursors: Cursors[Any] = Cursors()
        self._partial_cursors: Cursors[Any] = Cursors()
        self._events: dict[TopicPartition, _EventState] = {}
        self._partials: dict[TopicPartition, _PartialState] = {}
        # One checkpoint at a time: a revoke's checkpoint must not be overtaken by an older one
        # (its records acknowledged, then an older state saved over it, would be lost).
        self._checkpointing = asyncio.Lock()

    # ---- assignment ---------------------------------------------------------------

    async def assign(self, assigned: set[TopicPartition]) -> None:
        """Open and restore the newly assigned partitions.

        No seek: the consumer resumes at the committed offset, which never runs ahead of the
        checkpoint (records are acknowledged only once a checkpoint covers them); what the
        restored state covers is skipped as it comes.
        """
        now = self._clock()
        started = time.monotonic()
        events = self._event_cursors.open(tp for tp in assigned if tp[0].startswith(EVENTS_PREFIX))
        partials = self._partial_cursors.open(tp for tp in assigned if tp[0] == KPI_PARTIALS)
        for cursor in events:
            self._events[cursor.tp] = _EventState(
                panes=PartitionPanes(
                    self._plan, f"{cursor.topic}:{cursor.partition}",
                    generation=self._epoch.generation,
                ),
                freshness=SourceFreshness(
                    {
                        s: v
                        for s, v in self._sources_of.get(cursor.partition, {}).items()
                        if event_topic(v[0]) == cursor.topic
                    },
                    now=now,
                ),
            )  # fmt: skip
        for cursor in partials:
            self._partials[cursor.tp] = _PartialState(
                book=SeriesBook(self._plan, generation=self._epoch.generation)
            )
        try:
            loaded = await load_with_retries(self._store, self._stage1, [c.tp for c in events])
            loaded_partials = await load_with_retries(
                self._store, self._stage2, [c.tp for c in partials]
            )
        except BaseException:  # not restored: give the partitions up (the app crashes)
            self._forget({c.tp for c in (*events, *partials)})
            raise
        restored = carried = 0
        for cursor in events:
            checkpoint = self._usable(loaded.get(cursor.tp))
            state = self._events[cursor.tp]
            if checkpoint is None:
                cursor.restore(None)
                continue
            saved = checkpoint.state()
            if not self._restored(
                checkpoint, functools.partial(state.panes.restore, saved.get("panes"))
            ):
                cursor.restore(None)
                continue
            state.freshness.restore(saved["freshness"])
            state.restored_at = checkpoint.taken_at
            if saved.get("epoch") == self._epoch.id:
                cursor.restore(checkpoint.next_offset)
                restored += 1
            else:
                # The broker lost its topics: the state goes on from the new topics' start,
                # and every pane is handed on again in case stage 2 missed one.
                state.panes.mark_all_dirty()
                cursor.restore(None)
                cursor.mark_changed()
                carried += 1
        for cursor in partials:
            checkpoint = self._usable(loaded_partials.get(cursor.tp))
            pstate = self._partials[cursor.tp]
            if checkpoint is None:
                cursor.restore(None)
                continue
            saved = checkpoint.state()
            restore = functools.partial(
                pstate.book.restore, saved.get("book"), now=now, taken_at=checkpoint.taken_at
            )
            if not self._restored(checkpoint, restore):
                cursor.restore(None)
                continue
            pstate.sectors.restore(saved.get("sectors", {}))
            if saved.get("epoch") == self._epoch.id:
                cursor.restore(checkpoint.next_offset)
                restored += 1
            else:
                cursor.restore(None)
                cursor.mark_changed()
                carried += 1
        self._update_gauges()
        if events or partials:
            log.info(
                "assigned %d event and %d partial partitions (%d restored from checkpoints) "
                "in %.2f s",
                len(events), len(partials), restored, time.monotonic() - started,
            )  # fmt: skip
        if carried:
            log.warning(
                "%d partitions carried their state over from an earlier broker epoch", carried
            )

    def _restored(self, checkpoint: Checkpoint, restore: Callable[[], None]) -> bool:
        """Run a stage's all-or-nothing restore; False (the partition is replayed from its
        start) when a state in the checkpoint cannot be loaded."""
        try:
            restore()
        except UNREADABLE as exc:
            log.warning(
                "%s:%d: checkpoint state unreadable (%s); replaying the partition",
                checkpoint.topic, checkpoint.partition, exc,
            )  # fmt: skip
            return False
        return True

    def _usable(self, checkpoint: Checkpoint | None) -> Checkpoint | None:
        if checkpoint is None:
            return None
        try:
            saved = checkpoint.state()
        except (ValueError, RecursionError):
            saved = {}
        if saved.get("format") != STATE_FORMAT:
            log.warning(
                "%s:%d: checkpoint in another layout (format %r); replaying the partition",
                checkpoint.topic, checkpoint.partition, saved.get("format"),
            )  # fmt: skip
            return None
        if saved.get("epoch") != self._epoch.id:
            log.warning(
                "%s:%d: checkpoint of an earlier broker epoch %s (its topics are gone): its "
                "state goes on from the start of this epoch's topics",
                checkpoint.topic, checkpoint.partition, saved.get("epoch"),
            )  # fmt: skip
        return checkpoint

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Checkpoint what we give up, so that its next owner resumes exactly here.

        The partitions are given up even when the checkpoint fails: their records not covered
        by a durable checkpoint were never acknowledged, so whoever is assigned the partition
        next (this worker too) restores the last checkpoint and gets them again.
        """
        try:
            await self.checkpoint(only=revoked)
        finally:
            self._forget(revoked)

    def _forget(self, tps: set[TopicPartition]) -> None:
        self._event_cursors.close(tps)
        self._partial_cursors.close(tps)
        for tp in tps:
            self._events.pop(tp, None)
            self._partials.pop(tp, None)
        self._update_gauges()

    # ---- stage 1 --------------------------------------------------------------------

    async def on_event_records(self, records: Sequence[Record]) -> None:
        """A batch of records from the event topics, in the order the consumer gave them.

        A record whose processing fails (a bug, not bad input: that is dead-lettered with its
        reason) goes to the dead letters as `internal_error` and the batch goes on: nothing
        is dropped silently and no record stops the stream.
        """
        for record in records:
            cursor = await self._admit(self._event_cursors, record)
            if cursor is None:
                continue
            try:
                await self._take_event_record(record)
            except Exception as exc:
                log.exception(
                    "%s:%d@%d: processing failed", record.topic, record.partition, record.offset
                )
                await self._internal_error(record, exc)
            cursor.taken(record.offset, record.token)

    async def _admit(self, cursors: Cursors[Any], record: Record) -> PartitionCursor[Any] | None:
        """The record's cursor when the record is to be taken; None to step over it."""
        if not self._is_current(record.token):
            return None  # fetched before a rebalance: delivered again, unacknowledged
        tp = (record.topic, record.partition)
        cursor = await cursors.ready(tp)
        if cursor is None or not self._is_current(record.token):
            return None  # not ours (any more): the consumer stops delivering it
        admission, lost = cursor.admit(record.offset)
        if admission is Admission.COVERED:
            self._acknowledge(record.token)  # in the restored state already
            return None
        if lost is not None:
            await self._report_lost(lost, record)
        return cursor

    async def _report_lost(self, lost: LostRecords, record: Record) -> None:
        """Records the restored state needed are gone: counted, logged, shown as a gap."""
        self._metrics.records_lost.labels(lost.topic).inc(lost.count)
        log.error(
            "%s:%d: records %d…%d (%d) are gone from the broker (retention, or a lost broker); "
            "the state goes on without them from offset %d",
            lost.topic, lost.partition, lost.first, lost.last, lost.count, record.offset,
        )  # fmt: skip
        now = self._clock()
        end = record.timestamp if record.timestamp else now
        if lost.topic.startswith(EVENTS_PREFIX):
            state = self._events.get((lost.topic, lost.partition))
            sectors = [self._sector_of_topic.get(lost.topic, lost.topic)]
            start = state.restored_at if state and state.restored_at is not None else end
        else:  # the partials of every sector may be among them
            sectors, start = list(self._sectors), end
        for sector in sectors:
            gap = DataGap(
                sector, lost.topic, lost.partition, lost.first, lost.last, lost.count,
                min(start, end), end, now,
            )  # fmt: skip
            await self._sink.send(KPI, f"gap|{sector}".encode(), gap.encode())

    async def _take_event_record(self, record: Record) -> None:
        tp = (record.topic, record.partition)
        state = self._events[tp]
        now = self._clock()
        topic, offset, value = record.topic, record.offset, record.value
        self._records_seen[topic] = self._records_seen.get(topic, 0) + 1
        sender = _key_text(record.key)
        result = parse_record(value, self._index, now=now, key=sender)
        for rejection in result.rejections:
            await self._dead_letter(rejection, record, result.batch, now)
        if result.events:
            self._events_seen[topic] = self._events_seen.get(topic, 0) + len(result.events)
            for source in {e.source for e in result.events}:
                state.freshness.seen(source, now)
            for late in state.panes.add(result.events, offset=offset, now=now):
                self._metrics.late_events.inc()
                await self._dead_letter_event(late, record, now)
        else:
            state.panes.next_offset = offset + 1

    async def _internal_error(self, record: Record, exc: Exception) -> None:
        state = self._events.get((record.topic, record.partition))
        if state is not None:
            state.panes.next_offset = record.offset + 1
        rejection = Rejection(
            "internal_error",
            detail=f"{type(exc).__name__}: {exc}"[:500],
            source=_key_text(record.key),
        )
        try:
            await self._send_dead_letter(rejection, record, record.value, self._clock())
        except Exception:  # the producer itself fails: the log above is what remains
            log.exception(
                "%s:%d@%d: dead letter not sent", record.topic, record.partition, record.offset
            )

    async def _dead_letter(
        self, rejection: Rejection, record: Record, batch: bool, now: float
    ) -> None:
        # The reason without its suffix: a sender chooses `unknown_field:<name>`, and labels
        # must stay few.
        self._metrics.rejects.labels(rejection.reason.split(":", 1)[0]).inc()
        if batch and rejection.position is not None:
            original = _element_bytes(record.value, rejection.position)
        else:
            original = record.value
        await self._send_dead_letter(rejection, record, original, now)

    async def _dead_letter_event(self, event: Event, record: Record, now: float) -> None:
        rejection = Rejection(
            "too_late", detail="every window of the event is past its grace",
            source=event.source, event_id=event.event_id,
        )  # fmt: skip
        original = json.dumps(event.to_json(), ensure_ascii=False).encode()
        await self._send_dead_letter(rejection, record, original, now)

    async def _send_dead_letter(
        self, rejection: Rejection, record: Record, original: bytes, now: float
    ) -> None:
        # A dead letter belongs to who sent the record (its key: the department's source id),
        # and names the source the body claims when that is a registered one.
        sender = _key_text(record.key)
        dead_letter = {
            "reason": rejection.reason,
            "detail": rejection.detail,
            "sender": sender,
            "source": rejection.source,
            "event_id": rejection.event_id,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "index": rejection.position,
            "received_at": now,
            # base64 of a 1 MB record would exceed 1 MB: the first part, and the whole size
            "original_b64": base64.b64encode(original[:MAX_DEAD_LETTER_ORIGINAL]).decode(),
            "original_size": len(original),
        }
        key = sender if sender is not None else (rejection.source or "")
        await self._sink.send(DEADLETTER, key.encode(), encode_record(dead_letter))

    def _publish_counts(self) -> None:
        for seen, metric in (
            (self._records_seen, self._metrics.records_in),
            (self._events_seen, self._metrics.events_in),
        ):
            for topic, count in seen.items():
                metric.labels(self._sector_of_topic.get(topic, topic)).inc(count)
            seen.clear()

    async def flush_stage1(self) -> None:
        """Send changed panes to stage 2 and freshness changes to ioc.kpi (a timer calls this)."""
        now = self._clock()
        self._publish_counts()
        stale = 0
        # One record per stage-2 partition and flush: a Faust agent pays per record, not per
        # partial. Each partial goes where its series key hashes, as if keyed by it.
        outgoing: dict[int, list[dict[str, Any]]] = {}
        for cursor in self._event_cursors:
            state = self._events.get(cursor.tp)
            if state is None or not cursor.restored:
                continue
            for partial in state.panes.drain(now):
                outgoing.setdefault(self._partition_of(partial.series), []).append(
                    partial.to_json()
                )
            # Sector last-seen: a sector's sources hash to several partitions, so its maximum
            # is kept in stage 2, where `sector|<id>` hashes to.
            for sector, at in state.freshness.drain_recent().items():
                outgoing.setdefault(self._partition_of(f"sector|{sector}"), []).append(
                    {"kind": "seen", "sector": sector, "last_seen": at}
                )
            for change in state.freshness.changes(now):
                self._metrics.freshness_changes.labels(change.state).inc()
                record = change.to_json()
                if self._alert_feed is not None:
                    self._alert_feed.offer(record)
                await self._sink.send(KPI, f"freshness|{change.source}".encode(), change.encode())
                cursor.mark_changed()
            stale += state.freshness.stale_count()
        self._metrics.stale_sources.set(stale)
        for partition, partials in outgoing.items():
            await self._sink.send(KPI_PARTIALS, b"partials", encode_entries(partials), partition)

    # ---- stage 2 --------------------------------------------------------------------

    async def on_partial_records(self, records: Sequence[Record]) -> None:
        """A batch of records from the partials topic (stage 1's pane states).

        The points they make due are published at once, not at the next timer tick: the
        tick's wait (up to `flush_interval`, longer on a busy loop) was the largest part of
        the worker's share of event-to-pixel latency. The timer still publishes what
        becomes due with time alone (finals after the grace, coalesced points).
        """
        touched: dict[TopicPartition, PartitionCursor[Any]] = {}
        for record in records:
            cursor = await self._admit(self._partial_cursors, record)
            if cursor is None:
                continue
            self._take_partial_record(record)
            cursor.taken(record.offset, record.token)
            touched[cursor.tp] = cursor
        now = self._clock()
        for cursor in touched.values():
            await self._publish_due(cursor, now)

    def _take_partial_record(self, record: Record) -> None:
        state = self._partials[(record.topic, record.partition)]
        now = self._clock()
        try:
            entries = json.loads(record.value)
            if not isinstance(entries, list):
                raise ValueError("partials come as a list")
        except (ValueError, RecursionError):
            self._poison_partials(record)
            return
        refused = 0
        for entry in entries:
            # Each on its own: one of the wrong shape costs itself, not the record's others.
            try:
                if isinstance(entry, dict) and entry.get("kind") == "seen":
                    sector, last_seen = entry["sector"], as_finite(entry["last_seen"])
                    if sector not in self._sectors or last_seen > now + FUTURE_SKEW:
                        raise ValueError("not a sector of the catalog, or seen in the future")
                    state.sectors.seen(sector, last_seen)
                else:
                    state.book.apply(PanePartial.from_json(entry), now=now)
            except UNREADABLE:
                refused += 1
        if refused:
            self._poison_partials(record, refused)

    def _poison_partials(self, record: Record, refused: int | None = None) -> None:
        self._metrics.poison_records.labels(record.topic).inc()
        log.warning(
            "skipping unreadable partials at %s:%d@%d (%s)",
            record.topic, record.partition, record.offset,
            "the whole record" if refused is None else f"{refused} of its entries",
        )  # fmt: skip

    async def flush_stage2(self) -> None:
        """Publish the KPI points that are due (a timer calls this)."""
        now = self._clock()
        for cursor in self._partial_cursors:
            await self._publish_due(cursor, now)

    async def _publish_due(self, cursor: PartitionCursor[Any], now: float) -> None:
        state = self._partials.get(cursor.tp)
        if state is None or not cursor.restored:
            return
        for point in state.book.due(now):
            record = point.to_json()
            if self._alert_feed is not None:
                self._alert_feed.offer(record)
            await self._sink.send(KPI, point.series.encode(), encode_record(record))
            self._metrics.kpi_points_out.labels(str(point.final).lower()).inc()
            if point.newest:
                self._metrics.event_to_kpi_latency.observe(max(0.0, now - point.newest))
            cursor.mark_changed()
        for seen in state.sectors.due(now):
            await self._sink.send(KPI, f"sector|{seen.sector}".encode(), seen.encode())
            cursor.mark_changed()

    # ---- checkpoints ------------------------------------------------------------------

    async def checkpoint(self, only: set[TopicPartition] | None = None) -> int:
        """Save every changed partition's state with its offset; returns how many were saved.

        The states are serialised at once, before any await, so each holds exactly the
        records before its offset. Then what was sent is flushed to the broker, the states
        are saved, and the records they cover are acknowledged.
        """
        async with self._checkpointing:
            if self._alert_feed is not None:
                await self._alert_feed.flush_feed()  # no await between this and the snapshots
            now = self._clock()
            taken: list[tuple[PartitionCursor[Any], Checkpoint, int]] = []
            for cursor in self._event_cursors:
                if self._due(cursor, only):
                    state = self._events[cursor.tp]
                    snapshot = {
                        "format": STATE_FORMAT,
                        "epoch": self._epoch.id,
                        "generation": self._epoch.generation,
                        "panes": state.panes.snapshot(),
                        "freshness": state.freshness.snapshot(),
                    }
                    taken.append(self._take(cursor, self._stage1, snapshot, now))
            for cursor in self._partial_cursors:
                if self._due(cursor, only):
                    pstate = self._partials[cursor.tp]
                    snapshot = {
                        "format": STATE_FORMAT,
                        "epoch": self._epoch.id,
                        "generation": self._epoch.generation,
                        "book": pstate.book.snapshot(),
                        "sectors": pstate.sectors.snapshot(),
                    }
                    taken.append(self._take(cursor, self._stage2, snapshot, now))
            if not taken:
                self.last_checkpoint_ok = now
                return 0
            started = time.monotonic()
            # What was sent before these snapshots must be on the broker before they count as
            # done: a restored partition re-sends only what its snapshot still marks as changed.
            await self._sink.flush()
            await self._store.save([checkpoint for _c, checkpoint, _v in taken])
            self.last_checkpoint_ok = now
            self._metrics.checkpoint_seconds.observe(time.monotonic() - started)
            for cursor, checkpoint, version in taken:
                for token in cursor.checkpointed(checkpoint.next_offset, version):
                    self._acknowledge(token)
            return len(taken)

    @staticmethod
    def _due(cursor: PartitionCursor[Any], only: set[TopicPartition] | None) -> bool:
        return (
            (only is None or cursor.tp in only)
            and cursor.restored
            and cursor.changed
            and cursor.next_offset is not None
        )

    @staticmethod
    def _take(
        cursor: PartitionCursor[Any], consumer: str, snapshot: dict[str, Any], now: float
    ) -> tuple[PartitionCursor[Any], Checkpoint, int]:
        next_offset = cursor.next_offset or 0  # _due: never None here
        return (
            cursor,
            Checkpoint.of(consumer, cursor.tp, next_offset, snapshot, now),
            cursor.version,
        )

    # ---- helpers ------------------------------------------------------------------------

    def _update_gauges(self) -> None:
        self._metrics.owned_partitions.labels(STAGE1).set(len(self._event_cursors))
        self._metrics.owned_partitions.labels(STAGE2).set(len(self._partial_cursors))


def _key_text(key: bytes | None) -> str | None:
    return key.decode("utf-8", "replace") if key else None


def _element_bytes(value: bytes, position: int) -> bytes:
    try:
        return json.dumps(json.loads(value)[position], ensure_ascii=False).encode()
    except (ValueError, IndexError, TypeError, RecursionError):
        return value
