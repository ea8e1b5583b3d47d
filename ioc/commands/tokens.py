"""`ioc tokens create --role wall|officer|leader --name NAME [--sectors …|--team T] [--ttl 30d]
[--url]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from foundation.settings import Settings

__all__ = ["register"]

_DEFAULT_TTL = {"wall": "365d", "officer": "30d", "leader": "30d"}


def register(commands: Any) -> None:
    tokens = commands.add_parser("tokens", help="access tokens for the wall and the officers")
    actions = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="sign a token (printed on stdout); the gateway checks it, stores nothing"
    )
    create.add_argument("--role", required=True, choices=("wall", "officer", "leader"))
    create.add_argument("--name", required=True, help="who holds it (actions are signed so)")
    scope = create.add_mutually_exclusive_group()
    scope.add_argument("--sectors", help="comma-separated sector ids (default: every sector)")
    scope.add_argument(
        "--team", help="an analysis team of the catalog: the token covers the team's sectors"
    )
    create.add_argument(
        "--ttl", help="lifetime: 12h, 30d… (default 365d for a wall, 30d for people)"
    )
    create.add_argument(
        "--url", action="store_true", help="print the wall URL with the token instead"
    )
    create.add_argument(
        "--analysis", action="store_true", help="print the analysis workspace's URL instead"
    )
    create.add_argument("--json", action="store_true", help="print the token and its claims")
    create.set_defaults(run=_cmd_tokens_create)


async def _cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    from foundation.auth.token_secret import token_secret
    from foundation.auth.tokens import issue_token
    from foundation.contract.catalog import load_catalog, parse_duration
    from foundation.errors import SettingsError, UnknownSectorError
    from ioc.runtime import public_base_url

    catalog = load_catalog(settings.catalog)
    sectors: tuple[str, ...] | None = None
    team = None
    if args.team:
        found = catalog.team(args.team)
        if found is None:
            teams = ", ".join(t.id for t in catalog.teams) or "none in this catalog"
            raise SettingsError(f"--team: {args.team!r} is not a team of the catalog ({teams})")
        team = found.id
        sectors = tuple(found.sectors)
    elif args.sectors:
        sectors = tuple(s.strip() for s in args.sectors.split(",") if s.strip())
        known = [s.id for s in catalog.sectors]
        unknown = [s for s in sectors if s not in known]
        if unknown:
            raise UnknownSectorError(
                f"{unknown[0]!r} is not a sector of the catalog (known: {', '.join(known)})"
            )
    try:
        ttl = parse_duration(args.ttl or _DEFAULT_TTL[args.role])
    except ValueError as exc:
        raise SettingsError(f"--ttl: {exc}") from exc
    if not args.name.strip():
        raise SettingsError("--name: who holds the token (it signs their actions)")
    token, claims = issue_token(
        token_secret(settings),
        role=args.role,
        name=args.name,
        sectors=sectors,
        now=time.time(),
        ttl=ttl,
        team=team,
    )
    base = public_base_url(settings)
    if args.json:
        print(json.dumps({"token": token, **claims.to_json()}, ensure_ascii=False))
    elif args.url:
        print(f"{base}/?token={token}")
    elif args.analysis:
        print(f"{base}/analysis?token={token}")
    else:
        print(token)
    expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(claims.expires_at))
    scope = ", ".join(claims.sectors) if claims.sectors else "every sector"
    if claims.team:
        scope = f"team {claims.team}: {scope}"
    print(
        f"{claims.role} token for {claims.name!r} ({scope}), expires {expires}",
        file=sys.stderr,
    )
    return 0
