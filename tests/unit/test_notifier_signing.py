"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, checked with a time window."""

from __future__ import annotations

import pytest

from alerts.notifier.signing import sign, verify

SECRET = b"It's a Secret to Everybody"
BODY = b'{"hello":"world"}'
# Computed independently: printf '%s' '1764180000.{"hello":"world"}' |
#   openssl dgst -sha256 -hmac "It's a Secret to Everybody"
EXPECTED = "sha256=aa58df3a438db946acf0e262a2c2b18f7196622b9d80683dad10af1234ecc969"


def test_signature_matches_an_independent_computation() -> None:
    """The header value equals openssl's HMAC-SHA256 of timestamp.body."""
    assert sign(SECRET, "1764180000", BODY) == EXPECTED


def test_a_good_signature_verifies_within_the_window() -> None:
    """The receiver accepts the request it was sent, up to `tolerance` seconds later."""
    assert verify(SECRET, "1764180000", BODY, EXPECTED, now=1764180000 + 299)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now"),
    [
        (b"another secret", "1764180000", BODY, 1764180000),  # wrong secret
        (SECRET, "1764180000", b'{"hello":"World"}', 1764180000),  # body changed
        (SECRET, "1764180001", BODY, 1764180001),  # timestamp changed (replay)
        (SECRET, "1764180000", BODY, 1764180000 + 301),  # too old
        (SECRET, "1764180000", BODY, 1764180000 - 301),  # from the future
        (SECRET, "not-a-number", BODY, 1764180000),
    ],
)
def test_anything_else_is_refused(secret: bytes, timestamp: str, body: bytes, now: int) -> None:
    """A changed body, timestamp or secret, or a stale timestamp, fails verification."""
    assert not verify(secret, timestamp, body, EXPECTED, now=now)
