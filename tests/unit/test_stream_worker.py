"""StreamWorker with an in-memory store and sink: cursors, checkpoints, acknowledgements,
restores, epochs, lost records and dead letters."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from foundation.contract.catalog import load_catalog
from foundation.contract.topics import BrokerEpoch
from streams.checkpoints import Checkpoint, MemoryCheckpointStore
from streams.worker import STATE_FORMAT, StreamWorker
from streams.worker_metrics import WorkerMetrics

CATALOG = load_catalog()
TOPIC = "ioc.events.health"
PARTIALS = "ioc.internal.kpi-partials"
NOW = 1_800_000_000.0
EPOCH = BrokerEpoch("now", 2_000)


@dataclass(frozen=True)
class Rec:
    """A delivered record; its token is what the worker acknowledges."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None = None
    token: Any = (1, -1)


def rec(offset: int, value: bytes | None = None, *, partition: int = 0, generation: int = 1) -> Rec:
    body = _event(offset) if value is None else value
    return Rec(TOPIC, partition, offset, b"his-bvdk-tinh", body, NOW, (generation, offset))


class RecordingSink:
    """Keeps what was sent, and notes every flush (in order with the store's saves)."""

    def __init__(self, journal: list[str] | None = None) -> None:
        self.sent: list[tuple[str, bytes, Any]] = []
        self.journal = journal if journal is not None else []
        self.gate: asyncio.Event | None = None  # when set, flush waits for it
        self.flushing = asyncio.Event()

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> None:
        self.sent.append((topic, key, json.loads(value)))

    async def flush(self) -> None:
        self.journal.append("flush")
        self.flushing.set()
        if self.gate is not None:
            await self.gate.wait()

    def on(self, topic: str) -> list[Any]:
        return [value for sent_topic, _key, value in self.sent if sent_topic == topic]

    def partials(self, kpi: str) -> list[dict[str, Any]]:
        return [p for batch in self.on(PARTIALS) for p in batch if p.get("kpi") == kpi]


class JournalStore(MemoryCheckpointStore):
    def __init__(self, journal: list[str] | None = None, *, fail: bool = False) -> None:
        super().__init__()
        self.journal = journal if journal is not None else []
        self.fail = fail

    async def save(self, checkpoints: list[Checkpoint]) -> None:
        self.journal.append("save")
        if self.fail:
            raise OSError("database down")
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


class Harness:
    """A worker, what it acknowledged, and the consumer generation it is on."""

    def __init__(
        self,
        store: MemoryCheckpointStore,
        sink: RecordingSink | None = None,
        *,
        epoch: BrokerEpoch = EPOCH,
        clock: list[float] | None = None,
    ) -> None:
        self.sink = sink or RecordingSink()
        self.acked: list[Any] = []
        self.generation = 1
        self.registry = CollectorRegistry()
        self.metrics = WorkerMetrics.create(self.registry)
        clock = clock or [NOW]
        self.worker = StreamWorker(
            catalog=CATALOG, store=store, sink=self.sink, metrics=self.metrics,
            partition_of=lambda _key: 0, epoch=epoch, clock=lambda: clock[0],
            acknowledge=self.acked.append, is_current=lambda t: t[0] == self.generation,
        )  # fmt: skip

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


BED = "health.bed_occupancy_pct"


async def test_records_a_checkpoint_covers_are_acknowledged_and_skipped_after_a_restore() -> None:
    """Faust resumes at the committed offset, at or before the checkpoint: no seek needed."""
    journal: list[str] = []
    store = JournalStore(journal)
    first = Harness(store, RecordingSink(journal))
    await first.worker.assign({(TOPIC, 0)})
    await first.worker.on_event_records([rec(n) for n in range(3)])
    assert first.acked == []  # not before a checkpoint covers them
    assert await first.worker.checkpoint() == 1
    assert journal == ["flush", "save"]  # sent records are on the broker before it counts
    assert first.acked == [(1, 0), (1, 1), (1, 2)]

    second = Harness(store)
    await second.worker.assign({(TOPIC, 0)})
    # Faust committed up to 2 only (say): records 1 and 2 come again, then 3 and 4.
    await second.worker.on_event_records([rec(n) for n in (1, 2, 3, 4)])
    assert second.acked == [(1, 1), (1, 2)]  # covered: acknowledged at once, not counted
    await second.worker.flush_stage1()
    (occupancy,) = second.sink.partials(BED)
    assert occupancy["count"] == 5 and occupancy["offset"] == 5  # e0…e2 restored + e3, e4
    assert second.metric("ioc_worker_records_lost_total", topic=TOPIC) == 0


