"""API key format, hashing, verification and the TTL cache (no database)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from foundation.auth.api_keys import (
    ApiKeyRecord,
    KeyCache,
    KeyId,
    generate_key,
    hash_secret,
    parse_key,
    verify_secret,
)


def test_generated_key_has_the_documented_format() -> None:
    """iock_<12 hex>_<43 urlsafe chars>, and only the secret's sha256 is kept."""
    new = generate_key()
    assert re.fullmatch(r"iock_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", new.token)
    assert new.token.startswith(f"iock_{new.key_id}_")
    secret = new.token.removeprefix(f"iock_{new.key_id}_")
    assert new.secret_hash == hash_secret(secret) and secret not in new.secret_hash


def test_generated_keys_differ() -> None:
    """Ids and secrets are random."""
    keys = [generate_key() for _ in range(50)]
    assert len({k.key_id for k in keys}) == 50
    assert len({k.token for k in keys}) == 50


def test_parse_round_trip_and_verify() -> None:
    """A generated key parses back to its id and a secret that verifies against the hash."""
    new = generate_key()
    parsed = parse_key(new.token)
    assert parsed is not None and parsed.key_id == new.key_id
    assert verify_secret(parsed.secret, new.secret_hash)
    assert not verify_secret(
        parsed.secret[:-1] + ("A" if parsed.secret[-1] != "A" else "B"), new.secret_hash
    )


def test_secret_may_contain_underscores() -> None:
    """The separator after the id is fixed by position, so '_' inside the secret is fine."""
    token = "iock_0123456789ab_" + "_" * 43
    parsed = parse_key(token)
    assert parsed is not None and parsed.key_id == "0123456789ab" and parsed.secret == "_" * 43


@pytest.mark.parametrize(
    "token",
    [
        "",
        "iock_",
        "Bearer iock_0123456789ab_" + "a" * 43,
        "iock_0123456789AB_" + "a" * 43,  # upper-case hex id
        "iock_0123456789a_" + "a" * 43,  # 11-char id
        "iock_0123456789abc_" + "a" * 43,  # 13-char id
        "iock_0123456789ab_" + "a" * 42,  # short secret
        "iock_0123456789ab_" + "a" * 44,  # long secret
        "iock_0123456789ab_" + "a" * 42 + "=",  # padding is not urlsafe-nopad
        "iock_0123456789ab_" + "a" * 42 + "+",  # not the urlsafe alphabet
        "ioc_0123456789ab_" + "a" * 43,  # wrong prefix
        "iock-0123456789ab-" + "a" * 43,  # wrong separators
    ],
)
def test_bad_formats_do_not_parse(token: str) -> None:
    """Anything that is not exactly our format is refused before any lookup."""
    assert parse_key(token) is None


def test_surrounding_whitespace_is_ignored() -> None:
    """Keys pasted with a trailing newline still parse."""
    assert parse_key("  " + generate_key().token + "\n") is not None


class _Lookup:
    """A dict of records that counts its look-ups."""

    def __init__(self) -> None:
        self.records: dict[str, ApiKeyRecord] = {}
        self.calls = 0

    async def lookup(self, key_id: KeyId) -> ApiKeyRecord | None:
        self.calls += 1
        return self.records.get(key_id)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _store(lookup: _Lookup) -> str:
    new = generate_key()
    lookup.records[new.key_id] = ApiKeyRecord(
        new.key_id, "his-bvdk-tinh", "health", new.secret_hash
    )
    return new.token


async def test_cache_authenticates_and_answers_from_memory_within_ttl() -> None:
    """A valid key is looked up once per TTL."""
    lookup, clock = _Lookup(), _Clock()
    cache = KeyCache(lookup=lookup, ttl=30, clock=clock)
    token = _store(lookup)
    for _ in range(5):
        record = await cache.authenticate(token)
        assert record is not None and record.source == "his-bvdk-tinh"
    assert lookup.calls == 1
    clock.now += 31
    assert await cache.authenticate(token) is not None
    assert lookup.calls == 2


async def test_revoke_takes_effect_after_ttl() -> None:
    """A key revoked in the store is refused once its cache entry expires."""
    lookup, clock = _Lookup(), _Clock()
    cache = KeyCache(lookup=lookup, ttl=30, clock=clock)
    token = _store(lookup)
    assert await cache.authenticate(token) is not None
    key_id = token.split("_")[1]
    old = lookup.records[key_id]
    lookup.records[key_id] = ApiKeyRecord(
        old.key_id, old.source, old.sector, old.secret_hash, revoked_at=datetime.now(UTC)
    )
    assert await cache.authenticate(token) is not None  # still trusted within the TTL
    clock.now += 30.5
    assert await cache.authenticate(token) is None


async def test_wrong_secret_unknown_id_and_garbage_are_refused() -> None:
    """Only the exact key authenticates; garbage never reaches the store."""
    lookup, clock = _Lookup(), _Clock()
    cache = KeyCache(lookup=lookup, ttl=30, negative_ttl=5, clock=clock)
    token = _store(lookup)
    wrong = token[:-1] + ("x" if token[-1] != "x" else "y")
    assert await cache.authenticate(wrong) is None
    assert await cache.authenticate("not-a-key") is None
    unknown = generate_key().token
    assert await cache.authenticate(unknown) is None
    assert await cache.authenticate(unknown) is None
    assert lookup.calls == 2  # the valid id once, the unknown id once (negative cache)
    clock.now += 6
    assert await cache.authenticate(unknown) is None
    assert lookup.calls == 3


async def test_cache_is_bounded() -> None:
    """The oldest ids are dropped beyond max_entries."""
    lookup = _Lookup()
    cache = KeyCache(lookup=lookup, ttl=30, max_entries=3)
    tokens = [_store(lookup) for _ in range(5)]
    for token in tokens:
        await cache.authenticate(token)
    assert len(cache._entries) == 3
    calls = lookup.calls
    await cache.authenticate(tokens[0])  # evicted: looked up again
    assert lookup.calls == calls + 1
