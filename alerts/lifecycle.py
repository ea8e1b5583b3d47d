"""The life of one alert: pending → firing → acknowledged → resolved, and its flags.

Pure: every method takes `now` and returns the transitions it made (each with seq + 1).
The engine decides *when* a rule's condition holds; this module decides what that means for
the alert. A rule-driven change has `actor=None`; an officer's action carries their name.

    no alert ──(condition true)──▶ pending ──(for elapsed: fire)──▶ firing ──(ack)──▶ acknowledged
    no alert ──(condition true, for = 0: fire)──▶ firing
    pending ──(condition clears before `for`: cancel)──▶ resolved
    firing, acknowledged ──(condition clears, or an officer: resolve)──▶ resolved
    resolved ──(condition true again)──▶ pending, or firing (refire) when for = 0

Flags change without changing the state, each with its own transition: `stale` (computed
from stale data: never escalated), `silenced_by` (a silence matches), `flapping` (fired or
resolved N times within the window; notifications held), and `escalation_level` (firing,
unacknowledged, severity ≥ the policy's minimum, not stale and not silenced, for the
level's `after`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from foundation.contract.alerts import (
    SEVERITY_RANK,
    AlertState,
    AlertTransition,
    Fingerprint,
    Severity,
    TransitionKind,
)
from foundation.contract.catalog import EscalationPolicy

__all__ = ["MAX_NOTES", "ActionRejectedError", "Alert", "Lifecycle"]

MAX_NOTES = 50  # notes carried on every transition: the oldest go first beyond this
OPEN: tuple[AlertState, ...] = ("pending", "firing", "acknowledged")


class ActionRejectedError(Exception):
    """An officer's action does not apply to the alert in its state; `reason` is a code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Alert:
    """One alert's published state (its last transition) and the engine's bookkeeping."""

    rule_key: str  # `<sector>.<rule id>`
    current: AlertTransition
    latched: bool = False  # the rule's condition holds (with hysteresis)
    due_at: float | None = None  # pending: when it fires
    level_since: float | None = None  # when the escalation timer of this level started
    flips: list[float] = field(default_factory=list)  # times of fire/refire/resolve
    fired_before: bool = False
    value: float | None = None  # the latest value seen (the transition holds the one shown)

    @property
    def fingerprint(self) -> Fingerprint:
        return self.current.fingerprint

    @property
    def state(self) -> AlertState:
        return self.current.state

    @property
    def is_open(self) -> bool:
        return self.current.state in OPEN

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_key": self.rule_key, "current": self.current.to_json(),
            "latched": self.latched, "due_at": self.due_at, "level_since": self.level_since,
            "flips": list(self.flips), "fired_before": self.fired_before, "value": self.value,
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Alert:
        return cls(
            rule_key=str(raw["rule_key"]),
            current=AlertTransition.from_json(raw["current"]),
            latched=bool(raw["latched"]),
            due_at=_opt_float(raw.get("due_at")),
            level_since=_opt_float(raw.get("level_since")),
            flips=[float(t) for t in raw.get("flips", [])],
            fired_before=bool(raw.get("fired_before", False)),
            value=_opt_float(raw.get("value")),
        )


