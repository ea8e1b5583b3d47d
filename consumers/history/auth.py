"""Who may read the history: the gateway's signed tokens, or a department's API key for its
own dead letters.

    Authorization: Bearer iot1.…        a token of `ioc tokens create` (wall, officer, leader);
                                         its sector scope limits what it reads
    Authorization: Bearer iock_…_…      an API key of `ioc keys create SOURCE`
    X-API-Key: iock_…_…                  (the same key) — only /dead-letters?source=<its source>
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from foundation.auth.api_keys import ApiKeyRecord
from foundation.auth.tokens import PREFIX as TOKEN_PREFIX
from foundation.auth.tokens import TokenRejectedError, verify_token
from foundation.errors import DatabaseError, HistoryQueryError

__all__ = ["KeyAuthenticator", "Reader", "authenticate"]


class KeyAuthenticator(Protocol):
    """Turns a presented API key into its record (None: not a valid, active key)."""

    async def authenticate(self, token: str) -> ApiKeyRecord | None: ...


@dataclass(frozen=True, slots=True)
class Reader:
    """An authenticated caller."""

    kind: Literal["token", "api_key"]
    name: str  # a token's holder, or the key id
    sectors: tuple[str, ...] | None  # token scope; None: every sector
    source: str | None = None  # an API key's source

    def allows_sector(self, sector: str) -> bool:
        if self.kind == "api_key":
            return False
        return self.sectors is None or sector in self.sectors

    def require_token(self) -> None:
        if self.kind == "api_key":
            raise HistoryQueryError(
                "forbidden",
                "an API key reads only its own dead letters (/v1/history/dead-letters?source=…)",
                status=403,
            )

    def require_sector(self, sector: str) -> None:
        self.require_token()
        if not self.allows_sector(sector):
            raise HistoryQueryError(
                "forbidden", f"this token may not read sector {sector!r}", status=403
            )


def _unauthorized(detail: str) -> HistoryQueryError:
    return HistoryQueryError("unauthorized", detail, status=401)


async def authenticate(
    authorization: str | None,
    api_key_header: str | None,
    *,
    secret: bytes | Callable[[], bytes],
    keys: KeyAuthenticator | None,
    now: float,
    timeout: float = 5.0,
) -> Reader:
    """The reader the request's credential proves; HistoryQueryError 401 (or 503) otherwise.

    `secret` may be a function: it is called only when a token is presented (the default
    secret lives in the state directory, which a process serving only API keys never needs).
    """
    credential: str | None = None
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("use `Authorization: Bearer <token or API key>`")
        credential = value.strip()
    elif api_key_header and api_key_header.strip():
        credential = api_key_header.strip()
    if credential is None:
        raise _unauthorized(
            "reads need a credential: `Authorization: Bearer <token>` (ioc tokens create)"
        )
    if credential.startswith(TOKEN_PREFIX + "."):
        try:
            claims = verify_token(
                secret if isinstance(secret, bytes) else secret(), credential, now=now
            )
        except TokenRejectedError as exc:
            raise _unauthorized(f"{exc.reason}: {exc.detail}") from exc
        return Reader("token", claims.name, claims.sectors)
    if keys is None:
        raise _unauthorized("API keys are not accepted here")
    try:
        async with asyncio.timeout(timeout):
            record = await keys.authenticate(credential)
    except (DatabaseError, TimeoutError) as exc:  # the cause is logged by the caller
        raise DatabaseError(f"cannot check an API key now: {exc}") from exc
    if record is None:
        raise _unauthorized("unknown, revoked or malformed token or API key")
    return Reader("api_key", record.key_id, None, source=record.source)
