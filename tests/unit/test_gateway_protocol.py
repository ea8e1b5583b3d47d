"""Client messages parsed (or refused with a code), channel expansion by token scope."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.gateway.channels import ChannelDeniedError, expand_channels
from consumers.gateway.offsets import first_offset_at
from consumers.gateway.protocol import (
    ActionRequest,
    Ping,
    ProtocolError,
    Resume,
    Resync,
    Subscribe,
    Unsubscribe,
    parse_client_message,
    status_frame,
    update_frame,
)

SECTORS = ["health", "traffic", "education"]


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ({"type": "subscribe", "channels": ["kpi:*", "alerts"]}, Subscribe(("kpi:*", "alerts"))),
        ({"type": "unsubscribe", "channels": []}, Unsubscribe(())),
        (
            {"type": "resume", "epoch": "e1", "channels": {"kpi:health": 12}},
            Resume("e1", {"kpi:health": 12}),
        ),
        ({"type": "resync", "channel": "alerts"}, Resync("alerts")),
        ({"type": "ping", "nonce": 7}, Ping(7)),
        (
            {"type": "action", "request_id": "r1", "action": "ack", "fingerprint": "fp"},
            ActionRequest("r1", "ack", "fp", None, None),
        ),
        (
            {
                "type": "action",
                "request_id": "r2",
                "action": "assign",
                "fingerprint": "fp",
                "assignee": " Trần Bình ",
            },
            ActionRequest("r2", "assign", "fp", None, "Trần Bình"),
        ),
    ],
)
def test_client_messages_parse(raw, parsed):
    assert parse_client_message(json.dumps(raw)) == parsed


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe", "channels": "kpi:health"}', "bad_message"),
        ('{"type": "resume", "channels": {"kpi:health": 1}}', "bad_message"),
        ('{"type": "resume", "epoch": "e", "channels": {"kpi:health": true}}', "bad_message"),
        (
            '{"type": "action", "request_id": "r", "action": "delete", "fingerprint": "f"}',
            "bad_action",
        ),
        (
            '{"type": "action", "request_id": "r", "action": "note", "fingerprint": "f"}',
            "bad_message",
        ),
        (
            '{"type": "action", "request_id": "r", "action": "assign", "fingerprint": "f"}',
            "bad_message",
        ),
        ('{"type": "action", "action": "ack", "fingerprint": "f"}', "bad_message"),
    ],
)
def test_bad_client_messages_get_a_code(raw, code):
    with pytest.raises(ProtocolError) as refused:
        parse_client_message(raw)
    assert refused.value.code == code


def test_update_frame_carries_its_sequence_range():
    frame = json.loads(update_frame("kpi:health", first=5, last=6, items=[{"a": 1}, {"a": 2}]))
    assert frame == {
        "type": "update",
        "channel": "kpi:health",
        "from": 5,
        "seq": 6,
        "items": [{"a": 1}, {"a": 2}],
    }


def test_status_frame_says_degraded_since_the_earliest_outage():
    """A screen learns which data systems are down and since when; an empty list clears it."""
    frame = json.loads(
        status_frame(since=100.0, down=[("broker", 100.0), ("database", 120.0)], now=130.0)
    )
    assert frame == {
        "type": "status",
        "degraded": True,
        "since": 100.0,
        "down": [
            {"dependency": "broker", "since": 100.0},
            {"dependency": "database", "since": 120.0},
        ],
        "server_time": 130.0,
    }
    clear = json.loads(status_frame(since=None, down=[], now=140.0))
    assert clear["degraded"] is False and clear["since"] is None and clear["down"] == []


@pytest.mark.parametrize(
    ("requested", "scope", "expected"),
    [
        (["kpi:*"], None, ["kpi:health", "kpi:traffic", "kpi:education"]),
        (
            ["kpi:*", "alerts", "freshness"],
            ("health",),
            ["kpi:health", "alerts:health", "freshness:health"],
        ),
        (["alerts", "alerts"], None, ["alerts"]),
        (
            ["kpi:traffic", "alerts:traffic"],
            ("traffic", "health"),
            ["kpi:traffic", "alerts:traffic"],
        ),
    ],
)
def test_channels_expand_within_the_token_scope(requested, scope, expected):
    assert expand_channels(requested, sectors=SECTORS, scope=scope) == expected


@pytest.mark.parametrize(
    ("requested", "scope", "reason"),
    [
        (["kpi:atlantis"], None, "unknown_channel"),
        (["weather"], None, "unknown_channel"),
        (["kpi:traffic"], ("health",), "forbidden_channel"),
        (["alerts:education"], ("health",), "forbidden_channel"),
    ],
)
def test_channels_outside_the_scope_are_denied(requested, scope, reason):
    with pytest.raises(ChannelDeniedError) as denied:
        expand_channels(requested, sectors=SECTORS, scope=scope)
    assert denied.value.reason == reason


@pytest.mark.parametrize(
    ("timestamps", "target", "expected"),
    [
        ([], 50, 0),
        ([10, 20, 30, 40], 5, 0),
        ([10, 20, 30, 40], 25, 2),
        ([10, 20, 30, 40], 30, 2),
        ([10, 20, 30, 40], 41, 4),
        ([10, 20, 20, 20, 50], 20, 1),
        ([10, 12, 11, 30, 31], 29, 3),  # roughly ordered create times still land right
    ],
)
async def test_first_offset_at_bisects_record_timestamps(timestamps, target, expected):
    """Binary search for the first record at or after a time, one probe per step."""
    probes: list[int] = []

    async def probe(offset: int) -> tuple[int, int] | None:
        probes.append(offset)
        return (offset, timestamps[offset]) if offset < len(timestamps) else None

    assert await first_offset_at(0, len(timestamps), target, probe) == expected
    assert len(probes) <= max(1, len(timestamps).bit_length() + 1)


async def test_first_offset_at_skips_holes_in_the_offsets():
    """Offsets without records (compaction, transactions) are skipped by the probe."""
    records = {0: 100, 1: 110, 5: 150, 6: 160}

    async def probe(offset: int) -> tuple[int, int] | None:
        following = [o for o in sorted(records) if o >= offset]
        return (following[0], records[following[0]]) if following else None

    # Reading from offset 2 starts at record 5: the holes before it cost nothing.
    assert await first_offset_at(0, 7, 150, probe) == 2
    assert await first_offset_at(0, 7, 120, probe) == 2
    assert await first_offset_at(0, 7, 155, probe) == 6


# -- hostile client messages (issue 13): a message or an error code, never an exception ----


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "bad_json"),  # nesting deeper than the parser's limit
        ('{"type": "ping", "nonce": NaN}', "bad_json"),
        ('{"type": "ping", "nonce": -Infinity}', "bad_json"),
        ('{"type": "ping", "nonce": 1e999}', "bad_json"),  # parses as inf
        ('{"type": "ping", "nonce": ' + "9" * 5000 + "}", "bad_json"),  # over int's digit limit
        ('{"type": "subscribe", "channels": ["\\ud800"]}', "bad_json"),  # not encodable back
        (b'{"type": "ping"}\xff', "bad_json"),
        ('{"type": "ping", "nonce": {"deep": [1, 2]}}', "bad_message"),
        ('{"type": "ping", "nonce": "' + "n" * 500 + '"}', "bad_message"),
        ('{"type": "ping", "nonce": ' + "9" * 30 + "}", "bad_message"),
        (
            '{"type": "action", "request_id": "r", "action": "note", "fingerprint": "f",'
            ' "note": "a\\u0000b"}',
            "bad_message",
        ),
        (
            '{"type": "action", "request_id": "r", "action": "ack", "fingerprint": "'
            + "f" * 300
            + '"}',
            "bad_message",
        ),
        ('{"type": ["x"]}', "unknown_type"),
    ],
)
def test_hostile_client_messages_get_an_error_code(raw: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw)
    assert caught.value.code == code


client_text = st.text(st.characters(exclude_categories=()), max_size=16)
# Scalars that broke the socket once: non-finite and huge numbers, unpaired surrogates, NUL.
hostile_scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(["\ud800", "a\x00b", "\udfff" * 3, float("nan"), float("-inf"), 1e308]),
    client_text,
)
client_json = st.recursive(
    st.none() | st.booleans() | hostile_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(client_text, inner, max_size=4),
    max_leaves=16,
)
client_messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["subscribe", "unsubscribe", "resume", "resync", "ping", "action", "other"]
        )
    },
    optional={
        "channels": client_json,
        "channel": client_json,
        "epoch": client_json,
        "nonce": client_json,
        "request_id": client_json,
        "action": st.sampled_from(["ack", "assign", "note", "resolve", "x"]) | client_json,
        "fingerprint": client_json,
        "note": client_json,
        "assignee": client_json,
    },
)


nested = st.integers(min_value=900, max_value=60_000).map(lambda n: "[" * n + "]" * n)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.one_of(client_messages.map(lambda m: json.dumps(m, allow_nan=True)), client_json.map(
    lambda v: json.dumps(v, allow_nan=True)), st.binary(max_size=200), nested))  # fmt: skip
def test_fuzzed_client_messages_give_a_message_or_a_code(raw: str | bytes) -> None:
    """Any JSON, any bytes: a parsed message whose every field can be echoed in a frame
    (encoded with allow_nan=False, as UTF-8), or a ProtocolError with a code."""
    try:
        message = parse_client_message(raw)
    except ProtocolError as exc:
        assert exc.code in {"bad_json", "bad_message", "bad_action", "unknown_type"}
        json.dumps({"code": exc.code, "message": exc.message}, allow_nan=False).encode()
        return
    json.dumps(dataclasses.asdict(message), ensure_ascii=False, allow_nan=False).encode()
