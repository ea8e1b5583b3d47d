"""Channel names of the gateway protocol and which channels a token may read (pure).

- `kpi:<sector>`: KPI points of the sector (`ioc.kpi`, kind `kpi`), keyed by series;
- `alerts`, `alerts:<sector>`: alert transitions (`ioc.alerts`), keyed by fingerprint;
  the snapshot holds the open alerts;
- `freshness`, `freshness:<sector>`: source freshness and sector last-seen records.

A token scoped to some sectors reads only their channels: asking for `alerts` or
`freshness` gives it the per-sector channels of its scope, and `kpi:*` every `kpi:<sector>`
it may read.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ALERTS",
    "FRESHNESS",
    "ChannelDeniedError",
    "alerts_channels",
    "expand_channels",
    "freshness_channels",
    "kpi_channel",
]

ALERTS = "alerts"
FRESHNESS = "freshness"
_KPI = "kpi"


class ChannelDeniedError(ValueError):
    """A channel that does not exist or that the token may not read; `reason` is a code."""

    def __init__(self, reason: str, channel: str) -> None:
        super().__init__(f"{reason}: {channel}")
        self.reason = reason
        self.channel = channel


def kpi_channel(sector: str) -> str:
    return f"{_KPI}:{sector}"


def alerts_channels(sector: str) -> tuple[str, str]:
    """The channels an alert of `sector` is published on."""
    return ALERTS, f"{ALERTS}:{sector}"


def freshness_channels(sector: str) -> tuple[str, str]:
    """The channels a freshness record of `sector` is published on."""
    return FRESHNESS, f"{FRESHNESS}:{sector}"


def expand_channels(
    requested: Iterable[str], *, sectors: Iterable[str], scope: tuple[str, ...] | None
) -> list[str]:
    """The concrete channels for a request; ChannelDeniedError on an unknown or denied one.

    `sectors` are the catalog's sector ids; `scope` the token's (None: every sector).
    """
    known = list(sectors)
    allowed = known if scope is None else [s for s in known if s in scope]
    out: list[str] = []
    for channel in requested:
        kind, colon, sector = channel.partition(":")
        if kind == _KPI and sector == "*":
            expanded = [kpi_channel(s) for s in allowed]
        elif kind in (ALERTS, FRESHNESS) and not colon:
            expanded = [channel] if scope is None else [f"{kind}:{s}" for s in allowed]
        elif kind in (_KPI, ALERTS, FRESHNESS) and colon:
            if sector not in known:
                raise ChannelDeniedError("unknown_channel", channel)
            if sector not in allowed:
                raise ChannelDeniedError("forbidden_channel", channel)
            expanded = [channel]
        else:
            raise ChannelDeniedError("unknown_channel", channel)
        out.extend(c for c in expanded if c not in out)
    return out
