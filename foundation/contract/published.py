"""The records the platform publishes for consumers, each described once: its topic, key,
fields and what they mean (the JSON Schemas and the AsyncAPI document are generated from this).

A record's fields come from its codec's dataclass in `foundation.contract` (alert records,
KPI points, freshness changes, sector last-seen, data gaps: a field without a description
here fails the generation), and from a field table for the dead letter; the catalog adds
its sectors, sources and KPIs.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_type_hints

from foundation.contract.alerts import AlertAction, AlertTransition, Silence
from foundation.contract.catalog import Catalog
from foundation.contract.kpi import DataGap, FreshnessChange, KpiPoint, SectorSeen
from foundation.contract.reasons import DEAD_LETTER_REASONS, REASON_PREFIXES
from foundation.contract.topics import ALERT_ACTIONS, ALERTS, DEADLETTER, KPI

__all__ = [
    "FieldDoc",
    "RecordKind",
    "Schema",
    "dataclass_fields",
    "descriptions_of",
    "record_kinds",
]

Schema = dict[str, Any]

_SECONDS = "Unix time in seconds (a float, UTC)"


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One field of a published record: its Python type, what it means, extra keywords."""

    hint: Any  # str, int, float, bool, X | None, Literal[…], dict[str, X], tuple[…], a dataclass
    description: str
    required: bool = True
    refine: Mapping[str, Any] = field(default_factory=dict)  # enum, pattern, … added as is


@dataclass(frozen=True, slots=True)
class RecordKind:
    """A record kind a platform topic carries: its schema name, file, topic and fields."""

    name: str  # schema name, e.g. "KpiPoint"
    file: str  # document name under schemas/, e.g. "kpi-point"
    topic: str
    title: str
    description: str
    key: Schema  # the Kafka record key (UTF-8 bytes of a string)
    fields: Mapping[str, FieldDoc]
    open: bool = True  # additionalProperties: a release may add fields


def dataclass_fields(cls: type, descriptions: Mapping[str, str]) -> dict[str, FieldDoc]:
    """A codec dataclass's fields as FieldDocs; a field without a description is an error."""
    hints = get_type_hints(cls)
    out: dict[str, FieldDoc] = {}
    for item in dataclasses.fields(cls):
        if item.name not in descriptions:
            raise KeyError(f"{cls.__name__}.{item.name} has no description in the contract")
        required = item.default is dataclasses.MISSING and (
            item.default_factory is dataclasses.MISSING
        )
        out[item.name] = FieldDoc(hints[item.name], descriptions[item.name], required)
    return out


# -- descriptions of the codecs' fields (a new field fails `dataclass_fields` until described)