async def test_a_failed_checkpoint_acknowledges_nothing() -> None:
    """Records whose state could not be saved stay unacknowledged: they come again."""
    store = JournalStore(fail=True)
    harness = Harness(store)
    await harness.worker.assign({(TOPIC, 0)})
    await harness.worker.on_event_records([rec(0), rec(1)])
    with pytest.raises(OSError, match="database down"):
        await harness.worker.checkpoint()
    assert harness.acked == []
    store.fail = False
    assert await harness.worker.checkpoint() == 1
    assert harness.acked == [(1, 0), (1, 1)]


async def test_records_arriving_during_a_checkpoint_never_leak_into_it() -> None:
    """The state saved is exactly the state before the offset saved (avg and p95 included),
    however many records arrive while the checkpoint waits for the broker's flush."""
    store, sink = MemoryCheckpointStore(), RecordingSink()
    harness = Harness(store, sink)
    await harness.worker.assign({(TOPIC, 0)})
    await harness.worker.on_event_records([rec(n) for n in range(3)])
    sink.gate = asyncio.Event()
    checkpoint = asyncio.create_task(harness.worker.checkpoint())
    await asyncio.wait_for(sink.flushing.wait(), 5)
    await harness.worker.on_event_records([rec(n) for n in range(3, 10)])  # during the flush
    sink.gate.set()
    assert await checkpoint == 1
    saved = store.rows[("ioc-worker/events", TOPIC, 0)]
    assert saved.next_offset == 3
    panes = saved.state()["panes"]["panes"]
    occupancy = [pane for pane in panes if pane[0].startswith(BED)]
    assert occupancy and all(pane[3] == 3 for pane in occupancy)  # e0, e1, e2 and no more
    means = [pane[2] for pane in occupancy]
    assert all(mean == [81.0, 3] for mean in means)  # the average state of e0…e2 only
    assert harness.acked == [(1, 0), (1, 1), (1, 2)]  # and only they are acknowledged


async def test_records_of_an_earlier_consumer_generation_are_never_taken() -> None:
    """Fetched before a rebalance: Faust delivers them again, so they neither count nor ack."""
    harness = Harness(MemoryCheckpointStore())
    await harness.worker.assign({(TOPIC, 0)})
    harness.generation = 2
    await harness.worker.on_event_records([rec(0, generation=1), rec(0, generation=2)])
    await harness.worker.flush_stage1()
    (occupancy,) = harness.sink.partials(BED)
    assert occupancy["count"] == 1
    await harness.worker.checkpoint()
    assert harness.acked == [(2, 0)]


async def test_a_record_delivered_before_its_assignment_waits_for_it() -> None:
    """The assignment signal and the first fetch race: the record waits, it is not lost."""
    harness = Harness(MemoryCheckpointStore())
    early = asyncio.create_task(harness.worker.on_event_records([rec(0)]))
    await asyncio.sleep(0.01)
    assert not early.done()
    await harness.worker.assign({(TOPIC, 0)})
    await asyncio.wait_for(early, 5)
    await harness.worker.flush_stage1()
    assert [p["count"] for p in harness.sink.partials(BED)] == [1]


async def test_rejects_become_dead_letters_of_their_sender_with_position_and_original() -> None:
    harness = Harness(MemoryCheckpointStore())
    await harness.worker.assign({(TOPIC, 0)})
    batch = b"[" + _event(1) + b"," + _event(2, unit="kg") + b"]"
    await harness.worker.on_event_records([rec(0, batch), rec(1, b"{oops")])
    letters = harness.sink.on("ioc.deadletter")
    assert [(d["reason"], d["offset"], d["index"]) for d in letters] == [
        ("unit_mismatch", 0, 1),
        ("bad_json", 1, None),
    ]
    assert {d["sender"] for d in letters} == {"his-bvdk-tinh"}  # the record key
    assert base64.b64decode(letters[1]["original_b64"]) == b"{oops"
    assert json.loads(base64.b64decode(letters[0]["original_b64"]))["event_id"] == "e2"


