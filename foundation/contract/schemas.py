"""JSON Schemas (2020-12) of every record on the contract's topics, generated from the code
and the catalog.

The event envelope and a batch, for the whole catalog and per sector, come from the
validator's limits and the catalog (sectors, sources, event types and their units,
districts); the records the platform publishes (KPI point, freshness change, sector
last-seen, alert transition and action, dead letter) from their descriptions in
`foundation.contract.published`. `schema_documents` lays them out as self-contained files;
the AsyncAPI document (`foundation.contract.asyncapi`) embeds the same schemas.

Records the platform publishes are open (`additionalProperties: true`): a consumer ignores
fields it does not know, and a release may add fields. Events are closed, as the validator
is. Pure: no I/O.
"""

from __future__ import annotations

import copy
import dataclasses
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Literal, Union, get_args, get_origin

from foundation.contract.catalog import Catalog, Sector
from foundation.contract.envelope import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    MAX_EVENT_ID,
    MAX_FUTURE_SECONDS,
    MAX_RECORD_BYTES,
    SCHEMA_VERSION,
)
from foundation.contract.published import (
    FieldDoc,
    Schema,
    dataclass_fields,
    descriptions_of,
    record_kinds,
)
from foundation.contract.topics import ALERT_ACTIONS, ALERTS, DEADLETTER, KPI, event_topic

__all__ = [
    "DIALECT",
    "ID_PREFIX",
    "RFC3339",
    "Schema",
    "named_schemas",
    "schema_documents",
    "sector_schema_name",
    "topic_schema_path",
]

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX: Final = "urn:ioc-stream:contract:1:"  # + the document's path
_DEFS: Final = "#/$defs/"
_SAFE_INTEGER: Final = 2**53
# RFC 3339 date-time with an offset, as the validator reads it (`T`, `t` or a space; `Z`
# upper case; no leap second). Whether the day exists (2026-02-30) only `format` can say.
RFC3339: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
    r":[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


def _ref(name: str) -> Schema:
    return {"$ref": _DEFS + name}


class _Builder:
    """Python type hints → JSON Schema; dataclasses become named schemas in `named`."""

    def __init__(self, named: dict[str, Schema]) -> None:
        self.named = named

    def of(self, hint: Any) -> Schema:
        if hint is type(None):
            return {"type": "null"}
        supertype = getattr(hint, "__supertype__", None)  # a NewType
        if supertype is not None:
            return self.of(supertype)
        origin, args = get_origin(hint), get_args(hint)
        if origin is Literal:
            return {"type": "string", "enum": list(args)}
        if origin in (Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            if len(members) != 1:
                raise TypeError(f"no JSON Schema for the union {hint!r}")
            inner = self.of(members[0])
            if len(members) == len(args):
                return inner
            if isinstance(inner.get("type"), str) and "$ref" not in inner:
                nullable = {**inner, "type": [inner["type"], "null"]}
                if "enum" in inner:
                    nullable["enum"] = [*inner["enum"], None]
                return nullable
            return {"anyOf": [inner, {"type": "null"}]}
        if origin is dict and args[0] is str:
            return {"type": "object", "additionalProperties": self.of(args[1])}
        if origin in (list, tuple) and (origin is list or args[-1] is Ellipsis):
            return {"type": "array", "items": self.of(args[0])}
        if origin is tuple:
            items = [self.of(a) for a in args]
            return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items)}
        simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
        if hint in simple:
            return {"type": simple[hint]}
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            name = hint.__name__
            if name not in self.named:
                self.named[name] = self.record(
                    dataclass_fields(hint, descriptions_of(hint)),
                    title=name,
                    description=(hint.__doc__ or "").strip().split("\n")[0],
                    open=True,
                )
            return _ref(name)
        raise TypeError(f"no JSON Schema for {hint!r}")

    def record(
        self, fields: Mapping[str, FieldDoc], *, title: str, description: str, open: bool
    ) -> Schema:
        properties: dict[str, Schema] = {}
        for name, doc in fields.items():
            properties[name] = {**self.of(doc.hint), **doc.refine, "description": doc.description}
        return {
            "title": title,
            "description": description,
            "type": "object",
            "required": [name for name, doc in fields.items() if doc.required],
            "properties": properties,
            "additionalProperties": open,
        }


