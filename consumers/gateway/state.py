"""What the gateway knows: the latest KPI point per series, freshness, open alerts (pure).

Records from `ioc.kpi` and `ioc.alerts` (and rows of the cold-start load) go in through
`apply_*`; each returns the changes it caused, one per channel it belongs to. A record the
state has already seen (at-least-once delivery, the overlap between the database load and
the Kafka replay) changes nothing and returns no change:

- a KPI point is new when its (generation, revision) is higher than any seen for its
  (series, window_start): a later broker epoch's point wins whatever its revision;
- a freshness record when its `changed_at` is newer (same instant: a different state);
  a sector last-seen record when its `last_seen` is newer; a data gap when it was found later;
- an alert transition when its `seq` is higher than any seen for its fingerprint.

A series' sparkline is what its tile showed over the last hour, one sample a minute: a point
is sampled at its emission time when no point emitted before it ranks higher (a later window,
or the same window's higher revision), and the last such point of a minute stands for it.
Points may come in any order (the database's rows first, then the Kafka replay's older
revisions of the same windows): a point already seen as news still fills its minute, so a
restarted gateway rebuilds the curve the previous one drew from whatever history it reads.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from consumers.gateway.channels import alerts_channels, freshness_channels, kpi_channel

__all__ = ["SPARK_SECONDS", "Change", "GatewayState"]

SPARK_SECONDS = 3600.0  # a sparkline covers the last hour
# Samples are kept twice as long and the hour is cut when a snapshot is taken: a point that
# a later revision shows was never displayed must not have pushed older samples out (the
# catalog's grace periods, at most 30 min, keep late revisions well inside the margin).
_SPARK_KEPT = 2 * SPARK_SECONDS
_SPARK_BUCKET = 60.0  # at most one sample a minute
_WINDOWS_KEPT = 64  # revisions remembered per series, for dedupe of late revisions


@dataclass(frozen=True, slots=True)
class Change:
    """One new item on one channel; `key` names what it replaces (series, source, alert)."""

    channel: str
    key: str
    item: dict[str, Any]


# A point's rank: (window_start, generation, revision); a sample's (time, rank, value).
_Rank = tuple[float, int, int]
_Sample = tuple[float, _Rank, float]


@dataclass(slots=True)
class _Series:
    latest: dict[str, Any]
    revisions: dict[float, tuple[int, int]] = field(default_factory=dict)
    spark: list[_Sample] = field(default_factory=list)  # time order, ranks never decrease

    def seen(self, window_start: float, ordering: tuple[int, int]) -> bool:
        known = self.revisions.get(window_start)
        return known is not None and ordering <= known

    def remember(self, window_start: float, ordering: tuple[int, int]) -> None:
        self.revisions[window_start] = ordering
        if len(self.revisions) > _WINDOWS_KEPT:
            for old in sorted(self.revisions)[: len(self.revisions) - _WINDOWS_KEPT]:
                del self.revisions[old]

    def sample(self, at: float, rank: _Rank, value: float) -> None:
        """Put a point in its minute (see the module's docstring); any arrival order."""
        spark = self.spark
        if spark and at < spark[-1][0] - _SPARK_KEPT:
            return
        if not spark or (at, rank) > spark[-1][:2]:
            place = len(spark)  # the live case: the newest point
        else:
            place = bisect.bisect_left(spark, (at, rank), key=lambda s: (s[0], s[1]))
        if place and spark[place - 1][1] > rank:
            return  # the tile showed a later window or revision then
        # Points after it that rank lower were never the tile's value: drop them.
        end = place
        while end < len(spark) and spark[end][1] < rank:
            end += 1
        del spark[place:end]
        minute = math.floor(at / _SPARK_BUCKET)
        if place < len(spark) and math.floor(spark[place][0] / _SPARK_BUCKET) == minute:
            return  # a later point of the same minute stands for it
        if place and math.floor(spark[place - 1][0] / _SPARK_BUCKET) == minute:
            spark[place - 1] = (at, rank, value)
        else:
            spark.insert(place, (at, rank, value))
        horizon = spark[-1][0] - _SPARK_KEPT
        if spark[0][0] < horizon:
            del spark[: bisect.bisect_left(spark, horizon, key=lambda s: s[0])]


class GatewayState:
    """Latest values per channel key; `snapshot(channel)` is what a new subscriber gets."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}
        self._series_of_sector: dict[str, set[str]] = {}
        self._freshness: dict[str, dict[str, Any]] = {}
        self._alerts: dict[str, dict[str, Any]] = {}  # open (not resolved) alerts
        self._alert_seq: dict[str, int] = {}
        self._alert_sector: dict[str, str] = {}

    # -- counts, for /healthz and tests

    @property
    def series_count(self) -> int:
        return len(self._series)

    @property
    def open_alert_count(self) -> int:
        return len(self._alerts)

    def open_alert(self, fingerprint: str) -> dict[str, Any] | None:
        """The latest transition of an open alert, or None."""
        return self._alerts.get(fingerprint)

    def alert_sector(self, fingerprint: str) -> str | None:
        """The sector of an alert this gateway has seen, or None."""
        return self._alert_sector.get(fingerprint)

    # -- records in

    def apply_record(self, key: str | None, record: dict[str, Any]) -> list[Change]:
        """Dispatch one decoded record of `ioc.kpi` or `ioc.alerts` by its `kind`."""
        kind = record.get("kind")
        if kind == "kpi":
            return self.apply_kpi(record)
        if kind in ("freshness", "sector_seen", "data_gap"):
            return self.apply_freshness(key, record)
        if kind == "alert":
            return self.apply_alert(record)
        return []

    def apply_kpi(self, point: dict[str, Any]) -> list[Change]:
        series_key = str(point["series"])
        sector = str(point["sector"])
        window_start = float(point["window_start"])
        ordering = _ordering(point)
        series = self._series.get(series_key)
        if series is None:
            series = _Series(latest=point)
            self._series[series_key] = series
            self._series_of_sector.setdefault(sector, set()).add(series_key)
        value = point.get("value")
        if isinstance(value, (int, float)) and math.isfinite(value):
            at = float(point.get("emitted_at") or point["window_end"])
            series.sample(at, (window_start, *ordering), float(value))
        if series.seen(window_start, ordering):
            return []
        series.remember(window_start, ordering)
        latest_start = float(series.latest["window_start"])
        if window_start > latest_start or (
            window_start == latest_start and ordering >= _ordering(series.latest)
        ):
            series.latest = point
        return [Change(kpi_channel(sector), series_key, point)]

    def apply_freshness(self, key: str | None, record: dict[str, Any]) -> list[Change]:
        if record["kind"] == "data_gap":
            item_key = key or f"gap|{record['sector']}"
            known = self._freshness.get(item_key)
            if known is not None and float(record["detected_at"]) <= float(known["detected_at"]):
                return []
        elif record["kind"] == "sector_seen":
            item_key = key or f"sector|{record['sector']}"
            known = self._freshness.get(item_key)
            if known is not None and float(record["last_seen"]) <= float(known["last_seen"]):
                return []
        else:
            item_key = key or f"freshness|{record['source']}"
            known = self._freshness.get(item_key)
            if known is not None:
                changed, known_changed = float(record["changed_at"]), float(known["changed_at"])
                if changed < known_changed or (
                    changed == known_changed and record["state"] == known["state"]
                ):
                    return []
        self._freshness[item_key] = record
        return [Change(c, item_key, record) for c in freshness_channels(str(record["sector"]))]

    def apply_alert(self, record: dict[str, Any]) -> list[Change]:
        fingerprint = str(record["fingerprint"])
        seq = int(record["seq"])
        if seq <= self._alert_seq.get(fingerprint, -1):
            return []
        self._alert_seq[fingerprint] = seq
        sector = str(record["labels"]["sector"])
        self._alert_sector[fingerprint] = sector
        if record["state"] == "resolved":
            self._alerts.pop(fingerprint, None)
        else:
            self._alerts[fingerprint] = record
        return [Change(c, fingerprint, record) for c in alerts_channels(sector)]

    def know_alert(self, fingerprint: str, seq: int, sector: str) -> None:
        """Remember an alert's last seq (cold start: resolved alerts are not loaded whole)."""
        if seq > self._alert_seq.get(fingerprint, -1):
            self._alert_seq[fingerprint] = seq
        self._alert_sector[fingerprint] = sector

    # -- snapshots

    def snapshot(self, channel: str) -> list[tuple[str, dict[str, Any]]]:
        """(key, item) of everything a new subscriber of `channel` must know, in key order."""
        kind, _, sector = channel.partition(":")
        if kind == "kpi":
            items = []
            for series_key in sorted(self._series_of_sector.get(sector, ())):
                series = self._series[series_key]
                item = dict(series.latest)
                spark = series.spark
                since = spark[-1][0] - SPARK_SECONDS if spark else 0.0
                item["spark"] = [[round(t, 3), v] for t, _rank, v in spark if t >= since]
                items.append((series_key, item))
            return items
        if kind == "freshness":
            return sorted(
                (k, r)
                for k, r in self._freshness.items()
                if not sector or r.get("sector") == sector
            )
        if kind == "alerts":
            return sorted(
                (fp, r)
                for fp, r in self._alerts.items()
                if not sector or self._alert_sector.get(fp) == sector
            )
        return []


def _ordering(point: dict[str, Any]) -> tuple[int, int]:
    return (int(point.get("generation", 0)), int(point["revision"]))
