"""`ioc contract export DIR`: the Kafka contract as AsyncAPI 3.0 and JSON Schema 2020-12 files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from foundation.errors import SettingsError
from foundation.settings import Settings

__all__ = ["register"]


def register(commands: Any) -> None:
    contract = commands.add_parser(
        "contract", help="the Kafka contract as AsyncAPI and JSON Schema documents"
    )
    actions = contract.add_subparsers(dest="contract_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write asyncapi.json and schemas/… for the catalog in use (IOC_CATALOG)",
        description=(
            "Write the AsyncAPI 3.0 document of every contract topic and the JSON Schemas "
            "(2020-12) of the event envelope, batches and every published record, generated "
            "from the code and the catalog in use. The gateway serves the same documents at "
            "/asyncapi.json and /schemas/…"
        ),
    )
    export.add_argument("dir", type=Path, metavar="DIR", help="directory to write (created)")
    export.set_defaults(run=_cmd_export)


async def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.contract.asyncapi import contract_documents
    from foundation.contract.catalog import load_catalog

    catalog = load_catalog(settings.catalog)
    documents = contract_documents(catalog)
    root: Path = args.dir
    try:
        for path, document in documents.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False)
            target.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot write {root}: {exc.strerror or exc}") from exc
    schemas = sum(1 for path in documents if path.startswith("schemas/"))
    print(
        f"contract: {catalog.province.name_vi} · wrote {root / 'asyncapi.json'} (AsyncAPI 3.0) "
        f"and {schemas} files under {root / 'schemas'} (JSON Schema 2020-12)"
    )
    return 0