async def test_a_dead_letter_names_the_sender_even_when_the_body_claims_another_source() -> None:
    """Keyed by one department, naming another: filed under the sender, the claim kept."""
    harness = Harness(MemoryCheckpointStore())
    await harness.worker.assign({(TOPIC, 0)})
    claimed = _event(1, source="tc-benh-vien-binh-long", type="no-such-type")
    await harness.worker.on_event_records([rec(0, claimed)])
    (letter,) = harness.sink.on("ioc.deadletter")
    assert letter["sender"] == "his-bvdk-tinh"
    assert letter["reason"] == "unknown_type"


async def test_revoke_checkpoints_the_partitions_given_up() -> None:
    store = JournalStore()
    harness = Harness(store)
    await harness.worker.assign({(TOPIC, 0), (TOPIC, 1)})
    await harness.worker.on_event_records([rec(0, partition=1)])
    await harness.worker.revoke({(TOPIC, 1)})
    assert set(store.rows) == {("ioc-worker/events", TOPIC, 1)}
    assert store.rows[("ioc-worker/events", TOPIC, 1)].next_offset == 1
    assert harness.acked == [(1, 0)]


async def test_a_revoke_whose_checkpoint_fails_still_gives_the_partition_up() -> None:
    """Reassigned afterwards, it restores the last good checkpoint and replays from there."""
    store = JournalStore()
    harness = Harness(store)
    await harness.worker.assign({(TOPIC, 0)})
    await harness.worker.on_event_records([rec(0)])
    await harness.worker.checkpoint()
    await harness.worker.on_event_records([rec(1)])
    store.fail = True
    with pytest.raises(OSError, match="database down"):
        await harness.worker.revoke({(TOPIC, 0)})
    store.fail = False
    await harness.worker.assign({(TOPIC, 0)})
    harness.generation = 2  # the rebalance: record 1 comes again, unacknowledged before
    await harness.worker.on_event_records([rec(0, generation=2), rec(1, generation=2)])
    await harness.worker.flush_stage1()
    assert [p["count"] for p in harness.sink.partials(BED)][-1] == 2
    assert harness.acked == [(1, 0), (2, 0)]  # record 1 only once a checkpoint covers it


async def test_an_earlier_broker_epochs_state_goes_on_from_the_new_topics_start() -> None:
    """A restarted embedded broker has new, empty topics: the windows carry over, offsets
    start again at 0, and every pane is handed on again under the new generation."""
    store = MemoryCheckpointStore()
    old = Harness(store, epoch=BrokerEpoch("before", 1_000))
    await old.worker.assign({(TOPIC, 0)})
    await old.worker.on_event_records([rec(n) for n in range(5)])
    await old.worker.checkpoint()
    new = Harness(store, epoch=EPOCH)
    await new.worker.assign({(TOPIC, 0)})
    await new.worker.on_event_records([rec(0, _event(9))])  # offset 0 again: a new record
    await new.worker.flush_stage1()
    (occupancy,) = new.sink.partials(BED)
    assert occupancy["count"] == 6  # five carried over and the new one
    assert (occupancy["generation"], occupancy["offset"]) == (EPOCH.generation, 1)
    assert new.acked == []
    assert new.metric("ioc_worker_records_lost_total", topic=TOPIC) == 0


async def test_records_a_checkpoint_needed_that_are_gone_are_counted_and_shown() -> None:
    """Retention dropped records 3…9 while no worker ran: nothing is skipped silently."""
    store = MemoryCheckpointStore()
    first = Harness(store)
    await first.worker.assign({(TOPIC, 0)})
    await first.worker.on_event_records([rec(n) for n in range(3)])
    await first.worker.checkpoint()
    second = Harness(store)
    await second.worker.assign({(TOPIC, 0)})
    await second.worker.on_event_records([rec(10), rec(11)])  # the earliest left is 10
    assert second.metric("ioc_worker_records_lost_total", topic=TOPIC) == 7
    (gap,) = [r for r in second.sink.on("ioc.kpi") if r["kind"] == "data_gap"]
    assert (gap["sector"], gap["first_offset"], gap["last_offset"], gap["records"]) == (
        "health", 3, 9, 7,
    )  # fmt: skip
    assert gap["start"] <= gap["end"]
    await second.worker.flush_stage1()
    (occupancy,) = second.sink.partials(BED)
    assert occupancy["count"] == 5  # e0…e2 restored, e10, e11 taken


