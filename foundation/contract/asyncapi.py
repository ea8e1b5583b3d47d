"""The AsyncAPI 3.0 document of the Kafka contract, generated from the catalog and the schemas.

Every topic a department system or a consumer touches is a channel (`ioc.events.<sector>`,
`ioc.deadletter`, `ioc.kpi`, `ioc.alerts`, `ioc.alert-actions`), with its messages, their
payload schemas (the ones `foundation.contract.schemas` generates, in AsyncAPI's default
schema format, a superset of JSON Schema draft 07) and their Kafka keys. Operations are
the platform's: it *receives* events and officers' actions, it *sends* KPI points, alerts,
dead letters and actions (a department system does the opposite of what is written here).
The worker's `ioc.internal.*` topics are not part of the contract. Pure: no I/O.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from foundation import __version__
from foundation.contract.catalog import Catalog, Sector
from foundation.contract.envelope import format_time
from foundation.contract.published import Schema, record_kinds
from foundation.contract.schemas import (
    ID_PREFIX,
    named_schemas,
    schema_documents,
    sector_schema_name,
)
from foundation.contract.topics import ALERT_ACTIONS, ALERTS, DEADLETTER, KPI, event_topic

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "contract_documents", "to_asyncapi_schema"]

ASYNCAPI_VERSION: Final = "3.0.0"
_KAFKA_BINDING: Final = "0.5.0"
_COMPONENT_SCHEMAS: Final = "#/components/schemas/"
_EXAMPLE_TIME: Final = 1_795_000_000.0  # 2026-11-18: any fixed past time keeps output stable


def to_asyncapi_schema(schema: Any) -> Any:
    """A 2020-12 schema of `schemas` in AsyncAPI's schema format (draft 07 keywords)."""
    if isinstance(schema, list):
        return [to_asyncapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = _COMPONENT_SCHEMAS + value.removeprefix("#/$defs/")
        elif key == "prefixItems":
            out["items"] = to_asyncapi_schema(value)
            out["additionalItems"] = to_asyncapi_schema(schema.get("items", True))
        elif key == "items" and "prefixItems" in schema:
            continue
        else:
            out[key] = to_asyncapi_schema(value)
    return out


def _key_binding(key: Schema) -> dict[str, Any]:
    return {"kafka": {"key": copy.deepcopy(key), "bindingVersion": _KAFKA_BINDING}}


def _example_event(sector: Sector) -> dict[str, Any]:
    """A valid event of the sector: its first source, a measurement type if it has one."""
    event_type = next((t for t in sector.event_types if t.measurement), sector.event_types[0])
    source = sector.sources[0].id
    event: dict[str, Any] = {
        "event_id": f"{source}-000123",
        "source": source,
        "sector": sector.id,
        "type": event_type.id,
        "occurred_at": format_time(_EXAMPLE_TIME),
    }
    if event_type.measurement:
        event["value"] = 42.5
        if event_type.unit is not None:
            event["unit"] = event_type.unit
    return event


def _sector_messages(sector: Sector) -> dict[str, Any]:
    key = {
        "type": "string",
        "enum": [src.id for src in sector.sources],
        "description": "The source id: all of a source's events go to one partition, in order",
    }
    example = _example_event(sector)
    event_name = sector_schema_name(sector.id, "Event")
    batch_name = sector_schema_name(sector.id, "Batch")
    return {
        event_name: {
            "name": event_name,
            "title": f"Event of {sector.name_en} ({sector.name_vi})",
            "summary": "One event (a JSON object)",
            "contentType": "application/json",
            "payload": {"$ref": _COMPONENT_SCHEMAS + event_name},
            "bindings": _key_binding(key),
            "examples": [{"name": "measurement", "payload": example}],
        },
        batch_name: {
            "name": batch_name,
            "title": f"Batch of events of {sector.name_en} ({sector.name_vi})",
            "summary": "Events of one source (a JSON array, ≤ 1,000 events, ≤ 1 MiB)",
            "contentType": "application/json",
            "payload": {"$ref": _COMPONENT_SCHEMAS + batch_name},
            "bindings": _key_binding(key),
            "examples": [{"name": "batch", "payload": [example]}],
        },
    }


_SECURITY_SCHEMES: Final = {
    "scramSha512": {
        "type": "scramSha512",
        "description": (
            "SASL_SSL with SCRAM-SHA-512, the default (IOC_KAFKA_SASL_MECHANISM). Each "
            "department system has its own user, allowed to write its sector's topic only "
            "(deploy/README.md, 'Kafka security per department')."
        ),
    },
    "scramSha256": {"type": "scramSha256", "description": "SASL_SSL with SCRAM-SHA-256"},
    "plain": {"type": "plain", "description": "SASL_SSL with PLAIN (over TLS only)"},
    "mutualTls": {
        "type": "X509",
        "description": "SSL with a client certificate (IOC_KAFKA_SSL_CERTFILE, _KEYFILE)",
    },
}


def _servers() -> dict[str, Any]:
    return {
        "cluster": {
            "host": "{bootstrap}",
            "protocol": "kafka-secure",
            "title": "A real Kafka cluster",
            "description": (
                "KAFKA_BOOTSTRAP_SERVERS of the deployment; TLS with one of the SASL "
                "mechanisms or a client certificate (IOC_KAFKA_SECURITY_PROTOCOL). Every "
                "Kafka client works here."
            ),
            "variables": {
                "bootstrap": {
                    "default": "kafka.ioc.binhphuoc.gov.vn:9094",
                    "description": "host:port of a broker (the external SASL_SSL listener)",
                }
            },
            "security": [
                {"$ref": f"#/components/securitySchemes/{name}"} for name in _SECURITY_SCHEMES
            ],
        },
        "embedded": {
            "host": "127.0.0.1:{port}",
            "protocol": "kafka",
            "title": "The embedded broker of `ioc up`",
            "description": (
                "Tansu, memory only, PLAINTEXT on loopback. Use an aiokafka-based client or "
                "a librdkafka producer; librdkafka consumer groups and kcat do not work "
                "against it."
            ),
            "variables": {
                "port": {
                    "default": "9092",
                    "description": "IOC_BROKER_PORT (0: a free port, shown by `ioc status`)",
                }
            },
        },
    }


def asyncapi_document(catalog: Catalog) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every contract topic of this catalog."""
    schemas = {name: to_asyncapi_schema(s) for name, s in named_schemas(catalog).items()}
    kinds = record_kinds(catalog)
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for sector in catalog.sectors:
        topic = event_topic(sector.id)
        sector_messages = _sector_messages(sector)
        messages.update(sector_messages)
        channel = f"events.{sector.id}"
        channels[channel] = {
            "address": topic,
            "title": f"{sector.name_en} ({sector.name_vi})",
            "description": (
                f"Events of {sector.name_en}, keyed by source id. Sources: "
                + ", ".join(f"`{s.id}` {s.name_en}" for s in sector.sources)
            ),
            "messages": {
                name: {"$ref": f"#/components/messages/{name}"} for name in sector_messages
            },
        }
        operations[f"receive.{channel}"] = _operation(
            "receive",
            channel,
            list(sector_messages),
            f"The platform reads {topic}; a department system of {sector.name_en} sends here "
            "(key = its source id, acks=all, idempotent producer)",
        )
    topic_channels = {
        KPI: ("kpi", "KPI points, freshness changes and sector last-seen records"),
        ALERTS: ("alerts", "Every alert transition (key: fingerprint)"),
        ALERT_ACTIONS: ("alertActions", "Officers' actions on alerts (key: fingerprint)"),
        DEADLETTER: ("deadLetters", "Refused records and events with their reason code"),
    }
    for topic, (channel, description) in topic_channels.items():
        mine = [kind for kind in kinds if kind.topic == topic]
        for kind in mine:
            messages[kind.name] = {
                "name": kind.name,
                "title": kind.title,
                "summary": kind.description,
                "contentType": "application/json",
                "payload": {"$ref": _COMPONENT_SCHEMAS + kind.name},
                "bindings": _key_binding(kind.key),
            }
        channels[channel] = {
            "address": topic,
            "title": topic,
            "description": description,
            "messages": {k.name: {"$ref": f"#/components/messages/{k.name}"} for k in mine},
        }
        names = [kind.name for kind in mine]
        operations[f"send.{channel}"] = _operation(
            "send", channel, names, f"The platform publishes {topic}; consumers read it"
        )
    operations["receive.alertActions"] = _operation(
        "receive",
        "alertActions",
        ["AlertAction"],
        "The worker applies officers' actions (the gateway and `ioc alerts` send them)",
    )
    province = catalog.province
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": ID_PREFIX.removesuffix(":"),
        "info": {
            "title": f"ioc-stream Kafka contract · {province.name_en}",
            "version": __version__,
            "description": (
                f"The topics, keys and records of the Intelligent Operations Center of "
                f"{province.name_en} ({province.name_vi}), generated from the code and the "
                "catalog in use (`ioc contract export`, the gateway's /asyncapi.json). "
                "Operations are the platform's: a department system sends what the platform "
                "receives. Records the platform publishes may gain fields: ignore unknown ones. "
                "The same schemas as JSON Schema 2020-12 files: /schemas/index.json."
            ),
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": copy.deepcopy(_SECURITY_SCHEMES),
        },
    }


def _operation(action: str, channel: str, names: list[str], summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in names],
    }


def contract_documents(catalog: Catalog) -> dict[str, Any]:
    """path → document: `asyncapi.json` and every `schemas/…` file (what export writes)."""
    return {"asyncapi.json": asyncapi_document(catalog), **schema_documents(catalog)}
