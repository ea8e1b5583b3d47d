"""`ioc keys create SOURCE`, `ioc keys list`, `ioc keys revoke KEY_ID` (HTTP ingest API keys)."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from foundation.settings import Settings

if TYPE_CHECKING:
    from foundation.auth.key_store import KeyStore

__all__ = ["register"]


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="API keys of department systems (HTTP ingest API)")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="create a key for SOURCE; prints it once on stdout (only a hash is kept)"
    )
    create.add_argument("source", metavar="SOURCE", help="a source id of the catalog")
    create.set_defaults(run=_cmd_keys_create)
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_cmd_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key (takes effect within the cache TTL)")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the 12 hex characters after iock_")
    revoke.set_defaults(run=_cmd_keys_revoke)


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[KeyStore]:
    from foundation.auth.key_store import KeyStore, open_pool
    from ioc.runtime import resolve_database_url

    timeout = settings.connect_timeout
    pool = await open_pool(resolve_database_url(settings), timeout=timeout, max_size=1)
    try:
        yield KeyStore(pool=pool, timeout=timeout)
    finally:
        await pool.close()


async def _cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.contract.catalog import load_catalog
    from foundation.errors import UnknownSourceError

    catalog = load_catalog(settings.catalog)
    found = catalog.source(args.source)
    if found is None:
        known = [s.id for sector in catalog.sectors for s in sector.sources]
        close = difflib.get_close_matches(args.source, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see the catalog's sources"
        raise UnknownSourceError(f"{args.source!r} is not a source of the catalog{hint}")
    sector, source = found
    async with _store(settings) as store:
        new, _record = await store.create(source=source.id, sector=sector.id)
    # The key alone on stdout, so that `KEY=$(ioc keys create SOURCE)` works.
    print(new.token, flush=True)
    print(
        f"created key {new.key_id} for {source.id} ({sector.id}); "
        "it is shown only this once: store it now",
        file=sys.stderr,
    )
    return 0


async def _cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    async with _store(settings) as store:
        records = await store.list()
    if args.json:
        rows = [
            {
                "key_id": r.key_id,
                "source": r.source,
                "sector": r.sector,
                "created_at": r.created_at.isoformat() if r.created_at else None,
                "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
            }
            for r in records
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not records:
        print("no API keys; create one with `ioc keys create SOURCE`")
        return 0
    print(f"{'KEY_ID':<12}  {'SOURCE':<24} {'SECTOR':<14} {'CREATED':<20} STATE")
    for r in records:
        created = r.created_at.strftime("%Y-%m-%d %H:%M:%S") if r.created_at else "?"
        state = "active" if r.revoked_at is None else f"revoked {r.revoked_at:%Y-%m-%d %H:%M:%S}"
        print(f"{r.key_id:<12}  {r.source:<24} {r.sector:<14} {created:<20} {state}")
    return 0


async def _cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.auth.api_keys import KeyId
    from foundation.errors import UnknownApiKeyError

    key_id = args.key_id.strip().lower()
    async with _store(settings) as store:
        record = await store.revoke(KeyId(key_id))
    if record is None:
        raise UnknownApiKeyError(f"no API key with id {key_id!r} (see `ioc keys list`)")
    when = record.revoked_at.isoformat(timespec="seconds") if record.revoked_at else "?"
    ttl = settings.ingest_key_cache_ttl
    print(
        f"revoked key {record.key_id} of {record.source} at {when}; running ingest APIs "
        f"refuse it within IOC_INGEST_KEY_CACHE_TTL ({ttl:g} s)"
    )
    return 0
