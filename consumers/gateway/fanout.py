"""Fan-out: per-channel sequence logs, and one bounded outbox plus writer per client.

The fan-out path (`Hub.publish`) never awaits: it encodes each channel's update once (JSON,
then UTF-8) and offers the same bytes to every subscriber. A subscriber with nothing queued
whose connection is not backed up gets them written straight into its socket's buffer, as
`websockets.broadcast` does: no task wakes, nothing is queued. Only a client whose
connection is backed up (its write buffer over the high-water mark) or that already has
messages queued goes through its bounded outbox and its writer task, which waits for room.
A subscriber whose outbox holds `queue_limit` updates stops queueing that channel and keeps
only the latest item per key instead; when its outbox has drained to half, it gets one
`resync` message (partial: the latest item of every key that changed) that brings it to the
channel's sequence, and normal updates resume. A client whose send does not finish within
`send_timeout` (or whose outbox of other messages overflows) is closed with 4408 and will
reconnect and resume. So a stalled screen costs a bounded amount of memory and a dict update
per item, and never delays the others.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from consumers.gateway.protocol import (
    CLOSE_SLOW,
    resync_frame,
    snapshot_frame,
    update_frame,
)
from consumers.gateway.state import Change, GatewayState

__all__ = ["ChannelLog", "ClientGoneError", "ClientSession", "FanoutMetrics", "Hub", "Transport"]


class ClientGoneError(Exception):
    """The client's connection is closed; its writer stops."""


class Transport(Protocol):
    """The connection a session writes to (a WebSocket in the server, a fake in tests).

    Frames are UTF-8 JSON, sent as text messages.
    """

    def write_now(self, frame: bytes) -> bool:
        """Write one message without waiting; False (nothing written) when backed up.

        ClientGoneError when the connection is closed.
        """

    async def send(self, frame: bytes) -> None:
        """Write one message, then wait for room; ClientGoneError when the connection is closed."""


class FanoutMetrics(Protocol):
    """What the fan-out reports (the gateway's Prometheus container implements it)."""

    def pushed(self, kind: str, items: int, latency: float) -> None: ...
    def written_now(self, messages: int, items: int) -> None: ...
    def queued(self) -> None: ...
    def fanned_out(self, seconds: float) -> None: ...
    def coalesced(self, items: int) -> None: ...
    def resync(self, reason: str) -> None: ...
    def slow_client_closed(self) -> None: ...