async def _stage_one_partials() -> tuple[Harness, list[Any], dict[str, Any]]:
    """A worker on one event and one partials partition, one event taken: its stage-1
    partials (not yet read by stage 2), and the bed occupancy one among them."""
    harness = Harness(MemoryCheckpointStore())
    await harness.worker.assign({(TOPIC, 0), (PARTIALS, 0)})
    await harness.worker.on_event_records([rec(0)])
    await harness.worker.flush_stage1()
    (batch,) = harness.sink.on(PARTIALS)
    return harness, batch, next(p for p in batch if p.get("kpi") == BED)


def _bed_values(harness: Harness) -> list[Any]:
    return [r["value"] for r in harness.sink.on("ioc.kpi") if r.get("series", "").startswith(BED)]


async def _one_event_through_both_stages() -> Harness:
    """A worker on one event and one partials partition: one event, stage 1's partials taken."""
    harness, batch, _good = await _stage_one_partials()
    value = json.dumps(batch).encode()
    await harness.worker.on_partial_records([Rec(PARTIALS, 0, 0, b"partials", value)])
    return harness


async def test_sector_last_seen_travels_through_stage_two_to_ioc_kpi() -> None:
    harness = await _one_event_through_both_stages()
    await harness.worker.flush_stage2()
    seen = [r for r in harness.sink.on("ioc.kpi") if r["kind"] == "sector_seen"]
    assert [(r["sector"], r["last_seen"]) for r in seen] == [("health", NOW)]


async def test_the_points_a_partials_batch_makes_due_are_published_without_the_timer() -> None:
    """Stage 2 publishes as its partials arrive: no wait for the next flush tick."""
    harness = await _one_event_through_both_stages()  # and no flush_stage2()
    points = [r for r in harness.sink.on("ioc.kpi") if r.get("series", "").startswith(BED)]
    assert [p["value"] for p in points] == [80.0]


async def test_unreadable_partials_are_counted_and_stepped_over() -> None:
    harness = Harness(MemoryCheckpointStore())
    await harness.worker.assign({(PARTIALS, 0)})
    await harness.worker.on_partial_records(
        [Rec(PARTIALS, 0, 0, b"p", b"\xff{"), Rec(PARTIALS, 0, 1, b"p", b"[[[1e999]]]")]
    )
    assert harness.metric("ioc_worker_poison_records_total", topic=PARTIALS) == 2
    assert await harness.worker.checkpoint() == 1  # the cursor moved past both


def _with(entry: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**entry, **changes}


# Well-formed JSON, wrong content: each is put in a record next to the good partials.
# "1e400" stands for a number JSON can carry and a float cannot.
WRONG_PARTIALS: list[Any] = [
    lambda good: _with(good, state="x"),  # not an average's state
    lambda good: _with(good, state=[80.0, -1]),
    lambda good: _with(good, series="health.er_wait_p95|*"),  # a series of another KPI
    lambda good: _with(good, pane="1e400"),
    lambda good: _with(good, count=10**400),
    lambda good: _with(good, offset=-5),
    lambda _good: {"kind": "seen", "sector": "health", "last_seen": "1e400"},
    lambda _good: {"kind": "seen", "sector": ["health"], "last_seen": NOW},
    lambda _good: {"kind": "seen", "sector": "health", "last_seen": NOW + 10**6},  # future
    lambda good: _with(good, count=2),  # its state holds one value
    lambda _good: 7,
]


@pytest.mark.parametrize("wrong", WRONG_PARTIALS)
async def test_a_partial_of_the_wrong_shape_is_counted_and_stage_two_keeps_publishing(
    wrong: Any,
) -> None:
    """Any JSON may arrive on the partials topic: a partial of the wrong shape is counted as
    poison and never reaches a merge; stage 2 goes on publishing the good ones."""
    harness, batch, good = await _stage_one_partials()
    value = json.dumps([wrong(good)]).replace('"1e400"', "1e400").encode()
    await harness.worker.on_partial_records([Rec(PARTIALS, 0, 0, b"p", value)])
    await harness.worker.flush_stage2()
    assert harness.metric("ioc_worker_poison_records_total", topic=PARTIALS) == 1
    assert [r for r in harness.sink.on("ioc.kpi") if r["kind"] != "freshness"] == []
    await harness.worker.on_partial_records([Rec(PARTIALS, 0, 1, b"p", json.dumps(batch).encode())])
    await harness.worker.flush_stage2()
    assert _bed_values(harness) == [80.0]
    assert await harness.worker.checkpoint() == 2


