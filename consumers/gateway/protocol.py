"""The gateway's JSON messages: client messages parsed, server messages built (pure).

Every message is one JSON object with a `type`. The README has the table; in short:

client → server: `subscribe {channels}`, `resume {epoch, channels: {channel: seq}}`,
`unsubscribe {channels}`, `resync {channel}`, `ping`, `action {request_id, action,
fingerprint, note?, assignee?}`.

server → client: `hello`, `subscribed`, `snapshot {channel, epoch, seq, items}`,
`update {channel, from, seq, items}`, `resync {channel, epoch, seq, items, partial}`,
`heartbeat`, `pong`, `error {code, message}`, `action_result`,
`status {degraded, since, down}` (the broker or the database does not answer: what the
screen shows is not current).

Sequence numbers count items per channel and per gateway instance (`epoch`): an `update`
carries items `from`..`seq`; a client that sees `from` ≠ its last `seq` + 1 lost something
and asks for a `resync`. A snapshot's `seq` is the channel's sequence when it was taken.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_SLOW",
    "CLOSE_UNAUTHORIZED",
    "ActionRequest",
    "Ping",
    "ProtocolError",
    "Resume",
    "Resync",
    "Subscribe",
    "Unsubscribe",
    "action_result",
    "encode",
    "error",
    "heartbeat",
    "hello",
    "parse_client_message",
    "resync_frame",
    "snapshot_frame",
    "status_frame",
    "subscribed",
    "update_frame",
]

# WebSocket close codes (4000-4999 are for applications); the close reason is a code word.
CLOSE_UNAUTHORIZED: Final = 4401  # missing, malformed, badly signed or expired token
CLOSE_FORBIDDEN: Final = 4403  # a valid token that may not use this gateway (unknown sector)
CLOSE_SLOW: Final = 4408  # the client did not read for too long; reconnect and resync

_MAX_CHANNELS = 256
# What a token (or a leader's link) may do over the socket.
SocketAction = Literal["ack", "assign", "note", "resolve", "escalate"]
_ACTIONS: Final = ("ack", "assign", "note", "resolve", "escalate")
_MAX_TEXT = 2000


class ProtocolError(ValueError):
    """A client message we cannot take; `code` goes back in an `error` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Subscribe:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Resume:
    epoch: str
    seqs: dict[str, int]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Resync:
    channel: str


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: Any


@dataclass(frozen=True, slots=True)
class ActionRequest:
    request_id: str
    action: SocketAction
    fingerprint: str
    note: str | None
    assignee: str | None


ClientMessage = Subscribe | Resume | Unsubscribe | Resync | Ping | ActionRequest


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _channels(raw: dict[str, Any]) -> tuple[str, ...]:
    channels = raw.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ProtocolError("bad_message", "`channels` must be a list of channel names")
    if len(channels) > _MAX_CHANNELS:
        raise ProtocolError("bad_message", f"at most {_MAX_CHANNELS} channels")
    return tuple(channels)


def _text(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT or _CONTROL.search(value):
        raise ProtocolError(
            "bad_message", f"`{name}` must be text of at most {_MAX_TEXT}, without NUL"
        )
    return value.strip() or None


_CONTROL: Final = re.compile("[\x00]")
_MAX_NONCE = 128


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode(text: str | bytes) -> dict[str, Any]:
    """A JSON object every reply can echo: UTF-8 text, finite numbers, no lone surrogate."""
    try:
        raw = json.loads(text, parse_constant=_refuse_constant)
        # What we may send back (channel names, nonces) must encode: no NaN from 1e999,
        # no unpaired surrogate from "\ud800".
        json.dumps(raw, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, RecursionError) as exc:  # UnicodeError and JSONDecodeError too
        raise ProtocolError(
            "bad_json", "a message must be one JSON object of UTF-8 text and finite numbers"
        ) from exc
    if not isinstance(raw, dict):
        raise ProtocolError("bad_json", "a message must be one JSON object")
    return raw


def _nonce(value: Any) -> Any:
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int) and abs(value) <= 2**53:
        return value
    if isinstance(value, str) and len(value) <= _MAX_NONCE:
        return value
    raise ProtocolError(
        "bad_message", f"`nonce` must be a number, or text of at most {_MAX_NONCE} characters"
    )


