"""Client messages parsed (or refused with a code), channel expansion by token scope."""

from __future__ import annotations

import json

import pytest

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
