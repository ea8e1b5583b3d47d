"""HMAC-SHA256 signatures of the webhook channel (pure; receivers use `verify`).

The signed bytes are `<timestamp>.<body>`: the timestamp header is covered too, so a
captured request cannot be replayed later with a fresh timestamp. Headers:

    X-IOC-Timestamp: 1764180000
    X-IOC-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "verify"]

SIGNATURE_HEADER = "X-IOC-Signature"
TIMESTAMP_HEADER = "X-IOC-Timestamp"
_PREFIX = "sha256="


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of the signature header for this body sent at this timestamp."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return _PREFIX + digest


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    tolerance: float = 300.0,
) -> bool:
    """True when the signature matches and the timestamp is within `tolerance` s of now."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
