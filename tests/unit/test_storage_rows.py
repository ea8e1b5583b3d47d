"""Records of the writer's topics into rows (pure): positions, dedup rules, bad records."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.storage import RecordDecoder, RowBatch
from foundation.contract.catalog import Catalog, load_catalog
from foundation.contract.envelope import ContractIndex
from foundation.contract.topics import ALERTS, DEADLETTER, KPI

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def decoder(catalog: Catalog) -> RecordDecoder:
    return RecordDecoder(ContractIndex(catalog), clock=lambda: NOW)


def _event(catalog: Catalog, event_id: str, **extra: Any) -> dict[str, Any]:
    sector = catalog.sectors[0]
    kind = next(t for t in sector.event_types if t.measurement)
    return {
        "event_id": event_id, "source": sector.sources[0].id, "sector": sector.id,
        "type": kind.id, "occurred_at": "2027-01-15T08:00:00+07:00", "value": 2.5,
    } | extra  # fmt: skip


def _add(decoder: RecordDecoder, batch: RowBatch, topic: str, value: Any, **place: Any) -> None:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    decoder.add(batch, topic=topic, partition=place.get("partition", 0),
                offset=place.get("offset", 0), key=place.get("key"), value=raw,
                timestamp_ms=place.get("timestamp_ms", 1_700_000_000_000))  # fmt: skip


def test_events_keep_their_place_and_rejects_are_counted(
    decoder: RecordDecoder, catalog: Catalog
) -> None:
    """A batch's events keep their index (rejected neighbours skipped); one-event records
    have no index; envelope rejects are counted by reason."""
    sector = catalog.sectors[0]
    key = sector.sources[0].id.encode()
    batch = RowBatch()
    good = [
        _event(catalog, "a"),
        {"event_id": "x"},
        _event(catalog, "b", data={"k": "v\\u0000"}),  # a backslash, then "u0000": text
        _event(catalog, "n", data={"k": "v\u0000"}),  # a real NUL: PostgreSQL cannot hold it
    ]
    _add(decoder, batch, sector.topic, good, partition=3, offset=10, key=key)
    _add(decoder, batch, sector.topic, _event(catalog, "c"), partition=3, offset=11, key=key)
    assert _poison(decoder, batch, sector.topic, b"[", key) == "events:bad_json"
    places = [(row[1], row[11], row[12], row[13]) for row in batch.events]
    assert places == [("a", 3, 10, 0), ("b", 3, 10, 2), ("c", 3, 11, None)]
    assert batch.events[0][4] == datetime(2027, 1, 15, 1, tzinfo=UTC)
    assert batch.events[0][14] == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert json.loads(batch.events[1][8]) == {"k": "v\\u0000"}  # stored exactly
    assert batch.rejected == {"missing_field:source": 1, "bad_text:data": 1, "bad_json": 1}
    assert batch.records == 3


def _poison(
    decoder: RecordDecoder, batch: RowBatch, topic: str, raw: bytes, key: bytes | None = None
) -> str | None:
    return decoder.add(
        batch, topic=topic, partition=0, offset=0, key=key, value=raw, timestamp_ms=0
    )


@pytest.mark.parametrize(
    "document",
    [
        {"note": "\\u0000"},
        {"note": "\\\\u0000 và \\ud800"},
        {"\\u0000": ["\\\\", "u0000"]},
    ],
)
def test_json_text_that_looks_like_a_nul_escape_is_stored_exactly(document: Any) -> None:
    """Backslashes before "u0000" are text: the document comes back as it went in."""
    from consumers.storage.rows import _json

    text = _json(document)
    assert text is not None and json.loads(text) == document


@pytest.mark.parametrize(
    ("document", "stored"),
    [
        ({"k": "a\x00b"}, {"k": "a\ufffdb"}),
        ({"k\x00": [float("nan"), "\ud800"]}, {"k\ufffd": [None, "\ufffd"]}),
    ],
)
def test_json_from_outside_the_envelope_becomes_storable(document: Any, stored: Any) -> None:
    """A real NUL or a lone surrogate (never in an event) becomes U+FFFD, NaN null."""
    from consumers.storage.rows import _json

    text = _json(document)
    assert text is not None and json.loads(text) == stored
    text.encode()  # UTF-8 encodable


def _point(revision: int, value: float | None = 1.0, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "kpi", "series": "health.k|*", "kpi": "k", "sector": "health", "group": "*",
        "window_start": NOW, "window_end": NOW + 60, "value": value, "count": 3,
        "final": False, "revision": revision, "emitted_at": NOW + 61, "newest": NOW,
    } | extra  # fmt: skip


def test_kpi_points_keep_the_highest_revision_in_a_batch(decoder: RecordDecoder) -> None:
    """Within a batch, a lower or equal revision never replaces a higher one."""
    batch = RowBatch()
    for revision in (0, 3, 1, 3):
        _add(decoder, batch, KPI, _point(revision, value=float(revision)))
    _add(decoder, batch, KPI, _point(0, window_start=NOW + 60, window_end=NOW + 120))
    rows = sorted(batch.kpi_points.values(), key=lambda r: r[4])
    assert [(r[9], r[6]) for r in rows] == [(3, 3.0), (0, 1.0)]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"nope", "kpi:bad_json"),
        ([1], "kpi:not_object"),
        ({"kind": "other"}, "kpi:unknown_kind"),
        (_point(0, series=5), "kpi:bad_field:series"),
        (_point(0) | {"revision": "1"}, "kpi:bad_field:revision"),
        (_point(0, final=1), "kpi:bad_field:final"),
        (_point(0, window_start=1e300), "kpi:bad_field:window_start"),  # not this millennium
        (_point(0, window_start=-1e300), "bad_timestamp"),
        (_point(0, window_start=NOW + 2 * 86_400), "kpi:bad_field:window_start"),
        (_point(0, series="s" * 300), "kpi:bad_field:series"),
        ({"kind": "freshness", "source": "s", "sector": "x", "state": "odd"},
         "kpi:bad_field:state"),
    ],
)  # fmt: skip
def test_broken_kpi_records_are_skipped_with_a_reason(
    decoder: RecordDecoder, record: Any, reason: str
) -> None:
    """A record that breaks the ioc.kpi contract is counted and left out, never raised."""
    batch = RowBatch()
    _add(decoder, batch, KPI, record)
    assert batch.rows == 0 and batch.skipped == {reason: 1}


def test_null_value_is_kept_as_null(decoder: RecordDecoder) -> None:
    """A window without a value (null) is stored with value NULL."""
    batch = RowBatch()
    _add(decoder, batch, KPI, _point(0, value=None))
    assert next(iter(batch.kpi_points.values()))[6] is None


def test_freshness_and_sector_seen_keep_the_latest(decoder: RecordDecoder) -> None:
    """The latest change per source and the latest arrival per sector win."""
    batch = RowBatch()
    for changed, state in ((NOW, "stale"), (NOW - 5, "fresh")):
        _add(decoder, batch, KPI, {"kind": "freshness", "source": "s", "sector": "health",
                                   "state": state, "last_seen": None, "changed_at": changed,
                                   "stale_after": 60})  # fmt: skip
    for seen in (NOW, NOW - 9):
        _add(decoder, batch, KPI, {"kind": "sector_seen", "sector": "health", "last_seen": seen,
                                   "emitted_at": seen})  # fmt: skip
    assert batch.freshness["s"][2] == "stale" and batch.freshness["s"][3] is None
    assert batch.sector_seen["health"][1] == datetime.fromtimestamp(NOW, tz=UTC)


def _alert(seq: int) -> dict[str, Any]:
    return {
        "kind": "alert", "fingerprint": "fp", "seq": seq, "transition": "fire",
        "state": "firing", "previous_state": "pending", "rule": "r", "severity": "warning",
        "labels": {"sector": "health"}, "at": NOW + seq, "started_at": NOW, "value": 1.0,
        "message_vi": "vượt ngưỡng", "message_en": "above", "actor": None,
    }  # fmt: skip


def test_alerts_keep_every_transition_and_the_highest_seq_as_current(
    decoder: RecordDecoder,
) -> None:
    """Transitions are keyed by (fingerprint, seq); current is the highest seq."""
    batch = RowBatch()
    for seq in (2, 3, 1, 3):
        _add(decoder, batch, ALERTS, _alert(seq))
    _add(decoder, batch, ALERTS, _alert(4) | {"state": "odd"})
    assert sorted(batch.alert_transitions) == [("fp", 1), ("fp", 2), ("fp", 3)]
    current = batch.alerts_current["fp"]
    assert current[1] == 3 and json.loads(current[8])["message_vi"] == "vượt ngưỡng"
    assert batch.skipped == {"alert:bad_state": 1}


def test_dead_letters_decode_the_original_bytes(decoder: RecordDecoder) -> None:
    """The original is base64-decoded; the key is the dead letter's own place and time."""
    batch = RowBatch()
    record = {"reason": "bad_json", "detail": "d", "source": None, "event_id": None,
              "topic": "ioc.events.health", "partition": 1, "offset": 7, "index": None,
              "received_at": NOW, "original_b64": base64.b64encode(b"\x00{").decode()}  # fmt: skip
    _add(decoder, batch, DEADLETTER, record, partition=2, offset=5)
    _add(decoder, batch, DEADLETTER, record | {"original_b64": "!!"}, partition=2, offset=6)
    ((key, row),) = batch.dead_letters.items()
    assert key == (2, 5, datetime.fromtimestamp(NOW, tz=UTC))
    assert row[9] == b"\x00{" and row[5:8] == (1, 7, None)
    assert batch.skipped == {"deadletter:bad_field:original_b64": 1}


