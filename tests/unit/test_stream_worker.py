"""StreamWorker with an in-memory store and sink: offsets, checkpoints, restore, dead letters."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from foundation.contract.catalog import load_catalog
from streams.checkpoints import MemoryCheckpointStore
from streams.worker import StreamWorker
from streams.worker_metrics import WorkerMetrics

CATALOG = load_catalog()
TOPIC = "ioc.events.health"
NOW = 1_800_000_000.0


class RecordingSink:
    """Keeps what was sent, and notes every flush (in order with the store's saves)."""

    def __init__(self, journal: list[str]) -> None:
        self.sent: list[tuple[str, bytes, Any]] = []
        self.journal = journal

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> None:
        self.sent.append((topic, key, json.loads(value)))

    async def flush(self) -> None:
        self.journal.append("flush")


class JournalStore(MemoryCheckpointStore):
    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    async def save(self, checkpoints: Any) -> None:
        self.journal.append("save")
        await super().save(checkpoints)


def _event(n: int, **changes: Any) -> bytes:
    event: dict[str, Any] = {
        "event_id": f"e{n}",
        "source": "his-bvdk-tinh",
        "sector": "health",
        "type": "bed_occupancy",
        "occurred_at": datetime.fromtimestamp(NOW - 60, UTC).isoformat(),
        "value": 80.0 + n,
        "district": "dong-xoai",
    }
    event.update(changes)
    return json.dumps(event).encode()


def _worker(store: MemoryCheckpointStore, sink: RecordingSink, clock: list[float]) -> StreamWorker:
    return StreamWorker(
        catalog=CATALOG,
        store=store,
        sink=sink,
        metrics=WorkerMetrics.create(CollectorRegistry()),
        partition_of=lambda _key: 0,
        clock=lambda: clock[0],
    )


async def test_records_before_the_checkpoint_are_skipped_after_a_restore() -> None:
    journal: list[str] = []
    store, clock = JournalStore(journal), [NOW]
    first = _worker(store, RecordingSink(journal), clock)
    seeks: list[tuple[tuple[str, int], int]] = []

    async def seek(tp: tuple[str, int], offset: int) -> None:
        seeks.append((tp, offset))

    await first.assign({(TOPIC, 0)}, seek)
    for offset in range(3):
        await first.on_event_record(TOPIC, 0, offset, b"his-bvdk-tinh", _event(offset))
    assert await first.checkpoint() == 1
    assert journal == [
        "flush",
        "save",
    ]  # sent records are acknowledged before the checkpoint counts

    sink = RecordingSink(journal)
    second = _worker(store, sink, clock)
    await second.assign({(TOPIC, 0)}, seek)
    # The first worker started at the first record; the second at its checkpoint.
    assert seeks == [((TOPIC, 0), 0), ((TOPIC, 0), 3)]
    # A record fetched before the seek took effect, then the ones from the checkpoint on.
    await second.on_event_record(TOPIC, 0, 7, b"his-bvdk-tinh", _event(7))
    await second.on_event_record(TOPIC, 0, 3, b"his-bvdk-tinh", _event(3))
    await second.on_event_record(TOPIC, 0, 1, b"his-bvdk-tinh", _event(1))  # replayed: in the state
    await second.on_event_record(TOPIC, 0, 4, b"his-bvdk-tinh", _event(4))
    await second.flush_stage1()
    partials = [
        p for topic, _k, batch in sink.sent if topic == "ioc.internal.kpi-partials" for p in batch
    ]
    occupancy = [p for p in partials if p.get("kpi") == "health.bed_occupancy_pct"]
    assert (
        occupancy and occupancy[0]["count"] == 5
    )  # e0, e1, e2 restored + e3, e4; not e7, not e1 again
    assert occupancy[0]["offset"] == 5


async def test_rejects_become_dead_letters_with_position_and_original_bytes() -> None:
    journal: list[str] = []
    sink = RecordingSink(journal)
    worker = _worker(MemoryCheckpointStore(), sink, [NOW])

    async def seek(tp: tuple[str, int], offset: int) -> None:
        assert offset == 0, "nothing to restore: from the first record"

    await worker.assign({(TOPIC, 0)}, seek)
    batch = b"[" + _event(1) + b"," + _event(2, unit="kg") + b"]"
    await worker.on_event_record(TOPIC, 0, 0, b"his-bvdk-tinh", batch)
    await worker.on_event_record(TOPIC, 0, 1, b"his-bvdk-tinh", b"{oops")
    letters = [value for topic, _key, value in sink.sent if topic == "ioc.deadletter"]
    assert [(d["reason"], d["offset"], d["index"]) for d in letters] == [
        ("unit_mismatch", 0, 1),
        ("bad_json", 1, None),
    ]
    assert base64.b64decode(letters[1]["original_b64"]) == b"{oops"
    assert json.loads(base64.b64decode(letters[0]["original_b64"]))["event_id"] == "e2"


async def test_revoke_checkpoints_the_partitions_given_up() -> None:
    journal: list[str] = []
    store = JournalStore(journal)
    worker = _worker(store, RecordingSink(journal), [NOW])

    async def seek(tp: tuple[str, int], offset: int) -> None:
        pass

    await worker.assign({(TOPIC, 0), (TOPIC, 1)}, seek)
    await worker.on_event_record(TOPIC, 1, 0, b"his-bvdk-tinh", _event(1))
    await worker.revoke({(TOPIC, 1)})
    assert set(store.rows) == {("ioc-worker/events", TOPIC, 1)}
    assert store.rows[("ioc-worker/events", TOPIC, 1)].next_offset == 1


async def test_checkpoints_of_another_broker_epoch_are_ignored() -> None:
    """A restarted embedded broker has new, empty topics: old offsets must not be sought."""
    journal: list[str] = []
    store, clock = JournalStore(journal), [NOW]
    old = StreamWorker(
        catalog=CATALOG, store=store, sink=RecordingSink(journal),
        metrics=WorkerMetrics.create(CollectorRegistry()), partition_of=lambda _k: 0,
        epoch="before", clock=lambda: clock[0],
    )  # fmt: skip
    seeks: list[int] = []

    async def seek(tp: tuple[str, int], offset: int) -> None:
        seeks.append(offset)

    await old.assign({(TOPIC, 0)}, seek)
    await old.on_event_record(TOPIC, 0, 0, b"his-bvdk-tinh", _event(0))
    await old.checkpoint()
    sink = RecordingSink(journal)
    new = StreamWorker(
        catalog=CATALOG, store=store, sink=sink,
        metrics=WorkerMetrics.create(CollectorRegistry()), partition_of=lambda _k: 0,
        epoch="after", clock=lambda: clock[0],
    )  # fmt: skip
    await new.assign({(TOPIC, 0)}, seek)
    assert seeks == [0, 0]  # the earlier epoch's checkpoint is ignored: from the start
    await new.on_event_record(TOPIC, 0, 0, b"his-bvdk-tinh", _event(0))  # offset 0 again: taken
    await new.flush_stage1()
    partials = [
        p for topic, _k, batch in sink.sent if topic == "ioc.internal.kpi-partials" for p in batch
    ]
    assert [p["count"] for p in partials if p.get("kpi") == "health.bed_occupancy_pct"] == [1]


async def test_sector_last_seen_travels_through_stage_two_to_ioc_kpi() -> None:
    """Stage 1 hands on each sector's latest arrival; stage 2 publishes `sector|<id>`."""
    journal: list[str] = []
    sink = RecordingSink(journal)
    clock = [NOW]
    worker = _worker(MemoryCheckpointStore(), sink, clock)

    async def seek(tp: tuple[str, int], offset: int) -> None:
        pass

    await worker.assign({(TOPIC, 0), ("ioc.internal.kpi-partials", 0)}, seek)
    await worker.on_event_record(TOPIC, 0, 0, b"his-bvdk-tinh", _event(0))
    await worker.flush_stage1()
    (batch,) = [value for topic, _k, value in sink.sent if topic == "ioc.internal.kpi-partials"]
    assert {"kind": "seen", "sector": "health", "last_seen": NOW} in batch
    await worker.on_partial_record(0, 0, json.dumps(batch).encode())
    await worker.flush_stage2()
    sector = [value for topic, key, value in sink.sent if key == b"sector|health"]
    assert sector == [
        {"kind": "sector_seen", "sector": "health", "last_seen": NOW, "emitted_at": NOW}
    ]
    assert await worker.checkpoint() == 2  # both stages' state saves as strict JSON


async def test_a_checkpoint_whose_records_expired_resumes_where_the_broker_landed() -> None:
    """Retention dropped records 3…9: the seek lands on 10, and 10 is taken, not waited past."""
    journal: list[str] = []
    store, clock = JournalStore(journal), [NOW]
    first = _worker(store, RecordingSink(journal), clock)

    async def seek_exact(tp: tuple[str, int], offset: int) -> int:
        return offset

    await first.assign({(TOPIC, 0)}, seek_exact)
    for offset in range(3):
        await first.on_event_record(TOPIC, 0, offset, b"his-bvdk-tinh", _event(offset))
    assert await first.checkpoint() == 1

    async def seek_expired(tp: tuple[str, int], offset: int) -> int:
        return 10  # the earliest record the broker still has

    sink = RecordingSink(journal)
    second = _worker(store, sink, clock)
    await second.assign({(TOPIC, 0)}, seek_expired)
    await second.on_event_record(TOPIC, 0, 10, b"his-bvdk-tinh", _event(10))
    await second.on_event_record(TOPIC, 0, 11, b"his-bvdk-tinh", _event(11))
    await second.flush_stage1()
    partials = [
        p for topic, _k, batch in sink.sent if topic == "ioc.internal.kpi-partials" for p in batch
    ]
    occupancy = [p for p in partials if p.get("kpi") == "health.bed_occupancy_pct"]
    assert occupancy and occupancy[0]["count"] == 5  # e0…e2 restored + e10, e11


class FailingStore(MemoryCheckpointStore):
    """Saves until `failing` is set (the database went away)."""

    failing = False

    async def save(self, checkpoints: Any) -> None:
        if self.failing:
            raise OSError("database unavailable")
        await super().save(checkpoints)


async def test_a_revoke_whose_checkpoint_fails_still_gives_the_partition_up() -> None:
    """Reassigned afterwards, it restores the last good checkpoint and replays from there.

    Keeping the in-memory state instead would skip the records the consumer fetched before
    the rebalance and dropped (no commit makes it fetch them again).
    """
    store, clock, sink = FailingStore(), [NOW], RecordingSink([])
    worker = _worker(store, sink, clock)
    seeks: list[int] = []

    async def seek(tp: tuple[str, int], offset: int) -> int:
        seeks.append(offset)
        return offset

    await worker.assign({(TOPIC, 0)}, seek)
    await worker.on_event_record(TOPIC, 0, 0, b"his-bvdk-tinh", _event(0))
    await worker.checkpoint()  # covers offset 0
    await worker.on_event_record(TOPIC, 0, 1, b"his-bvdk-tinh", _event(1))
    store.failing = True
    try:
        await worker.revoke({(TOPIC, 0)})
    except OSError:
        pass
    else:
        raise AssertionError("the failed checkpoint should be reported")
    store.failing = False
    await worker.assign({(TOPIC, 0)}, seek)
    assert seeks == [0, 1]  # replays offset 1 from the last good checkpoint
    await worker.on_event_record(TOPIC, 0, 1, b"his-bvdk-tinh", _event(1))
    sink.sent.clear()
    await worker.flush_stage1()
    partials = [
        p for topic, _k, batch in sink.sent if topic == "ioc.internal.kpi-partials" for p in batch
    ]
    assert [p["count"] for p in partials if p.get("kpi") == "health.bed_occupancy_pct"] == [2]


async def test_a_record_whose_processing_fails_is_dead_lettered_and_the_batch_goes_on() -> None:
    """A bug met by one record costs that record (visibly), not the rest of its batch."""
    sink = RecordingSink([])
    worker = _worker(MemoryCheckpointStore(), sink, [NOW])

    async def seek(tp: tuple[str, int], offset: int) -> None:
        pass

    await worker.assign({(TOPIC, 0)}, seek)
    original = worker.on_event_record

    async def failing_on_offset_1(
        topic: str, partition: int, offset: int, key: bytes | None, value: bytes
    ) -> None:
        if offset == 1:
            raise RuntimeError("boom")
        await original(topic, partition, offset, key, value)

    worker.on_event_record = failing_on_offset_1  # type: ignore[method-assign]
    records = [(TOPIC, 0, n, b"his-bvdk-tinh", _event(n)) for n in range(3)]
    await worker.on_event_records(records)
    letters = [value for topic, _key, value in sink.sent if topic == "ioc.deadletter"]
    assert [(d["reason"], d["offset"], d["source"]) for d in letters] == [
        ("internal_error", 1, "his-bvdk-tinh")
    ]
    assert "RuntimeError: boom" in letters[0]["detail"]
    await worker.flush_stage1()
    partials = [
        p for topic, _k, batch in sink.sent if topic == "ioc.internal.kpi-partials" for p in batch
    ]
    assert [p["count"] for p in partials if p.get("kpi") == "health.bed_occupancy_pct"] == [2]
    assert await worker.checkpoint() == 1  # offsets 0..2 are covered


async def test_a_dead_letter_keeps_at_most_256_kib_of_the_original() -> None:
    sink = RecordingSink([])
    worker = _worker(MemoryCheckpointStore(), sink, [NOW])

    async def seek(tp: tuple[str, int], offset: int) -> None:
        pass

    await worker.assign({(TOPIC, 0)}, seek)
    huge = b"{" + b" " * 900_000  # not JSON, 900 kB: its base64 would pass 1 MB
    await worker.on_event_record(TOPIC, 0, 0, b"his-bvdk-tinh", huge)
    (letter,) = [value for topic, _key, value in sink.sent if topic == "ioc.deadletter"]
    assert letter["reason"] == "bad_json"
    assert letter["original_size"] == len(huge)
    assert base64.b64decode(letter["original_b64"]) == huge[: 256 * 1024]


async def test_a_sought_record_that_never_comes_is_sought_again() -> None:
    """Later records come but the checkpoint's does not (retention dropped it meanwhile):
    after 10 s the worker seeks again, resumes at the earliest record left and says so."""
    store, clock, sink = MemoryCheckpointStore(), [NOW], RecordingSink([])
    first = _worker(store, sink, clock)

    async def no_seek(tp: tuple[str, int], offset: int) -> int:
        return offset

    await first.assign({(TOPIC, 0)}, no_seek)
    for offset in range(3):
        await first.on_event_record(TOPIC, 0, offset, b"his-bvdk-tinh", _event(offset))
    await first.checkpoint()  # next offset 3
    seeks: list[int] = []
    earliest = [0]

    async def seek(tp: tuple[str, int], offset: int) -> int:
        seeks.append(offset)
        return max(offset, earliest[0])

    second = _worker(store, sink, clock)
    await second.assign({(TOPIC, 0)}, seek)
    earliest[0] = 5  # records 3 and 4 are dropped before the consumer fetched them
    await second.on_event_record(TOPIC, 0, 5, b"his-bvdk-tinh", _event(5))  # not taken: 3 first
    assert await second.watch_seeks() == 0  # not yet: the seek may still be landing
    clock[0] += 11
    assert await second.watch_seeks() == 1
    assert seeks == [3, 3]
    await second.on_event_record(TOPIC, 0, 5, b"his-bvdk-tinh", _event(5))  # now taken
    assert await second.checkpoint() == 1
    assert store.rows[("ioc-worker/events", TOPIC, 0)].next_offset == 6
    assert await second.watch_seeks() == 0


async def test_after_three_fruitless_seeks_the_records_after_the_missing_one_are_taken() -> None:
    """A record that no seek brings (never there): the partition must not wait forever."""
    store, clock, sink = MemoryCheckpointStore(), [NOW], RecordingSink([])
    worker = _worker(store, sink, clock)
    seeks: list[int] = []

    async def seek(tp: tuple[str, int], offset: int) -> int:
        seeks.append(offset)
        return offset  # lands on 0 every time, but record 0 never comes

    await worker.assign({(TOPIC, 0)}, seek)
    for _ in range(3):
        await worker.on_event_record(TOPIC, 0, 1, b"his-bvdk-tinh", _event(1))  # past 0
        clock[0] += 11
        assert await worker.watch_seeks() == 1
    assert seeks == [0, 0, 0, 0]
    await worker.on_event_record(TOPIC, 0, 1, b"his-bvdk-tinh", _event(1))
    clock[0] += 11
    assert await worker.watch_seeks() == 1  # gives up: no fourth seek
    assert seeks == [0, 0, 0, 0]
    await worker.on_event_record(TOPIC, 0, 1, b"his-bvdk-tinh", _event(1))  # taken now
    assert await worker.checkpoint() == 1
    assert store.rows[("ioc-worker/events", TOPIC, 0)].next_offset == 2
