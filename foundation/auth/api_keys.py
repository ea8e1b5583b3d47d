"""API keys of department systems: format, hashing, verification, and a TTL cache (pure).

A key reads `iock_<key_id>_<secret>`: `key_id` is 12 hex characters (public, the row's
primary key), `secret` is 32 random bytes in URL-safe base64 (43 characters). Only
sha256(secret) is stored; with 256 random bits a slow password hash adds nothing.
The store itself (PostgreSQL) is `foundation.auth.key_store.KeyStore`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NewType, Protocol

__all__ = [
    "KEY_PREFIX",
    "ApiKeyRecord",
    "KeyCache",
    "KeyId",
    "KeyLookup",
    "NewApiKey",
    "ParsedKey",
    "generate_key",
    "hash_secret",
    "parse_key",
    "verify_secret",
]

KeyId = NewType("KeyId", str)

KEY_PREFIX: Final = "iock_"
_SECRET_BYTES: Final = 32
_KEY: Final = re.compile(r"^iock_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A key split into its public id and its secret."""

    key_id: KeyId
    secret: str


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly generated key: `token` is shown once, `secret_hash` is what is stored."""

    key_id: KeyId
    token: str
    secret_hash: str


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored key: which source (and its sector) it may publish for."""

    key_id: KeyId
    source: str
    sector: str
    secret_hash: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    """sha256 of the secret, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> NewApiKey:
    """A new random key id and secret."""
    key_id = KeyId(secrets.token_hex(6))
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewApiKey(key_id, f"{KEY_PREFIX}{key_id}_{secret}", hash_secret(secret))


def parse_key(token: str) -> ParsedKey | None:
    """Split a presented key; None when it is not of our format."""
    match = _KEY.match(token.strip())
    if match is None:
        return None
    return ParsedKey(KeyId(match.group(1)), match.group(2))


def verify_secret(secret: str, secret_hash: str) -> bool:
    """Whether secret hashes to secret_hash, in constant time."""
    return hmac.compare_digest(hash_secret(secret), secret_hash)


class KeyLookup(Protocol):
    """Where keys are stored (PostgreSQL in production, a dict in tests)."""

    async def lookup(self, key_id: KeyId) -> ApiKeyRecord | None: ...


class KeyCache:
    """Authenticates presented keys against a lookup, trusting each answer for `ttl` seconds.

    A revoke takes effect within `ttl`. Unknown ids are cached for `negative_ttl` (shorter)
    so that a flood of bad keys does not become a flood of queries. At most `max_entries`
    ids are kept (oldest dropped first).
    """

    def __init__(
        self,
        *,
        lookup: KeyLookup,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._negative_ttl = min(negative_ttl, ttl)
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[KeyId, tuple[float, ApiKeyRecord | None]] = OrderedDict()

    async def authenticate(self, token: str) -> ApiKeyRecord | None:
        """The active key record the token proves, else None; lookup errors propagate."""
        parsed = parse_key(token)
        if parsed is None:
            return None
        record = await self._record(parsed.key_id)
        if record is None or not record.active:
            return None
        return record if verify_secret(parsed.secret, record.secret_hash) else None

    def forget(self, key_id: KeyId) -> None:
        """Drop a cached answer (e.g. after a revoke in this process)."""
        self._entries.pop(key_id, None)

    async def _record(self, key_id: KeyId) -> ApiKeyRecord | None:
        now = self._clock()
        cached = self._entries.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self._lookup.lookup(key_id)
        expires = now + (self._ttl if record is not None else self._negative_ttl)
        self._entries[key_id] = (expires, record)
        self._entries.move_to_end(key_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return record