async def test_a_record_with_one_partial_of_the_wrong_state_keeps_its_other_partials() -> None:
    harness, batch, good = await _stage_one_partials()
    value = json.dumps([_with(good, state={"mean": 1}), *batch]).encode()
    await harness.worker.on_partial_records([Rec(PARTIALS, 0, 0, b"p", value)])
    assert harness.metric("ioc_worker_poison_records_total", topic=PARTIALS) == 1
    assert _bed_values(harness) == [80.0]


async def test_a_record_whose_processing_fails_is_dead_lettered_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug met by one record costs that record (visibly), not the rest of its batch."""
    harness = Harness(MemoryCheckpointStore())
    await harness.worker.assign({(TOPIC, 0)})
    original = harness.worker._take_event_record

    async def failing_on_offset_1(record: Any) -> None:
        if record.offset == 1:
            raise RuntimeError("boom")
        await original(record)

    monkeypatch.setattr(harness.worker, "_take_event_record", failing_on_offset_1)
    await harness.worker.on_event_records([rec(n) for n in range(3)])
    letters = harness.sink.on("ioc.deadletter")
    assert [(d["reason"], d["offset"], d["sender"]) for d in letters] == [
        ("internal_error", 1, "his-bvdk-tinh")
    ]
    assert "RuntimeError: boom" in letters[0]["detail"]
    await harness.worker.flush_stage1()
    assert [p["count"] for p in harness.sink.partials(BED)] == [2]
    assert await harness.worker.checkpoint() == 1
    assert len(harness.acked) == 3  # offsets 0…2 are covered


async def test_a_dead_letter_keeps_at_most_256_kib_of_the_original() -> None:
    harness = Harness(MemoryCheckpointStore())
    await harness.worker.assign({(TOPIC, 0)})
    huge = b"{" + b" " * 900_000  # not JSON, 900 kB: its base64 would pass 1 MB
    await harness.worker.on_event_records([rec(0, huge)])
    (letter,) = harness.sink.on("ioc.deadletter")
    assert letter["reason"] == "bad_json"
    assert letter["original_size"] == len(huge)
    assert base64.b64decode(letter["original_b64"]) == huge[: 256 * 1024]


UNREADABLE_PANE = [f"{BED}|*", NOW - 60, "not an average", 3, NOW, BED]


@pytest.mark.parametrize(
    "saved",
    [
        # A checkpoint of the previous worker (before cursors): another layout.
        {"epoch": EPOCH.id, "panes": {"next_offset": 3, "panes": [], "dirty": []}},
        # A state that cannot be loaded: not half-restored either.
        {
            "format": STATE_FORMAT,
            "epoch": EPOCH.id,
            "generation": EPOCH.generation,
            "panes": {"next_offset": 3, "panes": [UNREADABLE_PANE], "dirty": []},
        },
        # JSON's Infinity where an offset belongs (int() raised OverflowError: no restore ever).
        {
            "format": STATE_FORMAT,
            "epoch": EPOCH.id,
            "generation": EPOCH.generation,
            "panes": {"next_offset": math.inf, "panes": [], "dirty": []},
        },
    ],
    ids=["another-layout", "unreadable-state", "infinite-offset"],
)
async def test_a_checkpoint_that_cannot_be_restored_replays_the_partition(
    saved: dict[str, Any],
) -> None:
    store = MemoryCheckpointStore()
    text = json.dumps({**saved, "freshness": {}})  # as stored: Infinity is JSON to json.loads
    await store.save([Checkpoint("ioc-worker/events", TOPIC, 0, 3, text, NOW)])
    harness = Harness(store)
    await harness.worker.assign({(TOPIC, 0)})
    await harness.worker.on_event_records([rec(0)])
    assert harness.acked == []  # taken, not skipped as covered
    await harness.worker.flush_stage1()
    assert [p["count"] for p in harness.sink.partials(BED)] == [1]


async def test_an_assignment_waits_for_a_database_that_comes_back() -> None:
    """A short outage while partitions are assigned delays the restore, it does not crash."""

    class Flaky(MemoryCheckpointStore):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 2

        async def load(self, consumer: str, partitions: list[tuple[str, int]]) -> Any:
            if self.failures:
                self.failures -= 1
                raise OSError("database restarting")
            return await super().load(consumer, partitions)

    store = Flaky()
    harness = Harness(store)
    await harness.worker.assign({(TOPIC, 0)})
    await harness.worker.on_event_records([rec(0)])
    assert store.failures == 0 and await harness.worker.checkpoint() == 1
