"""The codecs of ioc.kpi: round trips, ordering across epochs, and any bytes refused cleanly."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.contract.alerts import RecordError
from foundation.contract.kpi import (
    DataGap,
    FreshnessChange,
    KpiPoint,
    SectorSeen,
    decode_kpi_topic_record,
)

POINT = KpiPoint(
    "health.visits|*", "health.visits", "health", "*", 0.0, 60.0, 12.5, 3, False, 2, 61.0,
    59.0, 1_700_000_000_000, False,
)  # fmt: skip


@pytest.mark.parametrize(
    "record",
    [
        POINT,
        FreshnessChange("his-a", "health", "stale", None, 10.0, 90.0),
        SectorSeen("health", 10.0, 11.0),
        DataGap("health", "ioc.events.health", 1, 3, 9, 7, 1.0, 2.0, 3.0),
    ],
)
def test_every_kind_round_trips(record: KpiPoint | FreshnessChange | SectorSeen | DataGap) -> None:
    assert decode_kpi_topic_record(record.encode()) == record


def test_a_later_epochs_point_supersedes_whatever_its_revision() -> None:
    later = KpiPoint(**_fields(POINT, generation=POINT.generation + 1, revision=0))
    assert later.ordering > POINT.ordering


def test_non_finite_values_are_refused_by_the_encoder() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        KpiPoint(**_fields(POINT, value=math.inf)).encode()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"value": "12"}, "bad_field:value"),
        ({"value": 1e400}, "bad_field:value"),
        ({"count": True}, "bad_field:count"),
        ({"revision": 2**70}, "bad_field:revision"),
        ({"final": "yes"}, "bad_field:final"),
        ({"series": ""}, "bad_field:series"),
        ({"window_end": 0.0}, "bad_field:window_start"),
        ({"kind": "other"}, "unknown_kind"),
    ],
)
def test_broken_points_are_refused_with_a_reason(change: dict[str, object], reason: str) -> None:
    record = {**json.loads(POINT.encode()), **change}
    raw = json.dumps(record).replace("Infinity", "1e400").encode()
    with pytest.raises(RecordError, match=reason):
        decode_kpi_topic_record(raw)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6)
        ),
        max_leaves=30,
    ).map(lambda v: json.dumps({"kind": "kpi", **v} if isinstance(v, dict) else v).encode())
)
def test_any_bytes_decode_or_are_refused_with_a_record_error(raw: bytes) -> None:
    """A poison record never escapes as another exception."""
    with contextlib.suppress(RecordError):
        decode_kpi_topic_record(raw)


def _fields(point: KpiPoint, **changes: object) -> dict[str, Any]:
    names = KpiPoint.__dataclass_fields__
    return {name: changes.get(name, getattr(point, name)) for name in names}
