"""The hand-written OpenAPI document of the ingest API stays valid and complete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate

import foundation.contract.envelope
import producers.sdk
from ioc.api_server import openapi_document
from producers.ingest_rules import EVENT_REASON_PREFIXES, EVENT_REASONS, REQUEST_REASONS
from tests.plugins.reasons import reason_literals

DOC = openapi_document()
TEXT = json.dumps(DOC, ensure_ascii=False)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(pointer: str) -> Any:
    assert pointer.startswith("#/"), f"only local references: {pointer}"
    node: Any = DOC
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts it as OpenAPI 3.1 and it round-trips through JSON."""
    assert DOC["openapi"].startswith("3.1.")
    validate(json.loads(TEXT))


def test_every_ref_resolves() -> None:
    """Each $ref points at an existing component."""
    refs = set(_refs(DOC))
    assert refs, "the document uses references"
    for ref in refs:
        assert isinstance(_resolve(ref), dict), ref


def test_every_schema_component_is_used() -> None:
    """No dead schema: each component is referenced somewhere."""
    used = {ref.rsplit("/", 1)[1] for ref in _refs(DOC)}
    assert set(DOC["components"]["schemas"]) <= used


def test_paths_methods_and_security() -> None:
    """The four routes are documented; posting events requires one of the two key schemes."""
    paths = DOC["paths"]
    ingest = {p for p in paths if not p.startswith("/v1/history/")}
    assert ingest == {"/v1/events", "/healthz", "/livez", "/metrics", "/openapi.json"}
    post = paths["/v1/events"]["post"]
    schemes = DOC["components"]["securitySchemes"]
    assert {name for option in post["security"] for name in option} == {
        "bearerAuth",
        "apiKeyHeader",
    }
    assert set(schemes) == {"bearerAuth", "apiKeyHeader", "historyToken"}
    assert schemes["apiKeyHeader"]["name"] == "X-API-Key"
    assert {"202", "400", "401", "403", "413", "422", "503"} <= set(post["responses"])


@pytest.mark.parametrize(
    "reason", sorted({*REQUEST_REASONS, *EVENT_REASONS, *EVENT_REASON_PREFIXES})
)
def test_every_reason_code_of_the_api_is_documented(reason: str) -> None:
    """Each reason code the API answers with appears in the document."""
    assert f"`{reason}" in TEXT or f'"{reason}"' in TEXT


def test_request_reason_statuses_match_the_responses() -> None:
    """Each request reason is listed under the HTTP status it is answered with."""
    responses = DOC["paths"]["/v1/events"]["post"]["responses"]
    for reason, (status, _meaning) in REQUEST_REASONS.items():
        assert f"`{reason}`" in responses[str(status)]["description"], (reason, status)


def test_reasons_the_envelope_and_sdk_produce_are_known() -> None:
    """Every reason code in the validator's and the SDK's source is in the API's tables."""
    codes = reason_literals(
        foundation.contract.envelope, {"_reject": 4, "reject": 0, "Rejection": 0}
    )
    codes |= reason_literals(producers.sdk, {"DeliveryReport": 3})
    assert {"unknown_sector", "bad_json", "send_failed"} <= codes, "the scan finds codes"
    for code in codes:
        prefix, colon, _field = code.partition(":")
        if colon:
            assert prefix in EVENT_REASON_PREFIXES, code
        else:
            assert code in EVENT_REASONS or code in REQUEST_REASONS, code
