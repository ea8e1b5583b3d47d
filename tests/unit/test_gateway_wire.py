"""The frame the gateway writes to every client is the one websockets itself would send."""

from __future__ import annotations

import pytest
from websockets.protocol import State
from websockets.server import ServerProtocol

from consumers.gateway.server import _WireFrames


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_a_shared_wire_frame_equals_the_protocols_own(size):
    """Same bytes as ServerProtocol.send_text for every length encoding (7, 16, 64 bits)."""
    data = ('{"type":"update","x":"' + "é" * (size // 2) + '"}').encode()
    protocol = ServerProtocol()
    protocol.state = State.OPEN  # as after the handshake
    protocol.send_text(data)
    assert _WireFrames().text(data) == b"".join(protocol.data_to_send())


def test_the_last_frame_is_reused_only_for_the_same_message():
    """The cache is by identity: an equal but different message is framed again."""
    frames = _WireFrames()
    first = b'{"a":1}'
    wire = frames.text(first)
    assert frames.text(first) is wire
    other = bytes(bytearray(first))
    assert frames.text(other) == wire and frames.text(other) is not wire
