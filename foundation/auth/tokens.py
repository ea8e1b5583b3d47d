"""Signed access tokens for the wall and the officers' consoles (pure: no I/O).

A token is ``iot1.<claims>.<signature>``: the claims are compact JSON in base64url, the
signature an HMAC-SHA256 of ``iot1.<claims>`` with the gateway's secret, also base64url.
Tokens are not stored anywhere: whoever holds the secret can check them, so every gateway
instance of one deployment must share it. They expire (``exp``); there is no revocation list,
so keep the lifetimes short for people and rotate the secret to cut every token at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = [
    "ACTING_ROLES",
    "PREFIX",
    "Role",
    "TokenClaims",
    "TokenRejectedError",
    "issue_token",
    "verify_token",
]

Role = Literal["wall", "officer", "leader"]
ACTING_ROLES: frozenset[str] = frozenset({"officer", "leader"})  # may ack/assign/note alerts
PREFIX = "iot1"
_MIN_SECRET_BYTES = 16
_MAX_TOKEN_CHARS = 4096
# What `issue_token` makes: the prefix, then two base64url parts. Anything else (any other
# byte, any length) is malformed before it reaches the HMAC or the base64 decoder.
_SHAPE = re.compile(r"iot1\.[A-Za-z0-9_-]{1,4000}\.[A-Za-z0-9_-]{1,100}")


class TokenRejectedError(ValueError):
    """A token that must be refused; ``reason`` is a machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """Who holds a token: role, display name, sector scope (None: every sector), lifetime,
    and the analysis team it was made for (its sectors are then the team's)."""

    role: Role
    name: str
    sectors: tuple[str, ...] | None
    issued_at: float
    expires_at: float
    token_id: str
    team: str | None = None

    def allows_sector(self, sector: str) -> bool:
        return self.sectors is None or sector in self.sectors

    @property
    def may_act(self) -> bool:
        return self.role in ACTING_ROLES

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.name,
            "sectors": list(self.sectors) if self.sectors is not None else None,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "jti": self.token_id,
            **({"team": self.team} if self.team is not None else {}),
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, signed_part: str) -> str:
    return _b64(hmac.new(secret, signed_part.encode("ascii"), hashlib.sha256).digest())


def _check_secret(secret: bytes) -> None:
    if len(secret) < _MIN_SECRET_BYTES:
        raise ValueError(f"the token secret must have at least {_MIN_SECRET_BYTES} bytes")


def issue_token(
    secret: bytes,
    *,
    role: Role,
    name: str,
    sectors: tuple[str, ...] | None,
    now: float,
    ttl: float,
    team: str | None = None,
) -> tuple[str, TokenClaims]:
    """A new signed token and its claims; ``ttl`` seconds from ``now``."""
    _check_secret(secret)
    if role not in get_args(Role):
        raise ValueError(f"unknown role {role!r}")
    if not name.strip():
        raise ValueError("a token needs a name (who holds it)")
    if ttl <= 0:
        raise ValueError("a token's lifetime must be positive")
    claims = TokenClaims(
        role=role,
        name=name.strip(),
        sectors=tuple(sectors) if sectors is not None else None,
        issued_at=float(int(now)),
        expires_at=float(int(now + ttl)),
        token_id=secrets.token_hex(8),
        team=team,
    )
    body = _b64(json.dumps(claims.to_json(), ensure_ascii=False, separators=(",", ":")).encode())
    signed_part = f"{PREFIX}.{body}"
    return f"{signed_part}.{_sign(secret, signed_part)}", claims


def verify_token(secret: bytes, token: str | None, *, now: float) -> TokenClaims:
    """The claims of a valid token; TokenRejectedError(reason) otherwise.

    Reasons: ``token_missing``, ``token_malformed``, ``token_bad_signature``, ``token_expired``.
    """
    if not token:
        raise TokenRejectedError("token_missing", "no token (connect with ?token=…)")
    if len(token) > _MAX_TOKEN_CHARS or _SHAPE.fullmatch(token) is None:
        raise TokenRejectedError("token_malformed", "not an ioc-stream token")
    parts = token.split(".")
    signed_part = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(secret, signed_part), parts[2]):
        raise TokenRejectedError("token_bad_signature", "signature does not match this gateway")
    try:
        raw = json.loads(_unb64(parts[1]))
        sectors = raw["sectors"]
        claims = TokenClaims(
            role=raw["role"],
            name=str(raw["name"]),
            sectors=tuple(str(s) for s in sectors) if sectors is not None else None,
            issued_at=float(raw["iat"]),
            expires_at=float(raw["exp"]),
            token_id=str(raw["jti"]),
            team=str(raw["team"]) if raw.get("team") is not None else None,
        )
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise TokenRejectedError("token_malformed", f"bad claims: {type(exc).__name__}") from exc
    if claims.role not in get_args(Role):
        raise TokenRejectedError("token_malformed", f"unknown role {claims.role!r}")
    if now >= claims.expires_at:
        raise TokenRejectedError("token_expired", "the token has expired; ask for a new one")
    return claims