class ChannelLog:
    """A channel's sequence number and its items of the last `horizon` seconds, for `resume`.

    At most `size` items whatever the rate. The horizon is what keeps the gateway's memory
    flat: the log fills within `horizon` seconds at any rate and then stays that size, where
    a count alone (5,000 items × 13 channels) took most of an hour to fill at the demo rate.
    A screen away for longer gets a full snapshot (`resync`), as a new screen does.
    """

    def __init__(
        self,
        size: int,
        horizon: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seq = 0
        self._horizon = horizon
        self._clock = clock
        self._items: deque[tuple[int, float, dict[str, Any]]] = deque(maxlen=size)

    def append(self, item: dict[str, Any]) -> int:
        self.seq += 1
        now = self._clock()
        self._items.append((self.seq, now, item))
        self._forget(now)
        return self.seq

    def since(self, seq: int) -> list[dict[str, Any]] | None:
        """Items after `seq`, or None when the buffer no longer (or never) holds them all."""
        self._forget(self._clock())
        if seq == self.seq:
            return []
        if seq > self.seq or seq < 0 or not self._items or self._items[0][0] > seq + 1:
            return None
        start = seq + 1 - self._items[0][0]
        return [item for _s, _at, item in itertools.islice(self._items, start, None)]

    def _forget(self, now: float) -> None:
        items = self._items
        while items and now - items[0][1] > self._horizon:
            items.popleft()


@dataclass(slots=True)
class _Outgoing:
    frame: bytes
    kind: str
    items: int
    queued_at: float
    is_update: bool


@dataclass(slots=True)
class _Pending:
    seq: int
    items: dict[str, dict[str, Any]] = field(default_factory=dict)


class ClientSession:
    """One connected client: its channels, its bounded outbox and the task that writes it."""

    def __init__(
        self,
        *,
        transport: Transport,
        epoch: str,
        queue_limit: int,
        send_timeout: float,
        metrics: FanoutMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._epoch = epoch
        self._limit = queue_limit
        self._hard_limit = 2 * queue_limit + 64
        self._send_timeout = send_timeout
        self._metrics = metrics
        self._clock = clock
        self._out: deque[_Outgoing] = deque()
        self._updates_queued = 0
        self._pending: dict[str, _Pending] = {}
        self._sending = False  # the writer is waiting for room: nothing may overtake it
        self._wake = asyncio.Event()
        self.channels: set[str] = set()
        self.closed = False
        self.close_code: tuple[int, str] | None = None  # why we end it, for the close frame

    @property
    def queued(self) -> int:
        return len(self._out)

    @property
    def coalescing(self) -> bool:
        return bool(self._pending)

    @property
    def backed_up(self) -> bool:
        """Messages wait in the outbox (the connection could not take them at once)."""
        return bool(self._out) or self._sending or bool(self._pending)

    def _write_now(self, frame: bytes) -> bool:
        """Straight into the socket when nothing is queued ahead; False: queue it."""
        if self._out or self._sending or self._pending:
            return False
        try:
            return self._transport.write_now(frame)
        except ClientGoneError:
            self.closed = True
            self._wake.set()  # the writer ends, and with it the connection's handler
            return False

    def offer(self, channel: str, frame: bytes, seq: int, changes: list[Change]) -> bool:
        """Write or queue an update (never waits); True when it was written at once.

        When the outbox is full the channel is coalesced instead.
        """
        if self.closed:
            return False
        if self._write_now(frame):
            return True
        if self.closed:
            return False
        pending = self._pending.get(channel)
        if pending is None and self._updates_queued >= self._limit:
            pending = self._pending[channel] = _Pending(seq)
        if pending is not None:
            pending.seq = seq
            for change in changes:
                pending.items[change.key] = change.item
            self._metrics.coalesced(len(changes))
            return False
        self._out.append(_Outgoing(frame, "update", len(changes), self._clock(), True))
        self._updates_queued += 1
        self._metrics.queued()
        self._wake.set()
        return False

    def push(self, frame: str, kind: str, items: int = 0) -> None:
        """Send a message that is not an update (snapshot, reply, heartbeat)."""
        if self.closed:
            return
        data = frame.encode()
        if self._write_now(data):
            self._metrics.pushed(kind, items, 0.0)
            return
        if self.closed:
            return
        if len(self._out) >= self._hard_limit:
            self.close_slow()
            return
        self._out.append(_Outgoing(data, kind, items, self._clock(), False))
        self._wake.set()

    def forget_pending(self, channel: str) -> None:
        """A fresh snapshot supersedes whatever was coalesced for `channel`."""
        self._pending.pop(channel, None)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def run(self) -> None:
        """Write the outbox until the client goes or is closed for being too slow."""
        try:
            while not self.closed:
                if not self._out:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                out = self._out.popleft()
                if out.is_update:
                    self._updates_queued -= 1
                if not self._transport.write_now(out.frame):
                    # Backed up: write it and wait until the connection has room again.
                    self._sending = True
                    try:
                        async with asyncio.timeout(self._send_timeout):
                            await self._transport.send(out.frame)
                    finally:
                        self._sending = False
                self._metrics.pushed(out.kind, out.items, self._clock() - out.queued_at)
                if self._pending and self._updates_queued <= self._limit // 2:
                    self._flush_pending()
        except TimeoutError:
            self.close_slow()
        except ClientGoneError:
            self.closed = True

    def _flush_pending(self) -> None:
        # Queued in order: updates of these channels that come later follow the resync.
        for channel, pending in self._pending.items():
            items = list(pending.items.values())
            frame = resync_frame(
                channel, epoch=self._epoch, seq=pending.seq, items=items, partial=True
            )
            data = frame.encode()
            self._out.append(_Outgoing(data, "resync", len(items), self._clock(), False))
            self._metrics.resync("overflow")
        self._pending.clear()

    def close_slow(self) -> None:
        """End the session as too slow (4408): a send or a ping's answer did not come."""
        if not self.closed:
            self.closed = True
            self.close_code = (CLOSE_SLOW, "too_slow")
            self._metrics.slow_client_closed()
        self._wake.set()


class Hub:
    """Channels, their logs and subscribers; applies state changes and fans them out."""

    def __init__(
        self,
        state: GatewayState,
        *,
        epoch: str,
        buffer_size: int,
        metrics: FanoutMetrics,
        buffer_seconds: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self._clock = clock
        self.epoch = epoch
        self._buffer_size = buffer_size
        self._buffer_seconds = buffer_seconds
        self._metrics = metrics
        self._logs: dict[str, ChannelLog] = {}
        self._subscribers: dict[str, set[ClientSession]] = {}

    def _log(self, channel: str) -> ChannelLog:
        log = self._logs.get(channel)
        if log is None:
            log = self._logs[channel] = ChannelLog(
                self._buffer_size, self._buffer_seconds, self._clock
            )
        return log

    def seq(self, channel: str) -> int:
        return self._log(channel).seq

    def publish(self, changes: Iterable[Change]) -> int:
        """Log each change on its channel and offer one update per channel; returns offers."""
        started = self._clock()
        grouped: dict[str, list[Change]] = {}
        for change in changes:
            grouped.setdefault(change.channel, []).append(change)
        offers = 0
        for channel, group in grouped.items():
            log = self._log(channel)
            first = log.seq + 1
            for change in group:
                log.append(change.item)
            subscribers = self._subscribers.get(channel)
            if not subscribers:
                continue
            items = [c.item for c in group]
            frame = update_frame(channel, first=first, last=log.seq, items=items).encode()
            written = 0
            for session in subscribers:
                written += session.offer(channel, frame, log.seq, group)
            if written:
                # Counted once per channel update, not per client: this is the hot path.
                self._metrics.written_now(written, written * len(group))
            offers += len(subscribers)
        if offers:
            self._metrics.fanned_out(self._clock() - started)
        return offers

    def subscribe(self, session: ClientSession, channel: str) -> None:
        """Send `channel`'s snapshot to `session`, then its updates."""
        items = [item for _key, item in self.state.snapshot(channel)]
        session.forget_pending(channel)
        session.push(
            snapshot_frame(channel, epoch=self.epoch, seq=self.seq(channel), items=items),
            "snapshot",
            len(items),
        )
        self._add(session, channel)

    def resync(self, session: ClientSession, channel: str, reason: str) -> None:
        """A full snapshot as a `resync` message (the client saw a gap, or cannot resume)."""
        items = [item for _key, item in self.state.snapshot(channel)]
        session.forget_pending(channel)
        self._metrics.resync(reason)
        session.push(
            resync_frame(
                channel, epoch=self.epoch, seq=self.seq(channel), items=items, partial=False
            ),
            "resync",
            len(items),
        )
        self._add(session, channel)

    def resume(self, session: ClientSession, channel: str, epoch: str, seq: int) -> bool:
        """Replay what `session` missed after `seq`; False when it got a snapshot instead."""
        missed = self._log(channel).since(seq) if epoch == self.epoch else None
        if missed is None:
            self.resync(session, channel, "resume_gap")
            return False
        if missed:
            session.push(
                update_frame(channel, first=seq + 1, last=seq + len(missed), items=missed),
                "replay",
                len(missed),
            )
        self._add(session, channel)
        return True

    def unsubscribe(self, session: ClientSession, channel: str) -> None:
        self._subscribers.get(channel, set()).discard(session)
        session.channels.discard(channel)
        session.forget_pending(channel)

    def drop(self, session: ClientSession) -> None:
        for channel in list(session.channels):
            self.unsubscribe(session, channel)

    def _add(self, session: ClientSession, channel: str) -> None:
        self._subscribers.setdefault(channel, set()).add(session)
        session.channels.add(channel)
