"""The alert engine the stream worker drives: records in, alert transitions out.

Pure and deterministic: no I/O, the clock is the `now` argument, the state is JSON-safe
(`snapshot()` / `restore()`), so the worker checkpoints it with its Kafka offsets and a replay
from those offsets produces the same transitions with the same seq numbers.

Decisions (the README's "Alerts: rules and lifecycle" section explains them for operators):

- **Which KPI point counts.** Per series, the newest window wins: a point of an older window
  than one already seen (a late revision arriving after the next window's points) is ignored
  for evaluation; within a window a point counts only if its (generation, revision) is
  higher (a later broker epoch's point supersedes whatever its revision). Threshold and
  rate rules evaluate provisional and final points alike, except that a provisional point of a
  cumulative KPI (count, sum, rate, distinct count: its value only grows while the window is
  open) is not used to test "below" / "fall": it would read as a drop at every window start.
  For the same reason it is a lower bound that may raise a rate rule's "rise" but never clear
  it (a surge would resolve at each new window's first point and re-fire as its count grew:
  once a hop with sliding windows); a threshold still clears on a new window's first point
  (the window it was about has ended).
- **Rate of change** compares a point with the latest value of the series' window that started
  `over` earlier (old windows' late revisions do update this history).
- **Absence of a source** is driven by freshness records: a `stale` record raises it, due at
  `last_seen + for` (or at once when that is past), a `fresh` record clears it. Absence of a
  KPI (a rule with `kpi:`) fires on `tick` when no point with data came for `for` (default: the
  KPI's window size) since the last one, or since the engine started watching.
- **Stale data.** A KPI alert is stale when every source that could feed it is stale: the
  sector's sources (the catalog does not say which source sends which event type), or the one
  source of a series grouped by source. Stale alerts still fire and show, but never escalate.
- **`for`** counts on the engine's clock (`now`, arrival time), not on event time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from alerts.lifecycle import ActionRejectedError, Alert, Lifecycle
from alerts.rules import (
    RuleBook,
    RuleSpec,
    change_percent,
    fingerprint,
    rate_condition,
    threshold_condition,
)
from foundation.contract.alerts import (
    AlertAction,
    AlertTransition,
    Fingerprint,
    RecordError,
    Silence,
)
from foundation.contract.catalog import Catalog, EscalationPolicy
from foundation.contract.kpi import KpiPoint

__all__ = ["MAX_ACTION_IDS", "SNAPSHOT_VERSION", "ActionResult", "AlertEngine"]

SNAPSHOT_VERSION = 2  # 2: points ordered by (generation, revision)
MAX_ACTION_IDS = 10_000  # action ids remembered to drop replays (producer retries are near)


class ActionResult(NamedTuple):
    """What an officer's action did: transitions, or why it was refused (`rejected` code).

    A named tuple, so `transitions, rejected = engine.on_action(action, now)` works.
    """

    transitions: list[AlertTransition]
    rejected: str | None = None


@dataclass(slots=True)
class _Series:
    """Evaluation position of one KPI series, and its recent window values (rate rules)."""

    window_start: float = -math.inf
    ordering: tuple[int, int] = (-1, -1)  # (generation, revision) of the point evaluated
    # start -> ((generation, revision), value)
    history: dict[float, tuple[tuple[int, int], float]] = field(default_factory=dict)


class AlertEngine:
    """Alert rules and lifecycles of a catalog, driven by KPI, freshness and action records."""

    def __init__(self, catalog: Catalog, policy: EscalationPolicy | None = None) -> None:
        self.rules = RuleBook(catalog)
        self.policy = policy or catalog.escalation
        self.lifecycle = Lifecycle(self.policy)
        self._alerts: dict[Fingerprint, Alert] = {}
        self._series: dict[str, _Series] = {}
        self._kpi_seen: dict[str, float] = {}  # kpi key -> latest arrival with data
        self._sources: dict[str, str] = {}  # source -> "fresh" | "stale"
        self._silences: dict[str, Silence] = {}
        self._action_ids: dict[str, None] = {}  # insertion-ordered, bounded
        self._watch_since: float | None = None
        self.rejections: Counter[str] = Counter()  # action rejections by reason (not restored)
        self.ignored: Counter[str] = Counter()  # records not evaluated, by reason

    # -- inputs ----------------------------------------------------------------------------------

    def on_kpi(self, record: Mapping[str, Any], now: float) -> list[AlertTransition]:
        """A record of `ioc.kpi`: KPI points are evaluated, freshness records passed on."""
        self._watch(now)
        kind = record.get("kind")
        if kind == "freshness":
            return self.on_freshness(record, now)
        if kind != "kpi":
            self.ignored["not_a_point" if kind == "sector_seen" else "bad_record"] += 1
            return []
        try:
            point = KpiPoint.from_json(record)
        except RecordError:
            self.ignored["bad_record"] += 1
            return []
        series, kpi, group, start = point.series, point.kpi, point.group, point.window_start
        value, final, count = point.value, point.final, point.count
        ordering = point.ordering
        newest = point.newest or now
        if kpi not in self.rules.kpis:
            self.ignored["unknown_kpi"] += 1
            return []
        out: list[AlertTransition] = []
        if count > 0 and value is not None:
            self._kpi_seen[kpi] = max(self._kpi_seen.get(kpi, newest), newest)
            out += self._kpi_returned(kpi, now)
        specs = self.rules.by_kpi.get(kpi, [])
        if not specs:
            return out
        state = self._series.setdefault(series, _Series())
        if value is not None and math.isfinite(value):
            self._remember(state, specs, start, ordering, value)
        if (start, *ordering) <= (state.window_start, *state.ordering):
            self.ignored["older_point"] += 1
            return out
        state.window_start, state.ordering = start, ordering
        if value is None or not math.isfinite(value):
            return out
        for spec in specs:
            if final or spec.uses_provisional():
                lower_bound = not final and spec.cumulative and spec.kind == "rate_of_change"
                out += self._evaluate(spec, state, group, start, value, now, lower_bound)
        return out

    def on_freshness(self, record: Mapping[str, Any], now: float) -> list[AlertTransition]:
        """A source turned fresh or stale: absence rules, and stale flags of KPI alerts."""
        self._watch(now)
        try:
            source = str(record["source"])
            state = str(record["state"])
            last_seen = record.get("last_seen")
            silent_since = (
                float(last_seen)
                if last_seen is not None
                else float(record["changed_at"]) - float(record["stale_after"])
            )
        except (KeyError, TypeError, ValueError):
            self.ignored["bad_record"] += 1
            return []
        located = self.rules.catalog.source(source)
        if state not in ("fresh", "stale") or located is None:
            self.ignored["bad_record" if located else "unknown_source"] += 1
            return []
        self._sources[source] = state
        out: list[AlertTransition] = []
        for spec in self.rules.by_source.get(source, []):
            due = max(silent_since + spec.rule.for_, now) if state == "stale" else now
            out += self._condition(spec, spec.labels(), state == "stale", None, None, due, now)
        sector = located[0].id
        for alert in self._sorted_alerts():
            if alert.current.labels.get("sector") == sector and alert.is_open:
                out += self.lifecycle.set_stale(alert, self._stale(alert), now)
        return out

    def on_action(self, action: AlertAction, now: float) -> ActionResult:
        """An officer's action; a replayed action_id, or one that does not apply, is refused."""
        self._watch(now)
        if action.action_id in self._action_ids:
            return self._reject("duplicate_action")
        self._action_ids[action.action_id] = None
        while len(self._action_ids) > MAX_ACTION_IDS:
            del self._action_ids[next(iter(self._action_ids))]
        if action.action in ("silence", "unsilence"):
            return self._silence_action(action, now)
        alert = self._alerts.get(action.fingerprint) if action.fingerprint else None
        if alert is None:
            return self._reject("unknown_fingerprint")
        try:
            if action.action == "ack":
                transitions = self.lifecycle.ack(alert, action.by, now)
            elif action.action == "assign":
                if not action.assignee:
                    return self._reject("missing_field:assignee")
                transitions = self.lifecycle.assign(alert, action.assignee, action.by, now)
            elif action.action == "note":
                if not action.note:
                    return self._reject("missing_field:note")
                transitions = self.lifecycle.note(alert, action.note, action.by, now)
            elif action.action == "escalate":
                transitions = self.lifecycle.escalate_by(alert, action.by, now)
            else:
                transitions = self.lifecycle.resolve(alert, action.by, now)
            if action.note and action.action in ("ack", "resolve", "escalate"):
                # `ioc alerts ack FP --note …`: the reason goes to the audit trail with it.
                transitions += self.lifecycle.note(alert, action.note, action.by, now)
        except ActionRejectedError as exc:
            return self._reject(exc.reason)
        return ActionResult(transitions)

    def tick(self, now: float) -> list[AlertTransition]:
        """Timers: `for` elapsing, KPI absence, silences starting/ending, escalation, flapping."""
        self._watch(now)
        out: list[AlertTransition] = []
        for spec in self.rules.kpi_absence:
            out += self._check_kpi_absence(spec, now)
        for alert in self._sorted_alerts():
            if alert.state == "pending":
                rule = self.rules.by_key.get(alert.rule_key)
                messages = self._messages(rule, alert, alert.value)
                out += self.lifecycle.due(alert, now, messages=messages)
            out += self.lifecycle.set_silence(alert, self._silenced_by(alert, now), now)
            out += self.lifecycle.escalate(alert, now)
            out += self.lifecycle.unflap(alert, now)
        for silence_id in [k for k, s in self._silences.items() if s.ends_at <= now]:
            del self._silences[silence_id]
        return out

    # -- views (read-only) -----------------------------------------------------------------------

    def alert(self, fingerprint: str) -> AlertTransition | None:
        """The latest transition of an alert (what a consumer last received)."""
        alert = self._alerts.get(Fingerprint(fingerprint))
        return None if alert is None else alert.current

    def alerts(self) -> list[AlertTransition]:
        return [a.current for a in self._sorted_alerts()]

    def open_alerts(self) -> list[AlertTransition]:
        """Pending, firing and acknowledged alerts, by fingerprint."""
        return [a.current for a in self._sorted_alerts() if a.is_open]

    def counts(self) -> Counter[tuple[str, str]]:
        """Open alerts by (state, severity), for a gauge."""
        return Counter((a.state, a.current.severity) for a in self._alerts.values() if a.is_open)

    def silences(self) -> list[Silence]:
        return [self._silences[k] for k in sorted(self._silences)]

    def stale_sources(self) -> list[str]:
        return sorted(s for s, state in self._sources.items() if state == "stale")

    # -- checkpoint --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to resume exactly here, JSON-safe (no NaN or infinity)."""
        return {
            "version": SNAPSHOT_VERSION,
            "watch_since": self._watch_since,
            "alerts": [self._alerts[fp].to_json() for fp in sorted(self._alerts)],
            "series": {
                key: {
                    "window_start": s.window_start if math.isfinite(s.window_start) else None,
                    "ordering": list(s.ordering),
                    "history": [
                        [w, gen, rev, v] for w, ((gen, rev), v) in sorted(s.history.items())
                    ],
                }
                for key, s in sorted(self._series.items())
            },
            "kpi_seen": dict(sorted(self._kpi_seen.items())),
            "sources": dict(sorted(self._sources.items())),
            "silences": [asdict(s) for s in self.silences()],
            "action_ids": list(self._action_ids),
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Resume from `snapshot()`: seq numbers continue, nothing is emitted again."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown alert engine snapshot version {snapshot.get('version')!r}")
        alerts = [Alert.from_json(raw) for raw in snapshot["alerts"]]
        self._alerts = {a.fingerprint: a for a in alerts}
        self._series = {
            key: _Series(
                window_start=-math.inf if raw["window_start"] is None else raw["window_start"],
                ordering=(int(raw["ordering"][0]), int(raw["ordering"][1])),
                history={
                    float(w): ((int(gen), int(rev)), float(v)) for w, gen, rev, v in raw["history"]
                },
            )
            for key, raw in snapshot["series"].items()
        }
        self._kpi_seen = {k: float(v) for k, v in snapshot["kpi_seen"].items()}
        self._sources = {k: str(v) for k, v in snapshot["sources"].items()}
        self._silences = {s["id"]: Silence(**s) for s in snapshot["silences"]}
        self._action_ids = dict.fromkeys(str(a) for a in snapshot["action_ids"])
        watch = snapshot.get("watch_since")
        self._watch_since = None if watch is None else float(watch)

    # -- internals -------------------------------------------------------------------------------

    def _watch(self, now: float) -> None:
        if self._watch_since is None:
            self._watch_since = now

    def _sorted_alerts(self) -> list[Alert]:
        return [self._alerts[fp] for fp in sorted(self._alerts)]

    def _reject(self, reason: str) -> ActionResult:
        self.rejections[reason.split(":", 1)[0]] += 1
        return ActionResult([], reason)

    def _remember(
        self,
        state: _Series,
        specs: list[RuleSpec],
        start: float,
        ordering: tuple[int, int],
        value: float,
    ) -> None:
        """Keep window values as far back as the longest rate rule of this KPI looks."""
        spans = [s.rule.over for s in specs if s.kind == "rate_of_change" and s.rule.over]
        if not spans:
            return
        held = state.history.get(start)
        if held is None or ordering >= held[0]:
            state.history[start] = (ordering, value)
        kpi = specs[0].kpi
        size = kpi.window.size if kpi is not None else 0.0
        horizon = max(state.window_start, start) - max(spans) - size
        for old in [w for w in state.history if w < horizon]:
            del state.history[old]

    def _evaluate(
        self,
        spec: RuleSpec,
        state: _Series,
        group: str,
        start: float,
        value: float,
        now: float,
        lower_bound: bool = False,
    ) -> list[AlertTransition]:
        """The rule's condition on one point; a lower bound (provisional count) only raises."""
        labels = spec.labels(group)
        alert = self._alerts.get(self._fingerprint(spec, labels))
        latched = alert.latched if alert is not None else False
        change: float | None = None
        if spec.kind == "threshold":
            holds = threshold_condition(spec.rule, value, latched)
        else:
            baseline = self._baseline(spec, state, start)
            change = None if baseline is None else change_percent(value, baseline)
            if change is None:
                return []
            holds = rate_condition(spec.rule, change, latched)
        if lower_bound and not holds:
            return []  # the window may yet reach the level: only its final point clears
        return self._condition(spec, labels, holds, value, change, now + spec.rule.for_, now)

    def _baseline(self, spec: RuleSpec, state: _Series, start: float) -> float | None:
        """The value of the window that started `over` before `start` (or within a hop before)."""
        over = spec.rule.over or 0.0
        window = spec.kpi.window if spec.kpi is not None else None
        hop = (window.hop or window.size) if window is not None else over
        target = start - over
        candidates = [w for w in state.history if target - hop < w <= target]
        return state.history[max(candidates)][1] if candidates else None

    def _condition(
        self,
        spec: RuleSpec,
        labels: dict[str, str],
        holds: bool,
        value: float | None,
        change: float | None,
        due_at: float,
        now: float,
    ) -> list[AlertTransition]:
        fingerprint = self._fingerprint(spec, labels)
        alert = self._alerts.get(fingerprint)
        if alert is None and not holds:
            return []
        messages = self.rules.render(spec, labels, value=value, change=change)
        stale = self._stale_labels(spec, labels)
        silenced_by = self._silence_for(fingerprint, spec.rule.id, spec.rule.severity, labels, now)
        if alert is None:
            alert, out = self.lifecycle.open(
                fingerprint=fingerprint, rule_key=spec.key, rule=spec.rule.id,
                severity=spec.rule.severity, labels=labels, value=value, messages=messages,
                due_at=due_at, now=now, stale=stale, silenced_by=silenced_by,
            )  # fmt: skip
            self._alerts[fingerprint] = alert
            return out
        return self.lifecycle.condition(
            alert, holds, value=value, messages=messages, due_at=due_at, now=now,
            stale=stale, silenced_by=silenced_by,
        )  # fmt: skip

    def _kpi_returned(self, kpi: str, now: float) -> list[AlertTransition]:
        out: list[AlertTransition] = []
        for spec in self.rules.kpi_absence:
            if spec.kpi_key == kpi:
                out += self._condition(spec, spec.labels(), False, None, None, now, now)
        return out

    def _check_kpi_absence(self, spec: RuleSpec, now: float) -> list[AlertTransition]:
        kpi = spec.kpi
        if kpi is None or spec.kpi_key is None or self._watch_since is None:
            return []
        since = self._kpi_seen.get(spec.kpi_key, self._watch_since)
        alert = self._alerts.get(self._fingerprint(spec, spec.labels()))
        if alert is not None:
            if alert.latched:
                return []
            if alert.state == "resolved":  # resolved by an officer: a whole new silence
                since = max(since, alert.current.at)
        duration = spec.rule.for_ or kpi.window.size
        if now - since < duration:
            return []
        return self._condition(spec, spec.labels(), True, None, None, now, now)

    def _fingerprint(self, spec: RuleSpec, labels: Mapping[str, str]) -> Fingerprint:
        return fingerprint(spec.rule.id, labels)

    def _messages(
        self, spec: RuleSpec | None, alert: Alert, value: float | None
    ) -> tuple[str, str] | None:
        if spec is None or spec.kind == "rate_of_change":
            return None  # keep the messages rendered with the change that raised it
        return self.rules.render(spec, alert.current.labels, value=value)

    def _stale(self, alert: Alert) -> bool:
        spec = self.rules.by_key.get(alert.rule_key)
        return spec is not None and self._stale_labels(spec, alert.current.labels)

    def _stale_labels(self, spec: RuleSpec, labels: Mapping[str, str]) -> bool:
        if spec.kind == "absence":
            return False  # an absence alert is about the silence itself
        sources = (
            [labels["source"]] if "source" in labels else self.rules.sector_sources(spec.sector.id)
        )
        return bool(sources) and all(self._sources.get(s) == "stale" for s in sources)

    def _silenced_by(self, alert: Alert, now: float) -> str | None:
        current = alert.current
        return self._silence_for(
            current.fingerprint, current.rule, current.severity, current.labels, now
        )

    def _silence_for(
        self, fingerprint: str, rule: str, severity: str, labels: Mapping[str, str], now: float
    ) -> str | None:
        """The first (by id) silence in force whose matchers all match."""
        subject = {**labels, "rule": rule, "severity": severity, "fingerprint": fingerprint}
        for silence_id in sorted(self._silences):
            if self._silences[silence_id].matches(subject, now):
                return silence_id
        return None

    def _silence_action(self, action: AlertAction, now: float) -> ActionResult:
        silence = action.silence
        if silence is None:
            return self._reject("missing_field:silence")
        if action.action == "unsilence":
            if self._silences.pop(silence.id, None) is None:
                return self._reject("unknown_silence")
        else:
            if not silence.matchers:
                return self._reject("silence_matches_everything")
            if not silence.ends_at > silence.starts_at:
                return self._reject("silence_ends_before_start")
            if silence.ends_at <= now:
                return self._reject("silence_expired")
            self._silences[silence.id] = silence
        out: list[AlertTransition] = []
        for alert in self._sorted_alerts():
            out += self.lifecycle.set_silence(alert, self._silenced_by(alert, now), now)
        return ActionResult(out)