_TRANSITION_DOCS: Final = {
    "fingerprint": "The alert's id: 16 hex characters over the rule and its labels (the key)",
    "seq": "1, 2, 3… per alert; (fingerprint, seq) is unique, so a consumer drops duplicates "
    "and notices gaps",
    "transition": "What happened: pending, fire, refire, ack, assign, note, escalate, resolve, "
    "cancel, flapping, stale, silence",
    "state": "The alert's state after the transition",
    "previous_state": "The state before (null for the alert's first transition)",
    "rule": "The rule's key, `<sector>.<rule id>` of the catalog",
    "severity": "The rule's severity",
    "labels": "What the alert is about: always `sector`; `kpi`, `source`, `district` when the "
    "rule has them",
    "at": f"When the transition happened: {_SECONDS}",
    "started_at": f"When the alert started: {_SECONDS}",
    "value": "The KPI value that caused it (null for absence and officers' actions)",
    "message_vi": "The message for officers, in Vietnamese",
    "message_en": "The message in English",
    "escalation_level": "0 the duty officer; 1, 2… the next leaders of the escalation policy",
    "acknowledged_by": "The officer who acknowledged it",
    "assignee": "Who handles it",
    "note": "The note of this transition (ack, note, resolve by an officer)",
    "actor": "Who caused the transition: an officer's name, or null for the rule engine",
    "stale": "Computed from stale data: shown, never escalated",
    "flapping": "Fired or resolved too often lately: notifications are held",
    "silenced_by": "The id of the silence that matches, if any",
    "notes": f"Every note so far, oldest first: [at ({_SECONDS}), by, text]",
}
_ACTION_DOCS: Final = {
    "action_id": "Unique per action: a replayed action is applied once",
    "action": "ack, assign, note, resolve, silence or unsilence",
    "by": "The officer's name (from the token, or `ioc alerts … --by`)",
    "at": f"When the officer acted: {_SECONDS}",
    "fingerprint": "The alert acted on (null only for silence/unsilence)",
    "note": "A note (required for `note`; optional with ack and resolve)",
    "assignee": "Who is assigned (required for `assign`)",
    "silence": "The silence (required for silence and unsilence)",
}
_SILENCE_DOCS: Final = {
    "id": "The silence's id (the record key of silence/unsilence)",
    "matchers": "Label → value: the silence holds notifications of alerts whose labels match "
    "every one",
    "starts_at": f"From: {_SECONDS}",
    "ends_at": f"Until: {_SECONDS}",
    "author": "Who set it",
    "reason": "Why",
}
_KPI_DOCS: Final = {
    "series": "`<kpi>|<group>`, equal to the record key",
    "kpi": "The KPI, `<sector>.<kpi id>`",
    "sector": "The sector (catalog id)",
    "group": "`*` without group-by (or for events lacking the field); else the district code "
    "or the source id",
    "window_start": f"The window's start: {_SECONDS}",
    "window_end": f"The window's end (exclusive): {_SECONDS}",
    "value": "The KPI's value (null with no event); always finite",
    "count": "Events in the window",
    "final": "false while the window is open; true once closed",
    "revision": "0, 1, 2… per window within a generation; may skip numbers after a crash",
    "generation": "The broker epoch's generation (its creation time in ms): within a window, "
    "a point with a higher (generation, revision) supersedes; a later epoch (the embedded "
    "broker restarted) supersedes an earlier one whatever their revisions",
    "overflow": "true when the value is at the edge of the float range (a sum that saturated "
    "at ±1.7976931348623157e308): shown as an overflow, not as a figure",
    "emitted_at": f"When the worker published it: {_SECONDS}",
    "newest": f"Arrival of the newest event in it: {_SECONDS} (0 with none)",
}
_FRESHNESS_DOCS: Final = {
    "source": "The source",
    "sector": "The sector (catalog id)",
    "state": "The source's new state",
    "last_seen": f"Its latest arrival: {_SECONDS} (null: never heard from)",
    "changed_at": f"When it changed: {_SECONDS}",
    "stale_after": "Seconds of silence after which it is stale (cadence × factor)",
}
_SECTOR_SEEN_DOCS: Final = {
    "sector": "The sector (catalog id)",
    "last_seen": f"The latest arrival: {_SECONDS}",
    "emitted_at": f"When the worker published it: {_SECONDS}",
}
_DATA_GAP_DOCS: Final = {
    "sector": "The sector whose figures lack events (every sector for the worker's internal "
    "topics)",
    "topic": "The topic whose records were gone",
    "partition": "… its partition",
    "first_offset": "The first offset lost",
    "last_offset": "The last offset lost (included)",
    "records": "Kafka records lost (each may carry many events)",
    "start": f"The affected stretch begins (the restored checkpoint's time): {_SECONDS}",
    "end": f"… and ends (the first record after the gap): {_SECONDS}",
    "detected_at": f"When the worker found it: {_SECONDS}",
}
_DATACLASS_DOCS: Final[Mapping[type, Mapping[str, str]]] = {
    AlertTransition: _TRANSITION_DOCS,
    AlertAction: _ACTION_DOCS,
    Silence: _SILENCE_DOCS,
    KpiPoint: _KPI_DOCS,
    FreshnessChange: _FRESHNESS_DOCS,
    SectorSeen: _SECTOR_SEEN_DOCS,
    DataGap: _DATA_GAP_DOCS,
}


