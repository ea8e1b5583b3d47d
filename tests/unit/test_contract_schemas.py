"""The published contract: valid JSON Schema 2020-12 and AsyncAPI 3.0 documents, generated from
the code and the catalog, that agree with the validator and the codecs."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
from hypothesis import example as hypothesis_example
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

import foundation.contract.envelope
import streams.worker
from foundation.contract.alerts import AlertAction, AlertTransition, Fingerprint, Silence
from foundation.contract.asyncapi import asyncapi_document, contract_documents
from foundation.contract.catalog import load_catalog
from foundation.contract.envelope import ContractIndex, event_problem, parse_record
from foundation.contract.kpi import DataGap, FreshnessChange, KpiPoint
from foundation.contract.published import record_kinds
from foundation.contract.reasons import DEAD_LETTER_REASONS, REASON_PREFIXES
from foundation.contract.schemas import named_schemas
from streams.freshness import SectorLastSeen
from tests.plugins.reasons import reason_literals
from tests.unit.test_envelope import BAD_EVENTS, BAD_RECORDS, NOW, field_values, good

CATALOG = load_catalog()
INDEX = ContractIndex(CATALOG)
DOCS = contract_documents(CATALOG)
ASYNCAPI = DOCS["asyncapi.json"]
SPEC_FILE = Path(__file__).parents[1] / "data" / "asyncapi" / "asyncapi-3.0.0.schema.json"
FORMATS = Draft202012Validator.FORMAT_CHECKER
SAFE_INTEGER = 2**53

# Rules the validator checks and no JSON Schema can (the README's list): the record key, byte
# sizes, the clock. An event the code refuses for these may pass the schema.
CODE_ONLY = {"source_mismatch", "too_large", "future_timestamp"}


def validator(path: str) -> Draft202012Validator:
    return Draft202012Validator(DOCS[path], format_checker=FORMATS)


HEALTH = validator("schemas/topics/ioc.events.health.json")
EVENT = validator("schemas/event.json")


def strict_json(raw: bytes) -> Any:
    """Decode as standard JSON (no NaN/Infinity); ValueError when it is not."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw, parse_constant=refuse)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def pointer(document: Any, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# -- the documents are valid


@pytest.mark.parametrize("path", sorted(p for p in DOCS if p.startswith("schemas/")))
def test_each_schema_file_is_valid_json_schema_2020_12(path: str) -> None:
    """The 2020-12 metaschema accepts it, and each of its $refs resolves inside it."""
    document = DOCS[path]
    if path == "schemas/index.json":
        assert {d["path"] for d in document["documents"]} == set(DOCS) - {"asyncapi.json", path}
        return
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)
    for ref in refs(document):
        assert isinstance(pointer(document, ref), dict), (path, ref)
    json.dumps(document, allow_nan=False)


def asyncapi_errors(document: dict[str, Any]) -> list[str]:
    spec = json.loads(SPEC_FILE.read_text(encoding="utf-8"))
    return [e.message for e in Draft7Validator(spec).iter_errors(document)]


def test_the_asyncapi_document_is_valid_asyncapi_3() -> None:
    """The official AsyncAPI 3.0.0 JSON Schema (vendored from @asyncapi/specs) accepts it."""
    assert ASYNCAPI["asyncapi"] == "3.0.0"
    assert asyncapi_errors(ASYNCAPI) == []
    for ref in refs(ASYNCAPI):
        assert isinstance(pointer(ASYNCAPI, ref), dict), ref


def test_the_asyncapi_check_refuses_a_broken_document() -> None:
    """The check can fail: a bad operation action and a schema of the wrong shape are refused."""
    broken = copy.deepcopy(ASYNCAPI)
    next(iter(broken["operations"].values()))["action"] = "publish"
    broken["components"]["schemas"]["KpiPoint"]["required"] = "series"
    broken["servers"]["cluster"]["security"] = [{"type": "kerberos"}]
    assert len(asyncapi_errors(broken)) >= 3


