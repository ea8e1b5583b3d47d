"""The alert records on the wire: transitions on `ioc.alerts`, actions on `ioc.alert-actions`.

This module is the contract between the worker (which evaluates rules and owns alert state),
the writer (audit table, current alerts), the notifier and the gateway. Pure: no I/O.

A transition is keyed by its fingerprint; `(fingerprint, seq)` is unique and `seq` grows by one
per transition of that alert, so every consumer can drop duplicates (at-least-once delivery) and
notice gaps. An action is keyed by the fingerprint it acts on (silences by their id) and carries
an `action_id` so a replayed action is applied once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal, NewType, get_args

__all__ = [
    "SEVERITY_LABELS",
    "SEVERITY_RANK",
    "STATE_LABELS",
    "ActionKind",
    "AlertAction",
    "AlertState",
    "AlertTransition",
    "Fingerprint",
    "RecordError",
    "Severity",
    "Silence",
    "TransitionKind",
]

Fingerprint = NewType("Fingerprint", str)

Severity = Literal["info", "warning", "critical", "emergency"]
AlertState = Literal["pending", "firing", "acknowledged", "resolved"]
TransitionKind = Literal[
    "pending",  # a rule's condition became true; waiting for its `for` duration
    "fire",  # pending -> firing (or straight to firing when `for` is 0)
    "refire",  # resolved -> firing again
    "ack",  # firing -> acknowledged
    "assign",  # assignee set (state unchanged)
    "note",  # a note added (state unchanged)
    "escalate",  # escalation level + 1 (state unchanged)
    "resolve",  # -> resolved (condition cleared, or resolved by an officer)
    "cancel",  # pending -> resolved before it ever fired (condition cleared within `for`)
    "flapping",  # flapping flag changed (state unchanged)
    "stale",  # stale-data flag changed (state unchanged)
    "silence",  # silenced flag changed (state unchanged)
]
ActionKind = Literal["ack", "assign", "note", "resolve", "escalate", "silence", "unsilence"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2, "emergency": 3}
SEVERITY_LABELS: dict[str, tuple[str, str]] = {  # (Vietnamese, English)
    "info": ("thông tin", "info"),
    "warning": ("cảnh báo", "warning"),
    "critical": ("nghiêm trọng", "critical"),
    "emergency": ("khẩn cấp", "emergency"),
}
STATE_LABELS: dict[str, tuple[str, str]] = {
    "pending": ("chờ xác nhận điều kiện", "pending"),
    "firing": ("đang cảnh báo", "firing"),
    "acknowledged": ("đã tiếp nhận", "acknowledged"),
    "resolved": ("đã xử lý", "resolved"),
}


class RecordError(ValueError):
    """A record on ioc.alerts / ioc.alert-actions does not follow the contract."""


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One transition of one alert, as published on `ioc.alerts` (key: fingerprint).

    Times are Unix seconds (float). `labels` always holds `sector`, and `kpi`, `source` and
    `district` when the rule has them. `escalation_level` 0 is the duty officer; the names of
    who was notified at each level come from the escalation configuration, not from here.
    """

    fingerprint: Fingerprint
    seq: int
    transition: TransitionKind
    state: AlertState
    previous_state: AlertState | None
    rule: str
    severity: Severity
    labels: dict[str, str]
    at: float
    started_at: float
    value: float | None
    message_vi: str
    message_en: str
    escalation_level: int = 0
    acknowledged_by: str | None = None
    assignee: str | None = None
    note: str | None = None
    actor: str | None = None  # who caused it: an officer's name, or None for the rule engine
    stale: bool = False  # computed from stale data: shown, never escalated
    flapping: bool = False  # notifications held while set
    silenced_by: str | None = None  # id of the silence that matches, if any
    notes: tuple[tuple[float, str, str], ...] = field(default=())  # (at, by, text), oldest first

    @property
    def sector(self) -> str:
        return self.labels["sector"]

    @property
    def idempotency_key(self) -> str:
        return f"{self.fingerprint}#{self.seq}"

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["kind"] = "alert"
        record["notes"] = [list(n) for n in self.notes]
        return record

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, allow_nan=False).encode()

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> AlertTransition:
        """Parse a decoded record; RecordError with a reason when it breaks the contract.

        Strict about types (every consumer forwards or stores what this returns): text is
        text PostgreSQL and UTF-8 can hold (`bad_text:<field>`), identifiers are short,
        numbers are finite, flags are booleans.
        """
        try:
            values = {f.name: record[f.name] for f in fields(cls) if f.name in record}
            missing = [f.name for f in fields(cls) if f.name not in record and _required(f)]
            if missing:
                raise RecordError(f"missing_field:{missing[0]}")
            _check_literal(values["transition"], TransitionKind, "transition")
            _check_literal(values["state"], AlertState, "state")
            if values["previous_state"] is not None:
                _check_literal(values["previous_state"], AlertState, "previous_state")
            _check_literal(values["severity"], Severity, "severity")
            labels = values["labels"]
            if not isinstance(labels, dict) or "sector" not in labels:
                raise RecordError("bad_labels")
            values["labels"] = {
                _text(k, "labels", _MAX_ID): _text(v, "labels", _MAX_ID) for k, v in labels.items()
            }
            for name in ("fingerprint", "rule"):
                values[name] = _text(values[name], name, _MAX_ID)
            for name in ("message_vi", "message_en"):
                values[name] = _text(values[name], name, _MAX_TEXT)
            for name in ("acknowledged_by", "assignee", "note", "actor", "silenced_by"):
                if values.get(name) is not None:
                    values[name] = _text(values[name], name, _MAX_TEXT)
            for name in ("stale", "flapping"):
                if type(values.get(name, False)) is not bool:
                    raise RecordError(f"bad_{name}")
            notes = values.get("notes", ())
            if not isinstance(notes, list | tuple):
                raise RecordError("bad_notes")
            values["notes"] = tuple(_note(note) for note in notes)
            for name in ("at", "started_at"):
                values[name] = _finite(values[name], name)
            if values["value"] is not None:
                values["value"] = _finite(values["value"], "value")
            values["seq"] = _integer(values["seq"], "seq")
            values["escalation_level"] = _integer(values.get("escalation_level", 0), "level")
            return cls(**values)
        except RecordError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"bad_record:{type(exc).__name__}") from exc

    @classmethod
    def decode(cls, raw: bytes) -> AlertTransition:
        return cls.from_json(_json_object(raw))