# -- events


def sector_schema_name(sector_id: str, suffix: str) -> str:
    """`public_service`, `Event` → `PublicServiceEvent`."""
    return "".join(part.capitalize() for part in sector_id.split("_")) + suffix


def _type_rule(event_type: Any) -> Schema:
    unit = {"enum": [event_type.unit, None]} if event_type.unit is not None else {"type": "null"}
    then: Schema = {"properties": {"unit": unit}}
    if event_type.measurement:
        then = {"required": ["value"], "properties": {"unit": unit, "value": {"type": "number"}}}
    what = f"a measurement in {event_type.unit}" if event_type.measurement else "an occurrence"
    return {
        "description": f"{event_type.id}: {event_type.name_en} ({what})",
        "if": {"properties": {"type": {"const": event_type.id}}, "required": ["type"]},
        "then": then,
    }


def _sector_rule(sector: Sector, *, alone: bool) -> Schema:
    rules: Schema = {
        "properties": {
            "source": {"enum": [src.id for src in sector.sources]},
            "type": {"enum": [t.id for t in sector.event_types]},
        },
        "allOf": [_type_rule(t) for t in sector.event_types],
    }
    if alone:
        return rules
    return {
        "description": f"{sector.id}: {sector.name_en}",
        "if": {"properties": {"sector": {"const": sector.id}}, "required": ["sector"]},
        "then": rules,
    }


def _event_schema(catalog: Catalog, sectors: Sequence[Sector], title: str) -> Schema:
    districts = [d.code for d in catalog.districts]
    names = ", ".join(f"`{s.id}` {s.name_en}" for s in sectors)
    return {
        "title": title,
        "description": (
            f"Event envelope v{SCHEMA_VERSION}: one event of one department system "
            f"(sectors: {names}). The whole event is at most {MAX_EVENT_BYTES // 1024} KiB "
            "(the validator checks that, not this schema)."
        ),
        "type": "object",
        "required": ["event_id", "source", "sector", "type", "occurred_at"],
        "additionalProperties": False,
        "properties": {
            "event_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_EVENT_ID,
                "description": "Idempotency key, unique per source: resend with the same id",
            },
            "source": {
                "type": "string",
                "enum": [src.id for s in sectors for src in s.sources],
                "description": "A registered source of the sector; equal to the record key",
            },
            "sector": {
                "type": "string",
                "enum": [s.id for s in sectors],
                "description": "The sector (catalog id)",
            },
            "type": {
                "type": "string",
                "enum": sorted({t.id for s in sectors for t in s.event_types}),
                "description": "An event type of that sector",
            },
            "occurred_at": {
                "type": "string",
                "format": "date-time",
                "pattern": RFC3339,
                "description": (
                    "Event time, RFC 3339 with an offset (2026-11-26T20:15:00+07:00); at "
                    f"most {MAX_FUTURE_SECONDS / 60:.0f} minutes in the future"
                ),
            },
            "value": {
                "type": ["number", "null"],
                "minimum": -_SAFE_INTEGER,
                "maximum": _SAFE_INTEGER,
                "description": "A finite number within ±2^53; required for measurement types",
            },
            "unit": {
                "type": ["string", "null"],
                "description": "Optional; the catalog's unit of the type when given",
            },
            "district": {
                "enum": [*districts, None],
                "description": "Optional area code of the catalog",
            },
            "data": {
                "type": ["object", "null"],
                "description": "Optional free-form details",
            },
            "schema_version": {
                "type": "integer",
                "const": SCHEMA_VERSION,
                "default": SCHEMA_VERSION,
                "description": "Optional; this is version 1",
            },
        },
        "allOf": [_sector_rule(s, alone=len(sectors) == 1) for s in sectors],
    }


