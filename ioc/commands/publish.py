"""`ioc publish`: send one event through the SDK, as a department system would."""

from __future__ import annotations

import argparse
import difflib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from foundation.errors import SettingsError, UnknownSourceError
from foundation.settings import Settings

__all__ = ["register"]


def register(commands: Any) -> None:
    publish = commands.add_parser(
        "publish", help="publish one event (validated first; prints where it landed)"
    )
    publish.add_argument("--source", required=True, help="registered source id (sets the sector)")
    publish.add_argument(
        "--type", required=True, dest="event_type", help="event type of the sector"
    )
    publish.add_argument("--value", type=float, help="measurement value")
    publish.add_argument("--at", help="event time, RFC 3339 with offset (default: now)")
    publish.add_argument("--district", help="area code of the catalog")
    publish.add_argument("--unit", help="unit (must match the catalog)")
    publish.add_argument("--data", help="extra JSON object")
    publish.add_argument("--event-id", help="idempotency key (default: a new UUID)")
    publish.add_argument("--json", action="store_true", help="print the delivery report as JSON")
    publish.set_defaults(run=_cmd_publish)


async def _cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.contract.catalog import load_catalog
    from foundation.kafka_client import kafka_client_options, producer_compression
    from ioc.runtime import resolve_bootstrap_servers
    from producers.sdk import Publisher

    catalog = load_catalog(settings.catalog)
    found = catalog.source(args.source)
    if found is None:
        known = [source.id for sector in catalog.sectors for source in sector.sources]
        close = difflib.get_close_matches(args.source, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownSourceError(
            f"--source: {args.source!r} is not a source of the catalog "
            f"({len(known)} registered){hint}"
        )
    event: dict[str, Any] = {
        "event_id": args.event_id or str(uuid.uuid4()),
        "source": args.source,
        "sector": found[0].id,
        "type": args.event_type,
        "occurred_at": args.at or datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    for name in ("value", "district", "unit"):
        if getattr(args, name) is not None:
            event[name] = getattr(args, name)
    if args.data is not None:
        try:
            event["data"] = json.loads(args.data)
        except ValueError as exc:
            raise SettingsError(f"--data: not JSON: {exc}") from exc
    async with Publisher(
        bootstrap_servers=resolve_bootstrap_servers(settings),
        catalog=catalog,
        linger=0,
        kafka_options=kafka_client_options(settings),
        compression=producer_compression(settings),
    ) as publisher:
        report = await publisher.send(event)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    elif report.ok:
        print(f"delivered {report.event_id} to {report.topic}[{report.partition}]@{report.offset}")
    else:
        print(f"{report.status} {report.event_id}: [{report.reason}] {report.detail}")
    return 0 if report.ok else 1