@dataclass(frozen=True, slots=True)
class Silence:
    """Hold notifications of alerts whose labels match every matcher, from starts_at to ends_at."""

    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float
    author: str
    reason: str

    def matches(self, labels: dict[str, str], at: float) -> bool:
        return self.starts_at <= at < self.ends_at and all(
            labels.get(k) == v for k, v in self.matchers.items()
        )


@dataclass(frozen=True, slots=True)
class AlertAction:
    """An officer's action, as published on `ioc.alert-actions` (key: fingerprint or silence id).

    `by` is the officer's name (from the token or `--by`); `action_id` makes a replay harmless.
    `fingerprint` is None only for silence/unsilence, which carry `silence` instead.
    """

    action_id: str
    action: ActionKind
    by: str
    at: float
    fingerprint: Fingerprint | None = None
    note: str | None = None
    assignee: str | None = None
    silence: Silence | None = None

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["kind"] = "action"
        return record

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, allow_nan=False).encode()

    @property
    def key(self) -> bytes:
        if self.fingerprint is not None:
            return self.fingerprint.encode()
        return (self.silence.id if self.silence else self.action_id).encode()

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> AlertAction:
        try:
            _check_literal(record["action"], ActionKind, "action")
            silence = record.get("silence")
            note, assignee = record.get("note"), record.get("assignee")
            action = cls(
                action_id=_text(record["action_id"], "action_id", _MAX_ID),
                action=record["action"],
                by=_text(record["by"], "by", _MAX_TEXT),
                at=_finite(record["at"], "at"),
                fingerprint=Fingerprint(_text(fp, "fingerprint", _MAX_ID))
                if (fp := record.get("fingerprint"))
                else None,
                note=None if note is None else _text(note, "note", _MAX_TEXT),
                assignee=None if assignee is None else _text(assignee, "assignee", _MAX_TEXT),
                silence=Silence(**silence) if silence else None,
            )
        except RecordError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"bad_record:{exc}") from exc
        if action.action in ("silence", "unsilence"):
            if action.silence is None:
                raise RecordError("missing_field:silence")
        elif action.fingerprint is None:
            raise RecordError("missing_field:fingerprint")
        if action.action == "assign" and not action.assignee:
            raise RecordError("missing_field:assignee")
        if action.action == "note" and not action.note:
            raise RecordError("missing_field:note")
        return action

    @classmethod
    def decode(cls, raw: bytes) -> AlertAction:
        return cls.from_json(_json_object(raw))


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # not UTF-8 JSON, too deep, a 5,000-digit int
        raise RecordError("bad_json") from exc
    if not isinstance(record, dict):
        raise RecordError("bad_json")
    return record


_MAX_ID = 256  # fingerprints, rule ids, labels, action ids: keys of tables and indexes
_MAX_TEXT = 10_000  # messages, notes, names
# NUL (PostgreSQL text cannot hold it) and unpaired surrogates (UTF-8 cannot encode them).
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _text(value: object, name: str, limit: int) -> str:
    """value when it is text every consumer can store and send; RecordError otherwise."""
    if type(value) is not str or len(value) > limit:
        raise RecordError(f"bad_{name}")
    if _BAD_TEXT.search(value) is not None:
        raise RecordError(f"bad_text:{name}")
    return value


def _integer(value: object, name: str) -> int:
    # 2**31: what an `integer` column holds (the notifier's delivery log keeps seq so).
    if type(value) is not int or not 0 <= value < 2**31:
        raise RecordError(f"bad_{name}")
    return value


def _note(note: object) -> tuple[float, str, str]:
    if not isinstance(note, list | tuple) or len(note) != 3:
        raise RecordError("bad_notes")
    at, by, text = note
    return _finite(at, "notes"), _text(by, "notes", _MAX_TEXT), _text(text, "notes", _MAX_TEXT)


def _required(f: Any) -> bool:
    return bool(f.default is MISSING and f.default_factory is MISSING)


def _check_literal(value: object, kind: Any, name: str) -> None:
    if value not in get_args(kind):
        raise RecordError(f"bad_{name}:{value!r}")


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"bad_{name}")
    number = float(value)
    if not math.isfinite(number):
        raise RecordError(f"bad_{name}")
    return number