def test_asyncapi_covers_every_topic_with_keys_and_security() -> None:
    """Each sector topic and platform topic is a channel; each message has its Kafka key."""
    addresses = {c["address"] for c in ASYNCAPI["channels"].values()}
    assert addresses == {*CATALOG.sector_topics, "ioc.deadletter", "ioc.kpi", "ioc.alerts",
                         "ioc.alert-actions"}  # fmt: skip
    for message in ASYNCAPI["components"]["messages"].values():
        assert message["bindings"]["kafka"]["key"]["type"] == "string", message["name"]
    health_key = ASYNCAPI["components"]["messages"]["HealthEvent"]["bindings"]["kafka"]["key"]
    assert health_key["enum"] == [s.id for s in CATALOG.sector("health").sources]  # type: ignore[union-attr]
    cluster, embedded = ASYNCAPI["servers"]["cluster"], ASYNCAPI["servers"]["embedded"]
    schemes = ASYNCAPI["components"]["securitySchemes"]
    assert {pointer(ASYNCAPI, s["$ref"])["type"] for s in cluster["security"]} == {
        "scramSha512", "scramSha256", "plain", "X509"
    }  # fmt: skip
    assert "security" not in embedded and set(schemes) == {
        s["$ref"].rsplit("/", 1)[1] for s in cluster["security"]
    }


def asyncapi_validator(name: str) -> Draft7Validator:
    """A validator of the schema the AsyncAPI document embeds under components/schemas."""
    registry: Registry[Any] = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(ASYNCAPI, default_specification=DRAFT7)
    )
    return Draft7Validator(
        {"$ref": f"urn:asyncapi#/components/schemas/{name}"},
        registry=registry,
        format_checker=Draft7Validator.FORMAT_CHECKER,
    )


def test_each_message_example_is_valid_and_the_embedded_schemas_match_the_files() -> None:
    """Examples validate; the AsyncAPI schemas and the 2020-12 files judge events alike."""
    for message in ASYNCAPI["components"]["messages"].values():
        name = message["payload"]["$ref"].rsplit("/", 1)[1]
        for example in message.get("examples", []):
            asyncapi_validator(name).validate(example["payload"])
    embedded = asyncapi_validator("HealthEvent")
    samples = [good(), *(event for event, _reason in BAD_EVENTS)]
    assert [embedded.is_valid(e) for e in samples] == [HEALTH.is_valid(e) for e in samples]
    notes = asyncapi_validator("AlertTransition")
    transition = transition_example().to_json()
    assert notes.is_valid(transition)
    transition["notes"] = [[1.0, "An"]]
    assert not notes.is_valid(transition)


# -- the schemas agree with the validator


def test_a_valid_event_passes_both() -> None:
    assert parse_record(json.dumps(good()).encode(), INDEX, now=NOW).events
    HEALTH.validate(good())
    HEALTH.validate([good(), good(event_id="e-2")])
    EVENT.validate(good())


@pytest.mark.parametrize(("event", "reason"), BAD_EVENTS)
def test_each_bad_event_of_the_validation_tests_is_refused_by_the_schema(
    event: dict[str, Any], reason: str
) -> None:
    """What the envelope code refuses, the schema refuses too, unless only code can check it."""
    refused = [
        r.reason for r in parse_record(json.dumps(event).encode(), INDEX, now=NOW).rejections
    ]
    assert refused == [reason]
    if reason in CODE_ONLY:
        assert EVENT.is_valid(event), "the README lists it as a rule only the code checks"
        return
    assert not EVENT.is_valid(event), reason
    assert not HEALTH.is_valid(event) and not HEALTH.is_valid([good(), event])


@pytest.mark.parametrize(("raw", "reason"), BAD_RECORDS)
def test_each_bad_record_is_not_json_or_refused_by_the_topic_schema(
    raw: bytes, reason: str
) -> None:
    """A record the code refuses whole is not standard JSON, or the topic's schema refuses it."""
    try:
        decoded = strict_json(raw)
    except ValueError:
        return
    assert not HEALTH.is_valid(decoded), reason


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_values_are_not_json(literal: bytes) -> None:
    """The code refuses them as not_finite; to a strict JSON parser they are not JSON at all."""
    raw = json.dumps(good(value=1.5)).encode().replace(b"1.5", literal)
    with pytest.raises(ValueError, match="not JSON"):
        strict_json(raw)


@pytest.mark.parametrize(
    "event",
    [
        good(occurred_at="2026-02-30T20:00:00+07:00"),  # no such day: only `format` knows
        good(occurred_at="2026-09-21T20:00:00z"),
        good(occurred_at="2026-09-21T20:00:60Z"),
        good(schema_version=True),
        good(sector="traffic"),  # health's source and type in another sector
        good(type="vehicle_count"),  # a type of another sector
        good(source="cam-giao-thong-dx", sector="health"),
        good(type="er_admission", unit="%"),  # an occurrence has no unit
        good(type="bed_occupancy", value=None),
    ],
)
def test_more_refusals_agree(event: dict[str, Any]) -> None:
    """Catalog look-ups and timestamp forms: both refuse."""
    assert parse_record(json.dumps(event).encode(), INDEX, now=NOW).rejections
    assert not EVENT.is_valid(event)


