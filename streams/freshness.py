"""Source freshness: last seen per source, stale after cadence × factor of silence.

Arrival (wall-clock) time counts, not event time: a source that resends old events is
alive; a source that never sent anything turns stale `stale_after` seconds after the
tracker started watching it.
"""

from __future__ import annotations

from typing import Any

from foundation.contract.kpi import FreshnessChange, SectorSeen
from foundation.contract.kpi import FreshnessState as State

__all__ = ["SectorLastSeen", "SourceFreshness"]


class SourceFreshness:
    """Freshness of the sources one worker owns (the sources keyed to its partitions)."""

    def __init__(self, sources: dict[str, tuple[str, float]], *, now: float) -> None:
        """sources: source id -> (sector id, stale_after seconds)."""
        self._sources = sources
        self._watch_since = dict.fromkeys(sources, now)
        self._last_seen: dict[str, float] = {}
        self._state: dict[str, State] = {}
        self._pending: list[FreshnessChange] = []
        self._recent: dict[str, float] = {}  # sector -> latest arrival since the last drain

    def seen(self, source: str, now: float) -> None:
        """An event of source arrived now."""
        if source not in self._sources:
            return
        self._last_seen[source] = now
        sector = self._sources[source][0]
        self._recent[sector] = max(now, self._recent.get(sector, now))
        if self._state.get(source) != "fresh":
            self._state[source] = "fresh"
            self._pending.append(self._change(source, "fresh", now))

    def changes(self, now: float) -> list[FreshnessChange]:
        """Transitions since the last call, stale ones detected now (timers, no event needed)."""
        for source, (_sector, stale_after) in self._sources.items():
            if self._state.get(source) == "stale":
                continue
            since = self._last_seen.get(source, self._watch_since[source])
            if now - since >= stale_after:
                self._state[source] = "stale"
                self._pending.append(self._change(source, "stale", now))
        out, self._pending = self._pending, []
        return out

    def drain_recent(self) -> dict[str, float]:
        """Per sector, the latest arrival among these sources since the last call."""
        recent, self._recent = self._recent, {}
        return recent

    def state(self, source: str) -> State | None:
        return self._state.get(source)

    def stale_count(self) -> int:
        return sum(1 for state in self._state.values() if state == "stale")

    def _change(self, source: str, state: State, now: float) -> FreshnessChange:
        sector, stale_after = self._sources[source]
        return FreshnessChange(source, sector, state, self._last_seen.get(source), now, stale_after)

    def snapshot(self) -> dict[str, Any]:
        return {
            "last_seen": self._last_seen,
            "state": self._state,
            "watch_since": self._watch_since,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        for source in self._sources:
            if source in snapshot.get("last_seen", {}):
                self._last_seen[source] = float(snapshot["last_seen"][source])
            if source in snapshot.get("state", {}):
                self._state[source] = snapshot["state"][source]
            if source in snapshot.get("watch_since", {}):
                self._watch_since[source] = float(snapshot["watch_since"][source])


class SectorLastSeen:
    """Last-seen time per sector, the maximum over sources that other workers may own.

    Fed by stage 1's per-sector maxima (a replay only repeats a maximum), it publishes a
    sector's new last-seen time at most once per `interval`.
    """

    def __init__(self, *, interval: float = 1.0) -> None:
        self._interval = interval
        self._last_seen: dict[str, float] = {}
        self._published: dict[str, float] = {}
        self._dirty: set[str] = set()

    def seen(self, sector: str, at: float) -> None:
        if at > self._last_seen.get(sector, float("-inf")):
            self._last_seen[sector] = at
            self._dirty.add(sector)

    def due(self, now: float) -> list[SectorSeen]:
        """The sectors' new last-seen times to publish on ioc.kpi."""
        out = []
        for sector in sorted(self._dirty):
            if now - self._published.get(sector, float("-inf")) >= self._interval:
                out.append(SectorSeen(sector, self._last_seen[sector], now))
                self._published[sector] = now
        self._dirty.difference_update(r.sector for r in out)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"last_seen": self._last_seen, "dirty": sorted(self._dirty)}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self._last_seen = {k: float(v) for k, v in snapshot.get("last_seen", {}).items()}
        self._dirty = set(snapshot.get("dirty", []))