def descriptions_of(cls: type) -> Mapping[str, str]:
    """The field descriptions of a codec dataclass (KeyError: it is not described here)."""
    return _DATACLASS_DOCS[cls]


def _kind(value: str) -> dict[str, FieldDoc]:
    return {"kind": FieldDoc(Literal[value], f'Always "{value}": tells the records apart')}


def _enum(values: Sequence[str]) -> dict[str, Any]:
    return {"enum": list(values)}


def _refined(
    docs: dict[str, FieldDoc], refines: Mapping[str, Mapping[str, Any]]
) -> dict[str, FieldDoc]:
    """The fields with schema refinements (enum, pattern, minimum…) added to some."""
    return {
        name: dataclasses.replace(doc, refine={**doc.refine, **refines.get(name, {})})
        for name, doc in docs.items()
    }


def record_kinds(catalog: Catalog) -> list[RecordKind]:
    """Every record kind the platform publishes for consumers, in the order of the README."""
    sectors = [s.id for s in catalog.sectors]
    sources = [src.id for s in catalog.sectors for src in s.sources]
    kpis = [f"{s.id}.{k.id}" for s in catalog.sectors for k in s.kpis]
    kpi_list = "; ".join(
        f"`{s.id}.{k.id}` {k.name_en} ({k.unit}, {k.aggregation})"
        for s in catalog.sectors
        for k in s.kpis
    )
    return [
        RecordKind(
            name="KpiPoint",
            file="kpi-point",
            topic=KPI,
            title="KPI point",
            description=(
                "One emission of a KPI window of one series. Provisional while the window is "
                "open (at most one a second), final when it closes; a late event within grace "
                "publishes a new revision. Within a window (series, window_start), a point "
                "with a higher (generation, revision) supersedes: a sink keeps that one."
            ),
            key={
                "type": "string",
                "pattern": r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\|.+$",
                "description": "The series: `<sector>.<kpi>|<group>`",
            },
            fields={
                **_kind("kpi"),
                **_refined(
                    dataclass_fields(
                        KpiPoint, {**_KPI_DOCS, "kpi": f"The KPI, `<sector>.<kpi id>`: {kpi_list}"}
                    ),
                    {
                        "series": {"pattern": r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\|.+$"},
                        "kpi": _enum(kpis),
                        "sector": _enum(sectors),
                        "count": {"minimum": 0},
                        "revision": {"minimum": 0},
                        "generation": {"minimum": 0},
                    },
                ),
            },
        ),
        RecordKind(
            name="FreshnessChange",
            file="freshness-change",
            topic=KPI,
            title="Freshness change",
            description="A source turned fresh or stale (or was first heard from).",
            key={
                "type": "string",
                "pattern": r"^freshness\|.+$",
                "description": "`freshness|<source>`",
            },
            fields={
                **_kind("freshness"),
                **_refined(
                    dataclass_fields(FreshnessChange, _FRESHNESS_DOCS),
                    {"source": _enum(sources), "sector": _enum(sectors)},
                ),
            },
        ),
        RecordKind(
            name="SectorSeen",
            file="sector-seen",
            topic=KPI,
            title="Sector last seen",
            description="The latest arrival of any source of a sector (at most once a second).",
            key={"type": "string", "pattern": r"^sector\|.+$", "description": "`sector|<sector>`"},
            fields={
                **_kind("sector_seen"),
                **_refined(
                    dataclass_fields(SectorSeen, _SECTOR_SEEN_DOCS), {"sector": _enum(sectors)}
                ),
            },
        ),
        RecordKind(
            name="DataGap",
            file="data-gap",
            topic=KPI,
            title="Data gap",
            description=(DataGap.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "),
            key={"type": "string", "pattern": r"^gap\|.+$", "description": "`gap|<sector>`"},
            fields={
                **_kind("data_gap"),
                **_refined(
                    dataclass_fields(DataGap, _DATA_GAP_DOCS),
                    {
                        "sector": _enum(sectors),
                        "partition": {"minimum": 0},
                        "first_offset": {"minimum": 0},
                        "last_offset": {"minimum": 0},
                        "records": {"minimum": 1},
                    },
                ),
            },
        ),
        RecordKind(
            name="AlertTransition",
            file="alert-transition",
            topic=ALERTS,
            title="Alert transition",
            description=(AlertTransition.__doc__ or "").strip().split("\n")[0],
            key={"type": "string", "pattern": "^[0-9a-f]{16}$", "description": "The fingerprint"},
            fields={**_kind("alert"), **dataclass_fields(AlertTransition, _TRANSITION_DOCS)},
        ),
        RecordKind(
            name="AlertAction",
            file="alert-action",
            topic=ALERT_ACTIONS,
            title="Alert action",
            description=(AlertAction.__doc__ or "").strip().split("\n")[0],
            key={
                "type": "string",
                "description": "The fingerprint acted on; for silence/unsilence the silence's "
                "id (its action_id when it has none)",
            },
            fields={**_kind("action"), **dataclass_fields(AlertAction, _ACTION_DOCS)},
        ),
        # Codec: streams.worker.StreamWorker._send_dead_letter.
        RecordKind(
            name="DeadLetter",
            file="dead-letter",
            topic=DEADLETTER,
            title="Dead letter",
            description=(
                "A refused record or event: why, where it was, and its original bytes (the "
                "whole one-event record, or the refused element of a batch)."
            ),
            key={
                "type": "string",
                "description": "The sender: the refused record's key (else the source the body "
                "names; empty when neither)",
            },
            fields={
                "reason": FieldDoc(str, _reason_table(), refine=_reason_schema()),
                "detail": FieldDoc(str, "Human-readable detail (English)"),
                "sender": FieldDoc(
                    str | None,
                    "Who sent the record: its Kafka key (the department's source id; over "
                    "HTTP, the API key's source); null when the record had no key",
                    required=False,
                ),
                "source": FieldDoc(
                    str | None, "The source the event names, when it is a registered one"
                ),
                "event_id": FieldDoc(str | None, "The event's id when it had a string one"),
                "topic": FieldDoc(str, "Where the record was: topic"),
                "partition": FieldDoc(int, "… partition", refine={"minimum": 0}),
                "offset": FieldDoc(int, "… offset", refine={"minimum": 0}),
                "index": FieldDoc(
                    int | None,
                    "The event's index in a batch (null: a one-event record, or the whole record)",
                    refine={"minimum": 0},
                ),
                "received_at": FieldDoc(float, f"When the worker refused it: {_SECONDS}"),
                "original_b64": FieldDoc(
                    str,
                    "Base64 of the original bytes, at most their first 256 KiB",
                    refine={"contentEncoding": "base64"},
                ),
                "original_size": FieldDoc(
                    int, "The original's whole length in bytes", refine={"minimum": 0}
                ),
            },
        ),
    ]


def _reason_table() -> str:
    rows = [f"`{code}`: {meaning}" for code, meaning in DEAD_LETTER_REASONS.items()]
    rows += [f"`{prefix}:<field>`: {meaning}" for prefix, meaning in REASON_PREFIXES.items()]
    return "Why it was refused. " + "; ".join(rows)


def _reason_schema() -> dict[str, Any]:
    prefixes = "|".join(REASON_PREFIXES)
    return {
        "anyOf": [
            {"enum": list(DEAD_LETTER_REASONS)},
            {"pattern": f"^({prefixes}):[a-z_]+$"},
        ]
    }