def lenient_in_code_only(event: dict[str, Any]) -> bool:
    """What the code accepts and the schema does not: a float beyond ±2^53 (README)."""
    value = event.get("value")
    return isinstance(value, float) and abs(value) > SAFE_INTEGER


FIELDS = st.sampled_from(sorted([*good(), "schema_version", "extra"]))
VALUES = st.one_of(
    field_values,
    st.sampled_from([1.0, 2**53, 2**53 + 1, -1e300, None, "ca", "traffic", "vehicle_count"]),
)
HOSTILE = st.one_of(
    st.dictionaries(FIELDS, VALUES),  # mostly incomplete objects
    st.dictionaries(FIELDS, VALUES, min_size=1, max_size=2).map(lambda c: {**good(), **c}),
)


@settings(max_examples=500, deadline=None)
@given(HOSTILE)
@hypothesis_example({**good(), "data": {"note": "a\x00b"}})  # found by Hypothesis on CI once
def test_hostile_objects_get_the_same_verdict(obj: dict[str, Any]) -> None:
    """Random objects: accepted by both, or refused by both (but for the listed exceptions)."""
    raw = json.dumps(obj, allow_nan=True).encode()
    result = parse_record(raw, INDEX, now=NOW)
    try:
        decoded = strict_json(raw)
    except ValueError:
        assert result.rejections, "NaN/Infinity: the code refuses them as not_finite"
        return
    valid = EVENT.is_valid(decoded)
    if result.events:
        assert valid or lenient_in_code_only(obj), obj
        return
    (rejection,) = result.rejections
    if rejection.reason in CODE_ONLY:
        return
    if valid and rejection.reason.startswith("bad_text:"):
        # A NUL or a lone surrogate inside `data`: free-form, so no schema can refuse it (README)
        problem = event_problem(obj)
        assert problem is not None and problem[0] == rejection.reason, obj
        return
    if valid and rejection.reason == "unsupported_schema_version":
        assert obj["schema_version"] == 1.0  # JSON Schema's integer 1; the code wants `1`
        return
    assert not valid, (rejection.reason, obj)


# -- the schemas agree with the codecs


def transition_example() -> AlertTransition:
    return AlertTransition(
        fingerprint=Fingerprint("853995f79e4c303b"), seq=2, transition="ack",
        state="acknowledged", previous_state="firing", rule="health.bed_occupancy_high",
        severity="critical", labels={"sector": "health", "kpi": "bed_occupancy_pct"},
        at=NOW, started_at=NOW - 60, value=96.5, message_vi="Công suất giường bệnh 97%",
        message_en="Bed occupancy 97%", acknowledged_by="Nguyễn Văn An", actor="Nguyễn Văn An",
        notes=((NOW, "Nguyễn Văn An", "đã gọi bệnh viện"),),
    )  # fmt: skip


def build(cls: Any, **values: Any) -> Any:
    """An instance of a codec dataclass: the given values, and a plain one for any other field.

    So that a field the codec gains (the KPI point's coming `generation`) does not break this.
    """
    plain = {int: 0, float: NOW, bool: False, str: "x"}
    hints = get_type_hints(cls)
    for item in dataclasses.fields(cls):
        if item.name not in values:
            hint = hints[item.name]
            values[item.name] = plain.get(
                hint, plain.get(get_args(hint)[0] if get_args(hint) else hint)
            )
    return cls(**values)