def _batch_schema(event: str, title: str) -> Schema:
    return {
        "title": title,
        "description": (
            f"Events of one source in one record, keyed by that source: 1 to "
            f"{MAX_BATCH_EVENTS:,} events, at most {MAX_RECORD_BYTES // 2**20} MiB. Each is "
            "validated alone: a bad one is dead-lettered with its index, its neighbours flow on."
        ),
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_BATCH_EVENTS,
        "items": _ref(event),
    }


def named_schemas(catalog: Catalog) -> dict[str, Schema]:
    """Every schema of the contract by name (the $defs of the files, AsyncAPI's components)."""
    named: dict[str, Schema] = {
        "Event": _event_schema(catalog, catalog.sectors, "Event"),
        "EventBatch": _batch_schema("Event", "Batch of events"),
    }
    for sector in catalog.sectors:
        event = sector_schema_name(sector.id, "Event")
        named[event] = _event_schema(catalog, [sector], f"Event of {sector.name_en}")
        named[sector_schema_name(sector.id, "Batch")] = _batch_schema(
            event, f"Batch of events of {sector.name_en}"
        )
    builder = _Builder(named)
    for kind in record_kinds(catalog):
        named[kind.name] = builder.record(
            kind.fields, title=kind.title, description=kind.description, open=kind.open
        )
    return named


# -- the files


def topic_schema_path(topic: str) -> str:
    return f"schemas/topics/{topic}.json"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _document(path: str, root: Schema, named: Mapping[str, Schema]) -> Schema:
    """A self-contained file: the root schema and the named schemas it reaches, in $defs."""
    needed: dict[str, Schema] = {}
    pending = list(_refs(root))
    while pending:
        name = pending.pop().removeprefix(_DEFS)
        if name not in needed:
            needed[name] = named[name]
            pending.extend(_refs(named[name]))
    document: Schema = {"$schema": DIALECT, "$id": ID_PREFIX + path, **copy.deepcopy(root)}
    if needed:
        document["$defs"] = {name: copy.deepcopy(needed[name]) for name in sorted(needed)}
    return document


def _one_of(title: str, description: str, names: Sequence[str]) -> Schema:
    if len(names) == 1:
        return {"title": title, "description": description, **_ref(names[0])}
    return {"title": title, "description": description, "oneOf": [_ref(n) for n in names]}


def schema_documents(catalog: Catalog) -> dict[str, Schema]:
    """path → JSON Schema document: one per record kind, and one per topic (any record on it)."""
    named = named_schemas(catalog)
    kinds = record_kinds(catalog)
    files: dict[str, Schema] = {
        "schemas/event.json": _document("schemas/event.json", named["Event"], named),
        "schemas/event-batch.json": _document(
            "schemas/event-batch.json", named["EventBatch"], named
        ),
    }
    for kind in kinds:
        path = f"schemas/{kind.file}.json"
        files[path] = _document(path, named[kind.name], named)
    for sector in catalog.sectors:
        topic = event_topic(sector.id)
        root = _one_of(
            f"A record on {topic}",
            f"One event of {sector.name_en} (an object) or a batch of them from one source "
            "(an array); the record key is the source",
            [sector_schema_name(sector.id, "Event"), sector_schema_name(sector.id, "Batch")],
        )
        files[topic_schema_path(topic)] = _document(topic_schema_path(topic), root, named)
    for topic in (KPI, ALERTS, ALERT_ACTIONS, DEADLETTER):
        mine = [kind for kind in kinds if kind.topic == topic]
        root = _one_of(
            f"A record on {topic}",
            " or ".join(kind.title for kind in mine) + " (see `kind`)" * (len(mine) > 1),
            [kind.name for kind in mine],
        )
        files[topic_schema_path(topic)] = _document(topic_schema_path(topic), root, named)
    files["schemas/index.json"] = {
        "description": "The JSON Schemas (2020-12) of ioc-stream's Kafka contract",
        "documents": [
            {"path": path, "title": document.get("title", ""), "$id": document["$id"]}
            for path, document in files.items()
        ],
    }
    return files
