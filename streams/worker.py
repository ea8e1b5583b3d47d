"""The stream worker's logic around the pure core, free of Faust: the agents only call it.

It owns, per assigned partition, the stage-1 state (event topics: panes and freshness)
or the stage-2 state (the partials topic: series windows), restores it from its
checkpoint on assignment, skips records the state already covers, and checkpoints
state together with the offset it covers.
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
from foundation.contract.topics import DEADLETTER, EVENTS_PREFIX, KPI, KPI_PARTIALS, event_topic
from streams.checkpoints import Checkpoint, CheckpointStore
from streams.freshness import SectorLastSeen, SourceFreshness
from streams.kpi_engine import PanePartial, PartitionPanes, SeriesBook
from streams.kpi_plan import KpiPlan
from streams.worker_metrics import WorkerMetrics

__all__ = ["AlertFeed", "EventRecord", "Sink", "StreamWorker", "TopicPartition"]

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
# How long a sought record may be missing while later records come, before seeking again.
SEEK_PATIENCE = 10.0
RESEEKS_BEFORE_GIVING_UP = 3
# A dead letter keeps at most this much of the refused record (the size says how much it had).
MAX_DEAD_LETTER_ORIGINAL = 256 * 1024
EventRecord = tuple[str, int, int, bytes | None, bytes]  # topic, partition, offset, key, value
STAGE1, STAGE2 = "events", "partials"


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
class _Slot:
    """A partition this worker owns."""

    next_offset: int | None = None  # None: no checkpoint, take what the consumer gives
    seek_to: int | None = None  # records before the seek took effect are dropped
    sought_at: float = 0.0  # when seek_to was set
    overshot: bool = False  # a record past seek_to came while seek_to had not
    reseeks: int = 0  # seeks the watchdog repeated for the same seek_to
    changed: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(kw_only=True)
class _EventSlot(_Slot):
    panes: PartitionPanes
    freshness: SourceFreshness


@dataclass(kw_only=True)
class _PartialSlot(_Slot):
    book: SeriesBook
    sectors: SectorLastSeen = field(default_factory=SectorLastSeen)


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
        epoch: str = "",
        clock: Callable[[], float] = time.time,
        alert_feed: AlertFeed | None = None,
    ) -> None:
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
        # Memoised: murmur2 in pure Python took ~2 % of a worker's time, once per partial.
        # Keys are series and sector keys of the catalog, so the cache stays small.
        self._partition_of = functools.lru_cache(maxsize=65536)(partition_of)
        # Checkpoints from another broker epoch hold offsets of topics that no longer exist.
        self._epoch = epoch
        # Checkpoints belong to a consumer group and a stage.
        self._stage1 = f"{group}/{STAGE1}"
        self._stage2 = f"{group}/{STAGE2}"
        # Counted per topic here and added to the metrics on each flush: a Prometheus increment
        # takes a lock, too much for every record.
        self._sector_of_topic = {s.topic: s.id for s in catalog.sectors}
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
        self._events: dict[TopicPartition, _EventSlot] = {}
        self._partials: dict[TopicPartition, _PartialSlot] = {}
        self._seek: Callable[[TopicPartition, int], Any] | None = None

    # ---- assignment ---------------------------------------------------------------

    async def assign(
        self, assigned: set[TopicPartition], seek: Callable[[TopicPartition, int], Any]
    ) -> None:
        """Restore state for newly assigned partitions and seek each to its checkpoint."""
        self._seek = seek
        now = self._clock()
        started = time.monotonic()
        fresh_events = sorted(
            tp for tp in assigned if tp[0].startswith(EVENTS_PREFIX) and tp not in self._events
        )
        fresh_partials = sorted(
            tp for tp in assigned if tp[0] == KPI_PARTIALS and tp not in self._partials
        )
        for tp in fresh_events:
            self._events[tp] = _EventSlot(
                panes=PartitionPanes(self._plan, f"{tp[0]}:{tp[1]}"),
                freshness=SourceFreshness(
                    {
                        s: v
                        for s, v in self._sources_of.get(tp[1], {}).items()
                        if event_topic(v[0]) == tp[0]
                    },
                    now=now,
                ),
            )
        for tp in fresh_partials:
            self._partials[tp] = _PartialSlot(book=SeriesBook(self._plan))
        loaded = self._same_epoch(await self._store.load(self._stage1, fresh_events))
        loaded_partials = self._same_epoch(await self._store.load(self._stage2, fresh_partials))
        for tp, cp in loaded.items():
            slot = self._events[tp]
            slot.panes.restore(cp.state["panes"])
            slot.freshness.restore(cp.state["freshness"])
            slot.next_offset = cp.next_offset
        for tp, cp in loaded_partials.items():
            slot2 = self._partials[tp]
            slot2.book.restore(cp.state["book"], now=now, taken_at=cp.taken_at)
            slot2.sectors.restore(cp.state.get("sectors", {}))
            slot2.next_offset = cp.next_offset
        # Every new partition is sought, restored or not: to its checkpoint's offset, or to
        # its first record. No offset is committed for the worker's topics, so whatever the
        # consumer fetched before (from where it stood) is skipped until that record. The
        # seeks run together: one after another they took ~1 s for the 48 of a full catalog.
        fresh = [*fresh_events, *fresh_partials]
        slots: list[_Slot] = [self._events.get(tp) or self._partials[tp] for tp in fresh]
        starts = [s.next_offset if s.next_offset is not None else 0 for s in slots]
        landings = await asyncio.gather(*(seek(tp, o) for tp, o in zip(fresh, starts, strict=True)))
        for tp, slot_any, start, landed in zip(fresh, slots, starts, landings, strict=True):
            target = max(start, landed) if isinstance(landed, int) else start
            if slot_any.next_offset is not None and target > start:
                # The broker dropped the checkpoint's records (retention): resume at the first
                # record still there.
                log.warning(
                    "%s:%d: records %d…%d are gone from the broker (retention); resuming at %d",
                    tp[0], tp[1], start, target - 1, target,
                )  # fmt: skip
            slot_any.next_offset = target
            _await_record(slot_any, target, self._clock())
            slot_any.ready.set()
        self._update_gauges()
        if fresh:
            log.info(
                "assigned %d event and %d partial partitions (%d restored from checkpoints) "
                "in %.2f s",
                len(fresh_events), len(fresh_partials), len(loaded) + len(loaded_partials),
                time.monotonic() - started,
            )  # fmt: skip

    def _same_epoch(
        self, loaded: dict[TopicPartition, Checkpoint]
    ) -> dict[TopicPartition, Checkpoint]:
        kept = {tp: cp for tp, cp in loaded.items() if cp.state.get("epoch") == self._epoch}
        if len(kept) < len(loaded):
            log.warning(
                "ignoring %d checkpoints of an earlier broker epoch (its topics are gone)",
                len(loaded) - len(kept),
            )
        return kept

    async def watch_seeks(self) -> int:
        """Seek again where a sought record never came although later ones did (a timer calls
        this). The consumer then stood past it: the broker dropped it meanwhile (retention
        between our earliest-offset question and the fetch) or something moved the position.
        Without this the partition would wait for it forever. After RESEEKS_BEFORE_GIVING_UP
        seeks that did not bring it, the next record after it is taken and the gap logged.
        Returns how many partitions were acted on.
        """
        acted = 0
        for stage, slots in ((STAGE1, self._events), (STAGE2, self._partials)):
            for tp, slot in list(slots.items()):
                if (
                    self._seek is None
                    or slot.seek_to is None
                    or not slot.overshot
                    or self._clock() - slot.sought_at < SEEK_PATIENCE
                ):
                    continue
                wanted = slot.seek_to
                acted += 1
                if slot.reseeks >= RESEEKS_BEFORE_GIVING_UP:
                    log.error(
                        "%s:%d: record %d never came after %d seeks; taking the records after "
                        "it (whatever lies between is not counted)",
                        tp[0], tp[1], wanted, slot.reseeks,
                    )  # fmt: skip
                    slot.seek_to = None  # offset >= next_offset from here on
                    self._metrics.reseeks.labels(f"{stage}-gave-up").inc()
                    continue
                try:
                    landed = await self._seek(tp, wanted)
                except Exception as exc:  # the next tick tries again
                    log.warning("%s:%d: seeking again failed: %s", tp[0], tp[1], exc)
                    continue
                if slots.get(tp) is not slot or slot.seek_to != wanted:
                    continue  # a rebalance or a rewind replaced it meanwhile
                target = max(wanted, landed) if isinstance(landed, int) else wanted
                log.warning(
                    "%s:%d: record %d never came while later ones did; sought again, resuming "
                    "at %d%s",
                    tp[0], tp[1], wanted, target,
                    f" (records {wanted}…{target - 1} are gone)" if target > wanted else "",
                )  # fmt: skip
                if slot.next_offset is not None and target > slot.next_offset:
                    slot.next_offset = target
                reseeks = slot.reseeks + 1 if target == wanted else 0
                _await_record(slot, target, self._clock())
                slot.reseeks = reseeks
                self._metrics.reseeks.labels(stage).inc()
        return acted

    def resume_offsets(self) -> dict[TopicPartition, int]:
        """Where the consumer must resume each partition held here: the next record its state
        needs. Faust calls for this when it rewinds after a rebalance (our checkpoints stand in
        for committed offsets); each partition then skips records until that one arrives."""
        offsets: dict[TopicPartition, int] = {}
        for slots in (self._events, self._partials):
            for tp, slot in slots.items():
                if slot.ready.is_set() and slot.next_offset is not None:
                    _await_record(slot, slot.next_offset, self._clock())
                    offsets[tp] = slot.next_offset
        return offsets

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Checkpoint what we give up, so that its next owner resumes exactly here.

        The partitions are given up even when the checkpoint fails: records fetched before the
        rebalance are dropped by the consumer, and no offset is committed to fetch them again,
        so keeping the in-memory state past them would lose them. Whoever is assigned the
        partition next (this worker too) restores the last checkpoint and replays from it.
        """
        try:
            await self.checkpoint(only=revoked)
        finally:
            for tp in revoked:
                self._events.pop(tp, None)
                self._partials.pop(tp, None)
            self._update_gauges()

    # ---- stage 1 --------------------------------------------------------------------

    async def on_event_records(self, records: Sequence[EventRecord]) -> None:
        """A batch of records from the event topics, in the order the consumer gave them.

        A record whose processing fails (a bug, not bad input: that is dead-lettered with its
        reason) goes to the dead letters as `internal_error` and the batch goes on: nothing
        is dropped silently and no record stops the stream.
        """
        for topic, partition, offset, key, value in records:
            try:
                await self.on_event_record(topic, partition, offset, key, value)
            except Exception as exc:
                log.exception("%s:%d@%d: processing failed", topic, partition, offset)
                await self._internal_error(topic, partition, offset, key, value, exc)

    async def _internal_error(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        exc: Exception,
    ) -> None:
        slot = self._events.get((topic, partition))
        if slot is not None and slot.next_offset is not None and offset >= slot.next_offset:
            slot.next_offset = offset + 1
            slot.changed = True
        source = key.decode("utf-8", "replace") if key else None
        rejection = Rejection(
            "internal_error", detail=f"{type(exc).__name__}: {exc}"[:500], source=source
        )
        try:
            await self._dead_letter(
                rejection, topic, partition, offset, value, False, self._clock()
            )
        except Exception:  # the producer itself fails: the log above is what remains
            log.exception("%s:%d@%d: dead letter not sent", topic, partition, offset)

    async def on_event_record(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes
    ) -> None:
        slot = await self._slot(self._events, (topic, partition))
        if slot is None or not _accepts(slot, offset):
            return
        now = self._clock()
        self._records_seen[topic] = self._records_seen.get(topic, 0) + 1
        source_key = key.decode("utf-8", "replace") if key else None
        result = parse_record(value, self._index, now=now, key=source_key)
        for rejection in result.rejections:
            await self._dead_letter(rejection, topic, partition, offset, value, result.batch, now)
        if result.events:
            self._events_seen[topic] = self._events_seen.get(topic, 0) + len(result.events)
            for source in {e.source for e in result.events}:
                slot.freshness.seen(source, now)
            for late in slot.panes.add(result.events, offset=offset, now=now):
                self._metrics.late_events.inc()
                await self._dead_letter_event(late, topic, partition, offset, now)
        else:
            slot.panes.next_offset = offset + 1
        slot.next_offset = offset + 1
        slot.changed = True

    async def _dead_letter(
        self,
        rejection: Rejection,
        topic: str,
        partition: int,
        offset: int,
        value: bytes,
        batch: bool,
        now: float,
    ) -> None:
        self._metrics.rejects.labels(rejection.reason).inc()
        if batch and rejection.position is not None:
            original = _element_bytes(value, rejection.position)
        else:
            original = value
        await self._send_dead_letter(rejection, topic, partition, offset, original, now)

    async def _dead_letter_event(
        self, event: Event, topic: str, partition: int, offset: int, now: float
    ) -> None:
        rejection = Rejection(
            "too_late", detail="every window of the event is past its grace",
            source=event.source, event_id=event.event_id,
        )  # fmt: skip
        original = json.dumps(event.to_json(), ensure_ascii=False).encode()
        await self._send_dead_letter(rejection, topic, partition, offset, original, now)

    async def _send_dead_letter(
        self,
        rejection: Rejection,
        topic: str,
        partition: int,
        offset: int,
        original: bytes,
        now: float,
    ) -> None:
        record = {
            "reason": rejection.reason,
            "detail": rejection.detail,
            "source": rejection.source,
            "event_id": rejection.event_id,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "index": rejection.position,
            "received_at": now,
            # base64 of a 1 MB record would exceed 1 MB: the first part, and the whole size
            "original_b64": base64.b64encode(original[:MAX_DEAD_LETTER_ORIGINAL]).decode(),
            "original_size": len(original),
        }
        await self._sink.send(DEADLETTER, (rejection.source or "").encode(), _encode(record))

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
        for slot in list(self._events.values()):
            for partial in slot.panes.drain(now):
                outgoing.setdefault(self._partition_of(partial.series), []).append(
                    partial.to_json()
                )
            # Sector last-seen: a sector's sources hash to several partitions, so its maximum
            # is kept in stage 2, where `sector|<id>` hashes to.
            for sector, at in slot.freshness.drain_recent().items():
                outgoing.setdefault(self._partition_of(f"sector|{sector}"), []).append(
                    {"kind": "seen", "sector": sector, "last_seen": at}
                )
            for change in slot.freshness.changes(now):
                self._metrics.freshness_changes.labels(change.state).inc()
                record = change.to_json()
                if self._alert_feed is not None:
                    self._alert_feed.offer(record)
                await self._sink.send(KPI, f"freshness|{change.source}".encode(), _encode(record))
                slot.changed = True
            stale += slot.freshness.stale_count()
        self._metrics.stale_sources.set(stale)
        for partition, partials in outgoing.items():
            await self._sink.send(KPI_PARTIALS, b"partials", _encode_list(partials), partition)

    # ---- stage 2 --------------------------------------------------------------------

    async def on_partial_record(self, partition: int, offset: int, value: bytes) -> None:
        slot = await self._slot(self._partials, (KPI_PARTIALS, partition))
        if slot is None or not _accepts(slot, offset):
            return
        now = self._clock()
        try:
            entries = json.loads(value)
            seen = [
                (e["sector"], float(e["last_seen"])) for e in entries if e.get("kind") == "seen"
            ]
            partials = [PanePartial.from_json(e) for e in entries if e.get("kind") != "seen"]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("skipping unreadable partials at %s:%d@%d", KPI_PARTIALS, partition, offset)
        else:
            for partial in partials:
                slot.book.apply(partial, now=now)
            for sector, at in seen:
                slot.sectors.seen(sector, at)
        slot.next_offset = offset + 1
        slot.changed = True

    async def flush_stage2(self) -> None:
        """Publish the KPI points that are due (a timer calls this)."""
        now = self._clock()
        for slot in list(self._partials.values()):
            for point in slot.book.due(now):
                record = point.to_json()
                if self._alert_feed is not None:
                    self._alert_feed.offer(record)
                await self._sink.send(KPI, point.series.encode(), _encode(record))
                self._metrics.kpi_points_out.labels(str(point.final).lower()).inc()
                if point.newest:
                    self._metrics.event_to_kpi_latency.observe(max(0.0, now - point.newest))
                slot.changed = True
            for record in slot.sectors.due(now):
                await self._sink.send(KPI, f"sector|{record['sector']}".encode(), _encode(record))
                slot.changed = True

    # ---- checkpoints ------------------------------------------------------------------

    async def checkpoint(self, only: set[TopicPartition] | None = None) -> int:
        """Save every changed partition's state with its offset; returns how many were saved."""
        if self._alert_feed is not None:
            await self._alert_feed.flush_feed()  # no await between this and the snapshots
        now = self._clock()
        batch: list[Checkpoint] = []
        for tp, slot in self._events.items():
            if (only is None or tp in only) and slot.changed and slot.next_offset is not None:
                state = {
                    "epoch": self._epoch,
                    "panes": slot.panes.snapshot(),
                    "freshness": slot.freshness.snapshot(),
                }
                batch.append(Checkpoint(self._stage1, tp[0], tp[1], slot.next_offset, state, now))
        for tp, pslot in self._partials.items():
            if (only is None or tp in only) and pslot.changed and pslot.next_offset is not None:
                batch.append(
                    Checkpoint(
                        self._stage2,
                        tp[0],
                        tp[1],
                        pslot.next_offset,
                        {
                            "epoch": self._epoch,
                            "book": pslot.book.snapshot(),
                            "sectors": pslot.sectors.snapshot(),
                        },
                        now,
                    )
                )
        if not batch:
            self.last_checkpoint_ok = now
            return 0
        started = time.monotonic()
        # What was sent before these snapshots must be on the broker before they count as
        # done: a restored partition re-sends only what its snapshot still marks as changed.
        await self._sink.flush()
        await self._store.save(batch)
        self.last_checkpoint_ok = now
        self._metrics.checkpoint_seconds.observe(time.monotonic() - started)
        for cp in batch:
            slot_any: _Slot | None = self._events.get(
                (cp.topic, cp.partition)
            ) or self._partials.get((cp.topic, cp.partition))
            if slot_any is not None and slot_any.next_offset == cp.next_offset:
                slot_any.changed = False
        return len(batch)

    # ---- helpers ------------------------------------------------------------------------

    async def _slot(self, slots: dict[TopicPartition, Any], tp: TopicPartition) -> Any:
        slot = slots.get(tp)
        if slot is None:
            return None  # not ours (any more): the consumer will stop delivering it
        if not slot.ready.is_set():
            await slot.ready.wait()
        return slot

    def _update_gauges(self) -> None:
        self._metrics.owned_partitions.labels(STAGE1).set(len(self._events))
        self._metrics.owned_partitions.labels(STAGE2).set(len(self._partials))


def _await_record(slot: _Slot, offset: int, now: float) -> None:
    slot.seek_to = offset
    slot.sought_at = now
    slot.overshot = False
    slot.reseeks = 0


def _accepts(slot: _Slot, offset: int) -> bool:
    """Take each record once, from the checkpoint on.

    Records before `next_offset` are in the state already. After a restore we seek to the
    checkpoint; records the consumer fetched before the seek took effect come again, so
    until the record at the checkpoint arrives, nothing else is taken. (Event producers
    must not be transactional: a control record at that offset would never arrive.)
    """
    if slot.seek_to is not None:
        if offset != slot.seek_to:
            slot.overshot = slot.overshot or offset > slot.seek_to
            return False
        slot.seek_to = None
    return slot.next_offset is None or offset >= slot.next_offset


def _element_bytes(value: bytes, position: int) -> bytes:
    try:
        return json.dumps(json.loads(value)[position], ensure_ascii=False).encode()
    except (ValueError, IndexError, TypeError, RecursionError):
        return value


def _encode_list(records: list[dict[str, Any]]) -> bytes:
    return json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
