"""Which copy of an event the writer keeps, when a batch holds several (pure).

The writer reduces a batch to one copy per (source, event_id) before it asks `event_ids`:
the latest published copy says which occurred_at is kept, and the row stored is the earliest
published copy with that occurred_at, both in one publishing order (record timestamp,
partition, offset, place in a batch record, a one-event record first). The sink's SQL applied
these rules itself before (DISTINCT ON), except that its choice of the stored copy put a
one-event record after a batch's items at the same timestamp, partition and offset; that tie
needs one id on two topics at the same place, and one order for both choices is the rule now.
Here they are checked against a sort, in any batch order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.storage.rows import EVENT_COLUMNS
from consumers.storage.sink import _one_copy_per_id

BASE = datetime(2027, 1, 15, 1, 0, tzinfo=UTC)
PLACE = {column: place for place, column in enumerate(EVENT_COLUMNS)}


def _row(**values: Any) -> tuple[Any, ...]:
    row: list[Any] = [None] * len(EVENT_COLUMNS)
    for column, value in values.items():
        row[PLACE[column]] = value
    return tuple(row)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Copies of a few ids, each at a distinct place in Kafka (partition, offset, idx)."""
    places = draw(
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 5), st.none() | st.integers(0, 3)),
            min_size=1,
            max_size=25,
            unique=True,
        )
    )
    rows: list[tuple[Any, ...]] = []
    for partition, offset, idx in places:
        rows.append(
            _row(
                source=draw(st.sampled_from(["a", "b"])),
                event_id=draw(st.sampled_from(["1", "2", "3"])),
                occurred_at=BASE + timedelta(minutes=draw(st.integers(0, 2))),
                published_at=BASE + timedelta(seconds=draw(st.integers(0, 3))),
                partition=partition,
                **{'"offset"': offset},
                idx=idx,
                value=float(len(rows)),  # tells the copies apart
            )
        )
    return rows


def _order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Publishing order: record timestamp, partition, offset, then place in a batch record
    (none, a one-event record, before any; as `_LATER` in the upsert compares them)."""
    idx = row[PLACE["idx"]]
    return (
        row[PLACE["published_at"]], row[PLACE["partition"]], row[PLACE['"offset"']],
        -1 if idx is None else idx,
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(batches(), st.randoms())
def test_one_copy_per_id_is_the_latest_time_and_its_first_copy(
    rows: list[tuple[Any, ...]], rnd: Any
) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    latest, stored = _one_copy_per_id(shuffled)

    ids = {(row[PLACE["source"]], row[PLACE["event_id"]]) for row in rows}
    assert set(latest) == set(stored) == ids
    for key in ids:
        copies = [r for r in rows if (r[PLACE["source"]], r[PLACE["event_id"]]) == key]
        last = sorted(copies, key=_order)[-1]
        at = last[PLACE["occurred_at"]]
        first = sorted((r for r in copies if r[PLACE["occurred_at"]] == at), key=_order)[0]
        assert (latest[key], stored[key]) == (last, first)


def test_a_lone_copy_is_both_latest_and_stored() -> None:
    row = _row(source="a", event_id="1", occurred_at=BASE, published_at=BASE, partition=0,
               idx=None, **{'"offset"': 7})  # fmt: skip
    assert _one_copy_per_id([row]) == ({("a", "1"): row}, {("a", "1"): row})