def parse_client_message(text: str | bytes) -> ClientMessage:
    """One client message; ProtocolError(code) when it is not one we know. Never raises
    anything else, whatever the bytes (the fuzz tests hold it to that)."""
    raw = _decode(text)
    kind = raw.get("type")
    if kind == "subscribe":
        return Subscribe(_channels(raw))
    if kind == "unsubscribe":
        return Unsubscribe(_channels(raw))
    if kind == "resume":
        seqs = raw.get("channels")
        epoch = raw.get("epoch")
        if not isinstance(epoch, str) or not isinstance(seqs, dict):
            raise ProtocolError("bad_message", "resume needs `epoch` and `channels` {name: seq}")
        if len(seqs) > _MAX_CHANNELS or not all(
            isinstance(c, str) and isinstance(s, int) and not isinstance(s, bool)
            for c, s in seqs.items()
        ):
            raise ProtocolError("bad_message", "resume `channels` maps names to integers")
        return Resume(epoch, dict(seqs))
    if kind == "resync":
        channel = raw.get("channel")
        if not isinstance(channel, str):
            raise ProtocolError("bad_message", "resync needs `channel`")
        return Resync(channel)
    if kind == "ping":
        return Ping(_nonce(raw.get("nonce")))
    if kind == "action":
        request_id = raw.get("request_id")
        action = raw.get("action")
        fingerprint = raw.get("fingerprint")
        if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
            raise ProtocolError("bad_message", "action needs a `request_id`")
        if action not in _ACTIONS:
            raise ProtocolError("bad_action", f"`action` is one of {', '.join(_ACTIONS)}")
        if not isinstance(fingerprint, str) or not 0 < len(fingerprint) <= 256:
            raise ProtocolError("bad_message", "action needs the alert's `fingerprint`")
        note, assignee = _text(raw, "note"), _text(raw, "assignee")
        if action == "note" and not note:
            raise ProtocolError("bad_message", "a note action needs `note`")
        if action == "assign" and not assignee:
            raise ProtocolError("bad_message", "an assign action needs `assignee`")
        return ActionRequest(request_id, cast(SocketAction, action), fingerprint, note, assignee)
    shown = kind if isinstance(kind, str) and len(kind) <= 64 else type(kind).__name__
    raise ProtocolError("unknown_type", f"unknown message type {shown!r}")


# -- server messages


def hello(
    *,
    epoch: str,
    role: str,
    name: str,
    sectors: Iterable[str] | None,
    heartbeat: float,
    now: float,
    may_act: bool,
) -> str:
    return encode(
        {
            "type": "hello",
            "epoch": epoch,
            "role": role,
            "name": name,
            "sectors": list(sectors) if sectors is not None else None,
            "may_act": may_act,
            "heartbeat": heartbeat,
            "server_time": now,
        }
    )


def subscribed(channels: Iterable[str]) -> str:
    return encode({"type": "subscribed", "channels": list(channels)})


def snapshot_frame(channel: str, *, epoch: str, seq: int, items: list[dict[str, Any]]) -> str:
    return encode(
        {"type": "snapshot", "channel": channel, "epoch": epoch, "seq": seq, "items": items}
    )


def update_frame(channel: str, *, first: int, last: int, items: list[dict[str, Any]]) -> str:
    return encode(
        {"type": "update", "channel": channel, "from": first, "seq": last, "items": items}
    )


def resync_frame(
    channel: str, *, epoch: str, seq: int, items: list[dict[str, Any]], partial: bool
) -> str:
    """Brings a client to `seq`: `partial` items are the latest of each changed key only."""
    return encode(
        {
            "type": "resync",
            "channel": channel,
            "epoch": epoch,
            "seq": seq,
            "items": items,
            "partial": partial,
        }
    )


def status_frame(*, since: float | None, down: Iterable[tuple[str, float]], now: float) -> str:
    """Whether the data behind the screen is current: `degraded` while a dependency is down.

    `down` is (dependency, since) per dependency that does not answer (`broker`, `database`);
    `since` is when the earliest of them stopped answering (unix seconds).
    """
    listed = [{"dependency": name, "since": at} for name, at in down]
    return encode(
        {
            "type": "status",
            "degraded": bool(listed),
            "since": since if listed else None,
            "down": listed,
            "server_time": now,
        }
    )


def heartbeat(now: float) -> str:
    return encode({"type": "heartbeat", "server_time": now})


def pong(nonce: Any, now: float) -> str:
    return encode({"type": "pong", "nonce": nonce, "server_time": now})


def error(code: str, message: str, **extra: Any) -> str:
    return encode({"type": "error", "code": code, "message": message, **extra})


def action_result(request_id: str, *, ok: bool, **extra: Any) -> str:
    return encode({"type": "action_result", "request_id": request_id, "ok": ok, **extra})