def test_a_dead_letter_keeps_its_sender_and_old_ones_take_the_source(
    decoder: RecordDecoder,
) -> None:
    """`sender` (the refused record's key) is stored; a record without it (written before
    the worker sent one) belongs to its `source`."""
    batch = RowBatch()
    record = {"reason": "source_mismatch", "source": "cdc-giam-sat", "received_at": NOW,
              "sender": "his-bvdk-tinh"}  # fmt: skip
    _add(decoder, batch, DEADLETTER, record, offset=1)
    _add(decoder, batch, DEADLETTER, record | {"sender": None}, offset=2)
    old = {k: v for k, v in record.items() if k != "sender"}
    _add(decoder, batch, DEADLETTER, old, offset=3)
    rows = [row for _key, row in sorted(batch.dead_letters.items())]
    assert [(row[2], row[12]) for row in rows] == [
        ("cdc-giam-sat", "his-bvdk-tinh"),
        ("cdc-giam-sat", None),
        ("cdc-giam-sat", "cdc-giam-sat"),
    ]


def test_a_dead_letter_of_hostile_text_is_stored_storable(decoder: RecordDecoder) -> None:
    """A key of any bytes (NUL, 1 MB) cannot make the database refuse the dead letter: text
    PostgreSQL cannot hold becomes U+FFFD, and indexed text is cut."""
    batch = RowBatch()
    record = {"reason": "source_mismatch", "source": "a\x00b", "received_at": NOW,
              "sender": "k" * 1_000_000, "detail": "\ud800" * 10_000,
              "event_id": "e\x00"}  # fmt: skip
    assert _poison(decoder, batch, DEADLETTER, json.dumps(record).encode()) is None
    ((_key, row),) = batch.dead_letters.items()
    assert row[2] == "a\ufffdb" and row[1].startswith("\ufffd") and row[1].endswith("…")
    assert len(row[12]) == 256 and len(row[1]) == 4096 and row[3] == "e\ufffd"
    for text in (row[1], row[2], row[3], row[12]):
        text.encode()


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        (KPI, b"\xff", "kpi:bad_json"),
        (KPI, b"[" * 100_000, "kpi:bad_json"),
        (KPI, b'{"kind": "kpi", "value": NaN}', "kpi:bad_field:series"),
        (DEADLETTER, b'{"reason": 1, "received_at": 1}', "deadletter:bad_field:reason"),
        ("ioc.alerts", b'{"fingerprint": "\\ud800"}', "alert:missing_field"),
        ("ioc.events.health", b"\x00\x01", "events:bad_json"),
        ("ioc.events.health", b"[]", "events:empty_batch"),
        ("ioc.events.health", b"7", "events:not_object"),
    ],
)
def test_poison_records_are_named_not_raised(
    decoder: RecordDecoder, topic: str, raw: bytes, reason: str
) -> None:
    """`add` says why a record is poison (the writer counts it per topic and logs it)."""
    assert _poison(decoder, RowBatch(), topic, raw) == reason


def test_rows_past_retention_are_left_out_and_counted(decoder: RecordDecoder) -> None:
    """drop_expired removes rows older than their table's horizon, and counts them."""
    batch = RowBatch()
    _add(decoder, batch, KPI, _point(0))
    _add(decoder, batch, KPI, _point(0, window_start=NOW - 100))
    horizon = datetime.fromtimestamp(NOW - 50, tz=UTC)
    assert batch.drop_expired({"kpi_points": horizon}) == 1
    assert len(batch.kpi_points) == 1 and batch.skipped["past_retention"] == 1


def test_split_keeps_each_current_alert_with_its_transition(decoder: RecordDecoder) -> None:
    """Row-by-row batches cover every row once; current rides with its own transition."""
    batch = RowBatch()
    for seq in (1, 2):
        _add(decoder, batch, ALERTS, _alert(seq))
    _add(decoder, batch, KPI, _point(0))
    singles = batch.split()
    assert sum(s.rows for s in singles) == batch.rows == 3
    assert [len(s.alerts_current) for s in singles if s.alert_transitions] == [0, 1]
