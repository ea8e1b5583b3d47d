"""Signed links for people: an alert's phone page and a team's report (pure: no I/O).

A link is ``iol1.<claims>.<signature>`` in a URL path (``/m/<link>``, ``/r/<link>``). The
claims name what it opens (an alert's fingerprint and sector, or a team's report of one
period) and whom it was sent to (the routing's recipient id and display name, under which
the page's actions are recorded); they expire. The signature is an HMAC-SHA256 with a key
derived from the gateway's token secret, so a link is never a valid token (nor a token a
link), and rotating the secret cuts every link too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "LINK_PREFIX",
    "LinkClaims",
    "LinkKind",
    "LinkRejectedError",
    "issue_link",
    "link_key",
    "verify_link",
]

LINK_PREFIX = "iol1"
LinkKind = Literal["alert", "report"]
_KINDS: tuple[LinkKind, ...] = ("alert", "report")
_KEY_LABEL = b"ioc-stream link key v1"
_MAX_LINK = 2048  # characters: anything longer is not one of ours


class LinkRejectedError(ValueError):
    """A link that must be refused; ``reason`` is ``link_malformed``, ``link_bad_signature``,
    ``link_expired`` or ``link_wrong_kind``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a link opens and for whom.

    ``subject`` is the alert's fingerprint (kind ``alert``) or ``<team>/<edition>/<date>``
    (kind ``report``); ``sector`` the alert's sector (empty for a report).
    """

    kind: LinkKind
    subject: str
    sector: str
    recipient: str
    name: str
    issued_at: float
    expires_at: float
    link_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.kind, "s": self.subject, "sec": self.sector, "r": self.recipient,
            "n": self.name, "iat": self.issued_at, "exp": self.expires_at, "id": self.link_id,
        }  # fmt: skip


def link_key(secret: bytes) -> bytes:
    """The links' own key, derived from the token secret."""
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign(key: bytes, signed_part: str) -> str:
    # 128 bits of the HMAC are plenty for a link and keep it short enough for SMS and Zalo.
    return _b64(hmac.new(key, signed_part.encode("ascii"), hashlib.sha256).digest()[:16])


def issue_link(
    secret: bytes,
    *,
    kind: LinkKind,
    subject: str,
    sector: str,
    recipient: str,
    name: str,
    now: float,
    ttl: float,
) -> tuple[str, LinkClaims]:
    """A signed link (the path segment) and its claims, valid `ttl` seconds from `now`."""
    if kind not in _KINDS:
        raise ValueError(f"unknown link kind {kind!r}")
    if not subject or not recipient or not name.strip():
        raise ValueError("a link needs a subject, a recipient and a name")
    if ttl <= 0:
        raise ValueError("a link's lifetime must be positive")
    claims = LinkClaims(
        kind=kind,
        subject=subject,
        sector=sector,
        recipient=recipient,
        name=name.strip(),
        issued_at=float(int(now)),
        expires_at=float(int(now + ttl)),
        link_id=secrets.token_hex(6),
    )
    body = _b64(json.dumps(claims.to_json(), ensure_ascii=False, separators=(",", ":")).encode())
    signed_part = f"{LINK_PREFIX}.{body}"
    return f"{signed_part}.{_sign(link_key(secret), signed_part)}", claims


def verify_link(secret: bytes, link: str | None, *, now: float, kind: LinkKind) -> LinkClaims:
    """The claims of a valid link of `kind`; LinkRejectedError(reason) otherwise."""
    if not link or len(link) > _MAX_LINK:
        raise LinkRejectedError("link_malformed", "no link, or not one of ours")
    parts = link.split(".")
    if len(parts) != 3 or parts[0] != LINK_PREFIX:
        raise LinkRejectedError("link_malformed", "not an ioc-stream link")
    signed_part = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(link_key(secret), signed_part), parts[2]):
        raise LinkRejectedError("link_bad_signature", "the link was altered or is not ours")
    try:
        raw = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        claims = LinkClaims(
            kind=raw["k"],
            subject=str(raw["s"]),
            sector=str(raw["sec"]),
            recipient=str(raw["r"]),
            name=str(raw["n"]),
            issued_at=float(raw["iat"]),
            expires_at=float(raw["exp"]),
            link_id=str(raw["id"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise LinkRejectedError("link_malformed", f"bad claims: {exc}") from exc
    if claims.kind != kind:
        raise LinkRejectedError("link_wrong_kind", f"a {claims.kind} link, not a {kind} link")
    if now >= claims.expires_at:
        raise LinkRejectedError("link_expired", "the link has expired")
    return claims
