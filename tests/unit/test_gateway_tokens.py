"""Signed access tokens: issue, verify, and every way a token is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation.auth.tokens import TokenRejectedError, issue_token, verify_token

SECRET = b"unit-test-secret-0123456789"
NOW = 1_800_000_000.0


def test_a_token_round_trips_its_claims():
    """What is signed is what is read back: role, name (Vietnamese), scope, lifetime."""
    token, claims = issue_token(
        SECRET, role="officer", name="Nguyễn Văn An", sectors=("health",), now=NOW, ttl=3600
    )
    read = verify_token(SECRET, token, now=NOW + 10)
    assert read == claims
    assert (read.role, read.name, read.sectors) == ("officer", "Nguyễn Văn An", ("health",))
    assert read.may_act and read.allows_sector("health") and not read.allows_sector("traffic")


def test_a_wall_token_without_scope_sees_every_sector_and_cannot_act():
    token, _ = issue_token(SECRET, role="wall", name="Màn hình 1", sectors=None, now=NOW, ttl=60)
    claims = verify_token(SECRET, token, now=NOW)
    assert claims.allows_sector("anything") and not claims.may_act


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: None, "token_missing"),
        (lambda t: "", "token_missing"),
        (lambda t: "abc", "token_malformed"),
        (lambda t: "jwt." + t.split(".", 1)[1], "token_malformed"),
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "token_bad_signature"),
        (lambda t: t.replace(t.split(".")[1], t.split(".")[1][::-1]), "token_bad_signature"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(mangle, reason):
    token, _ = issue_token(SECRET, role="wall", name="w", sectors=None, now=NOW, ttl=60)
    with pytest.raises(TokenRejectedError) as refused:
        verify_token(SECRET, mangle(token), now=NOW)
    assert refused.value.reason == reason


def test_another_secret_does_not_verify():
    token, _ = issue_token(SECRET, role="wall", name="w", sectors=None, now=NOW, ttl=60)
    with pytest.raises(TokenRejectedError) as refused:
        verify_token(b"another-secret-0123456789", token, now=NOW)
    assert refused.value.reason == "token_bad_signature"


def test_expiry_is_exclusive():
    token, claims = issue_token(SECRET, role="leader", name="L", sectors=None, now=NOW, ttl=60)
    verify_token(SECRET, token, now=claims.expires_at - 1)
    with pytest.raises(TokenRejectedError) as refused:
        verify_token(SECRET, token, now=claims.expires_at)
    assert refused.value.reason == "token_expired"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "admin"}, "unknown role"),
        ({"name": "  "}, "needs a name"),
        ({"ttl": 0}, "positive"),
    ],
)
def test_issue_refuses_bad_requests(kwargs, message):
    args = {"role": "wall", "name": "w", "sectors": None, "now": NOW, "ttl": 60.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        issue_token(SECRET, **args)


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        issue_token(b"short", role="wall", name="w", sectors=None, now=NOW, ttl=60)


@pytest.mark.parametrize(
    "token",
    [
        "iot1.é.x",
        "iot1.\x00.x",
        "iot1.a.b.c",
        "iot1..x",
        "iot1.a" + "b" * 5000 + ".x",
        "iot1.\ud800.x",
    ],
)
def test_tokens_of_any_bytes_are_malformed_not_errors(token):
    """Non-ASCII, NUL, surrogates, huge: token_malformed (the socket closes 4401, the
    history API answers 401), never an exception of another kind."""
    with pytest.raises(TokenRejectedError) as refused:
        verify_token(SECRET, token, now=NOW)
    assert refused.value.reason == "token_malformed"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(st.characters(exclude_categories=()), max_size=80))
def test_fuzzed_tokens_are_refused_with_a_reason(text):
    with pytest.raises(TokenRejectedError) as refused:
        verify_token(SECRET, "iot1." + text, now=NOW)
    assert refused.value.reason in {"token_malformed", "token_bad_signature"}