def published_records() -> list[tuple[str, dict[str, Any]]]:
    """(schema name, record) from each codec, as the platform would publish it."""
    seen = SectorLastSeen(interval=0.0)
    seen.seen("health", NOW - 1)
    (sector_seen,) = seen.due(NOW)
    silence = Silence("sil-1a2b3c4d", {"sector": "traffic"}, NOW, NOW + 7200, "An", "bảo trì")
    occupancy = "health.bed_occupancy_pct"
    admissions = "health.er_admissions_per_hour"
    return [
        ("AlertTransition", transition_example().to_json()),
        ("AlertAction", AlertAction("a-1", "ack", "An", NOW, Fingerprint("853995f79e4c303b"),
                                    note="ok").to_json()),
        ("AlertAction", AlertAction("a-2", "silence", "An", NOW, silence=silence).to_json()),
        ("KpiPoint", build(KpiPoint, series=f"{occupancy}|dong-xoai", kpi=occupancy,
                           sector="health", group="dong-xoai", window_start=NOW - 900,
                           window_end=NOW, value=87.5, count=12, final=False, revision=0,
                           emitted_at=NOW, newest=NOW - 2).to_json()),
        ("KpiPoint", build(KpiPoint, series=f"{admissions}|*", kpi=admissions, sector="health",
                           group="*", window_start=NOW - 900, window_end=NOW, value=None,
                           count=0, final=True, revision=3, emitted_at=NOW,
                           newest=0.0).to_json()),
        ("FreshnessChange", build(FreshnessChange, source="his-bvdk-tinh", sector="health",
                                  state="stale", last_seen=None, changed_at=NOW,
                                  stale_after=90.0).to_json()),
        ("SectorSeen", sector_seen.to_json()),
        ("DataGap", DataGap("health", "ioc.events.health", 2, 3, 9, 7, NOW - 60, NOW,
                            NOW).to_json()),
    ]  # fmt: skip


@pytest.mark.parametrize(("name", "record"), published_records())
def test_each_codec_output_validates_and_is_described(name: str, record: dict[str, Any]) -> None:
    """Every codec's record validates; every field it writes has a description in the schema."""
    schema = named_schemas(CATALOG)[name]
    path = next(f"schemas/{k.file}.json" for k in record_kinds(CATALOG) if k.name == name)
    validator(path).validate(json.loads(json.dumps(record, allow_nan=False)))
    assert set(schema["required"]) <= set(record)
    if name.startswith("Alert"):  # derived from the dataclass: exactly its fields
        assert set(record) == set(schema["properties"])


def test_a_codec_field_without_a_description_fails_the_generation() -> None:
    """Adding a field to a codec dataclass without describing it breaks the build, not the doc."""
    from foundation.contract.published import dataclass_fields

    with pytest.raises(KeyError, match=r"AlertAction\.note has no description"):
        dataclass_fields(AlertAction, {"action_id": "", "action": "", "by": "", "at": "",
                                       "fingerprint": ""})  # fmt: skip


def test_published_records_are_open_and_events_closed() -> None:
    """Consumers must ignore new fields (the lead's KPI change adds some); events allow none."""
    named = named_schemas(CATALOG)
    assert all(named[k.name]["additionalProperties"] is True for k in record_kinds(CATALOG))
    assert named["Event"]["additionalProperties"] is False
    point = dict(published_records()[3][1], generation=3)
    validator("schemas/topics/ioc.kpi.json").validate(point)


def test_every_reason_code_of_the_validator_and_worker_is_in_the_dead_letter_schema() -> None:
    """The reasons in the envelope's and the worker's source are all listed and accepted."""
    codes = reason_literals(foundation.contract.envelope, {"_reject": 4, "Rejection": 0})
    codes |= reason_literals(streams.worker, {"Rejection": 0})
    assert {"unknown_sector", "bad_json", "too_late", "internal_error"} <= codes
    dead_letter = validator("schemas/dead-letter.json")
    base = {"detail": "", "source": None, "event_id": None, "topic": "ioc.events.health",
            "partition": 0, "offset": 1, "index": None, "received_at": NOW,
            "original_b64": "e30=", "original_size": 2}  # fmt: skip
    for code in codes:
        prefix, colon, _field = code.partition(":")
        assert (prefix in REASON_PREFIXES) if colon else (code in DEAD_LETTER_REASONS), code
        reason = code + "value" if code.endswith(":") else code
        dead_letter.validate({**base, "reason": reason})
    assert not dead_letter.is_valid({**base, "reason": "because"})


def test_event_schema_describes_the_catalog() -> None:
    """Sectors, sources, types and districts come from the catalog, with units per type."""
    event = DOCS["schemas/event.json"]
    properties = event["properties"]
    assert properties["sector"]["enum"] == [s.id for s in CATALOG.sectors]
    assert len(properties["source"]["enum"]) == sum(len(s.sources) for s in CATALOG.sectors)
    assert properties["district"]["enum"][:-1] == [d.code for d in CATALOG.districts]
    assert not math.isnan(properties["value"]["maximum"])
    assert asyncapi_document(CATALOG)["info"]["title"].endswith(CATALOG.province.name_en)