class Lifecycle:
    """Transitions of alerts under one escalation policy."""

    def __init__(self, policy: EscalationPolicy) -> None:
        self.policy = policy

    # -- the rule's condition ---------------------------------------------------------------

    def open(
        self,
        *,
        fingerprint: Fingerprint,
        rule_key: str,
        rule: str,
        severity: Severity,
        labels: dict[str, str],
        value: float | None,
        messages: tuple[str, str],
        due_at: float,
        now: float,
        stale: bool,
        silenced_by: str | None,
    ) -> tuple[Alert, list[AlertTransition]]:
        """A new alert whose condition just became true: pending, or firing when due."""
        first = AlertTransition(
            fingerprint=fingerprint, seq=0, transition="pending", state="pending",
            previous_state=None, rule=rule, severity=severity, labels=dict(labels), at=now,
            started_at=now, value=value, message_vi=messages[0], message_en=messages[1],
            stale=stale, silenced_by=silenced_by,
        )  # fmt: skip
        alert = Alert(rule_key=rule_key, current=first, latched=True, value=value)
        # seq 0 is never published: the first real transition below takes seq 1.
        return alert, self._begin(alert, value, messages, due_at, now)

    def condition(
        self,
        alert: Alert,
        holds: bool,
        *,
        value: float | None,
        messages: tuple[str, str],
        due_at: float,
        now: float,
        stale: bool,
        silenced_by: str | None,
    ) -> list[AlertTransition]:
        """The rule's (latched) condition after a new observation.

        The flags are the alert's current ones; they are applied when a new episode begins
        (the engine sends flag changes of open alerts as their own transitions).
        """
        alert.latched = holds
        alert.value = value
        if holds:
            if alert.state == "resolved":
                flags = {"stale": stale, "silenced_by": silenced_by}
                return self._begin(alert, value, messages, due_at, now, **flags)
            return self.due(alert, now, messages=messages)
        if alert.state == "pending":
            alert.due_at = None
            return [self._emit(alert, "cancel", now, state="resolved", value=value)]
        if alert.state in ("firing", "acknowledged"):
            return self._resolve(alert, now, value=value, messages=messages)
        return []

    def due(
        self, alert: Alert, now: float, *, messages: tuple[str, str] | None = None
    ) -> list[AlertTransition]:
        """Fire a pending alert whose `for` has elapsed."""
        if alert.state != "pending" or alert.due_at is None or now < alert.due_at:
            return []
        return self._fire(alert, "fire", now, alert.value, messages)

    # -- officers -----------------------------------------------------------------------------

    def ack(self, alert: Alert, by: str, now: float) -> list[AlertTransition]:
        if alert.state == "acknowledged":
            raise ActionRejectedError("already_acknowledged")
        if alert.state != "firing":
            raise ActionRejectedError(f"not_firing:{alert.state}")
        alert.level_since = None
        return [self._emit(alert, "ack", now, state="acknowledged", acknowledged_by=by, actor=by)]

    def assign(self, alert: Alert, assignee: str, by: str, now: float) -> list[AlertTransition]:
        if alert.current.assignee == assignee:
            raise ActionRejectedError("already_assigned")
        return [self._emit(alert, "assign", now, assignee=assignee, actor=by)]

    def note(self, alert: Alert, text: str, by: str, now: float) -> list[AlertTransition]:
        notes = (*alert.current.notes, (now, by, text))[-MAX_NOTES:]
        return [self._emit(alert, "note", now, note=text, notes=notes, actor=by)]

    def escalate_by(self, alert: Alert, by: str, now: float) -> list[AlertTransition]:
        """A person hands an open alert to the next escalation level at once (from a phone).

        Any open alert may climb, acknowledged or not and whatever its severity: a leader
        decides. The next level's timer starts now.
        """
        if not alert.is_open or alert.state == "pending":
            raise ActionRejectedError(f"not_firing:{alert.state}")
        level = alert.current.escalation_level
        if level >= self.policy.max_level:
            raise ActionRejectedError("top_level")
        alert.level_since = now if self.escalates(alert) else None
        return [self._emit(alert, "escalate", now, escalation_level=level + 1, actor=by)]

    def resolve(self, alert: Alert, by: str, now: float) -> list[AlertTransition]:
        """An officer closes the alert; it comes back only if its condition is met afresh."""
        if alert.state == "resolved":
            raise ActionRejectedError("already_resolved")
        alert.latched = False
        alert.due_at = None
        return self._resolve(alert, now, value=alert.current.value, messages=None, actor=by)

    # -- flags and timers -----------------------------------------------------------------------

    def set_stale(self, alert: Alert, stale: bool, now: float) -> list[AlertTransition]:
        if alert.current.stale == stale or not alert.is_open:
            return []
        out = [self._emit(alert, "stale", now, stale=stale)]
        self._restart_escalation(alert, now)
        return out

    def set_silence(
        self, alert: Alert, silenced_by: str | None, now: float
    ) -> list[AlertTransition]:
        if alert.current.silenced_by == silenced_by or not alert.is_open:
            return []
        out = [self._emit(alert, "silence", now, silenced_by=silenced_by)]
        self._restart_escalation(alert, now)
        return out

    def escalate(self, alert: Alert, now: float) -> list[AlertTransition]:
        """Climb every level whose delay has elapsed unacknowledged (timer from the last level)."""
        out: list[AlertTransition] = []
        while self.escalates(alert) and alert.level_since is not None:
            level = alert.current.escalation_level
            if level >= self.policy.max_level:
                break
            after = self.policy.levels[level + 1].after or 0.0
            if now < alert.level_since + after:
                break
            alert.level_since += after  # due time, not `now`: the tick's cadence adds no drift
            out.append(self._emit(alert, "escalate", now, escalation_level=level + 1))
        return out

    def escalates(self, alert: Alert) -> bool:
        current = alert.current
        return (
            current.state == "firing"
            and SEVERITY_RANK[current.severity] >= SEVERITY_RANK[self.policy.min_severity]
            and not current.stale
            and current.silenced_by is None
        )

    def unflap(self, alert: Alert, now: float) -> list[AlertTransition]:
        """Clear the flapping flag once fewer than half the flips remain in the window."""
        self._forget_flips(alert, now)
        if alert.current.flapping and len(alert.flips) < self._unflap_below:
            return [self._emit(alert, "flapping", now, flapping=False)]
        return []

    # -- internals ------------------------------------------------------------------------------

    @property
    def _unflap_below(self) -> int:
        return max(1, self.policy.flapping.transitions // 2)

    def _begin(
        self,
        alert: Alert,
        value: float | None,
        messages: tuple[str, str],
        due_at: float,
        now: float,
        **flags: Any,
    ) -> list[AlertTransition]:
        alert.due_at = due_at
        if now >= due_at:
            kind: TransitionKind = "refire" if alert.fired_before else "fire"
            return self._fire(alert, kind, now, value, messages, started=True, **flags)
        return [
            self._emit(
                alert, "pending", now, state="pending", started_at=now, value=value,
                message_vi=messages[0], message_en=messages[1], acknowledged_by=None,
                escalation_level=self._level_on_fire(alert), **flags,
            )
        ]  # fmt: skip

    def _fire(
        self,
        alert: Alert,
        kind: TransitionKind,
        now: float,
        value: float | None,
        messages: tuple[str, str] | None,
        *,
        started: bool = False,
        **flags: Any,
    ) -> list[AlertTransition]:
        changes: dict[str, Any] = {"state": "firing", "value": value, **flags}
        if started:
            changes.update(started_at=now, acknowledged_by=None)
        if messages is not None:
            changes.update(message_vi=messages[0], message_en=messages[1])
        keep_level = alert.current.flapping and alert.level_since is not None
        changes["escalation_level"] = self._level_on_fire(alert)
        alert.due_at = None
        alert.fired_before = True
        out = [self._emit(alert, kind, now, **changes)]
        if not keep_level:
            alert.level_since = now
        return out + self._flip(alert, now)

    def _level_on_fire(self, alert: Alert) -> int:
        # A flapping alert is one incident: re-firing keeps the level it reached.
        return alert.current.escalation_level if alert.current.flapping else 0

    def _resolve(
        self,
        alert: Alert,
        now: float,
        *,
        value: float | None,
        messages: tuple[str, str] | None,
        **changes: Any,
    ) -> list[AlertTransition]:
        if messages is not None:
            changes.update(message_vi=messages[0], message_en=messages[1])
        # level_since stays: a resolved alert does not escalate, and if it is flapping its
        # re-fire continues the same incident's timer (a plain re-fire restarts it).
        was_pending = alert.state == "pending"
        out = [self._emit(alert, "resolve", now, state="resolved", value=value, **changes)]
        return out if was_pending else out + self._flip(alert, now)

    def _flip(self, alert: Alert, now: float) -> list[AlertTransition]:
        alert.flips.append(now)
        self._forget_flips(alert, now)
        if not alert.current.flapping and len(alert.flips) >= self.policy.flapping.transitions:
            return [self._emit(alert, "flapping", now, flapping=True)]
        return []

    def _forget_flips(self, alert: Alert, now: float) -> None:
        horizon = now - self.policy.flapping.window
        alert.flips = [t for t in alert.flips if t > horizon]

    def _restart_escalation(self, alert: Alert, now: float) -> None:
        alert.level_since = now if self.escalates(alert) else None

    def _emit(
        self, alert: Alert, kind: TransitionKind, now: float, **changes: Any
    ) -> AlertTransition:
        previous = alert.current
        changes.setdefault("note", None)
        changes.setdefault("actor", None)
        transition = dataclasses.replace(
            previous,
            seq=previous.seq + 1,
            transition=kind,
            previous_state=previous.state if previous.seq else None,
            at=now,
            **changes,
        )
        alert.current = transition
        return transition


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
