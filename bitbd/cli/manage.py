"""Operator commands that work on the database directly: migrate, plugins, tenant, key, admin-token."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from bitbd import tenancy
from bitbd.admin_token import ensure_admin_token, token_path
from bitbd.db.migrate import latest_version
from bitbd.db.pool import migrate_database, migrated_pool
from bitbd.db.sources import list_sources
from bitbd.embedded.services import services
from bitbd.errors import InvalidRequest
from bitbd.plugins import load_plugins

T = TypeVar("T")
_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `migrate`, `plugins`, `admin-token`, `tenant create|list|delete`, `sources` and
    `key create|list|revoke`."""
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("migrate", parents=[common], help="apply pending schema migrations")
    p.set_defaults(handler=cmd_migrate)
    p = sub.add_parser("plugins", parents=[common, out], help="list plugins, their versions and hooks")
    p.set_defaults(handler=cmd_plugins)
    p = sub.add_parser("admin-token", parents=[common], help="print the admin token (generating it if needed)")
    p.set_defaults(handler=cmd_admin_token)

    tenant = sub.add_parser("tenant", help="create, list and delete tenants").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = tenant.add_parser("create", parents=[common, out], help="create a tenant")
    p.add_argument("name", help="1-63 lowercase letters, digits, '.', '_' or '-'")
    p.set_defaults(handler=cmd_tenant_create)
    p = tenant.add_parser("list", parents=[common, out], help="list tenants")
    p.set_defaults(handler=cmd_tenant_list)
    p = tenant.add_parser("delete", parents=[common], help="delete a tenant and all its data")
    p.add_argument("tenant", help="name or id")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=cmd_tenant_delete)

    p = sub.add_parser("sources", parents=[common, out], help="a tenant's sources: refresh, last and next crawl")
    p.add_argument("--tenant", required=True, help="tenant name or id")
    p.set_defaults(handler=cmd_sources)

    key = sub.add_parser("key", help="create, list and revoke API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = key.add_parser("create", parents=[common, out], help="create an API key (shown once)")
    p.add_argument("--tenant", required=True, help="tenant name or id")
    p.add_argument("--public", action="store_true", help="a public pk_ key for browsers (needs --origin)")
    p.add_argument(
        "--origin",
        action="append",
        default=[],
        metavar="URL",
        help="allowed origin of a public key, e.g. https://www.example.com (repeatable)",
    )
    p.add_argument("--trial", action="store_true", help="a trial key (needs --expires and/or --quota)")
    p.add_argument(
        "--expires",
        type=parse_expiry,
        metavar="WHEN",
        help="expiry: a duration (30m, 12h, 14d, 2w) or an ISO date/time",
    )
    p.add_argument("--quota", type=int, metavar="N", help="most messages the key may send")
    p.add_argument("--name", default="", help="a label to tell keys apart")
    p.set_defaults(handler=cmd_key_create)
    p = key.add_parser("list", parents=[common, out], help="list a tenant's keys")
    p.add_argument("--tenant", required=True, help="tenant name or id")
    p.set_defaults(handler=cmd_key_list)
    p = key.add_parser("revoke", parents=[common, out], help="revoke a key")
    p.add_argument("--tenant", required=True, help="tenant name or id")
    p.add_argument("key", help="key id or its prefix as listed (sk_XXXXXXXX)")
    p.set_defaults(handler=cmd_key_revoke)


def parse_expiry(text: str) -> datetime:
    """An argparse type for --expires: a duration from now (30m, 12h, 14d, 2w) or an ISO date/time, taken
    as UTC if it names no time zone."""
    match = _DURATION.match(text.strip())
    if match:
        return datetime.now(UTC) + timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (30m, 12h, 14d, 2w) nor an ISO date/time"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def with_pool(args: argparse.Namespace, fn: Callable[[asyncpg.Pool], Awaitable[T]], *, may_create: bool = False) -> T:
    """Run `fn` against the database the settings name (or the data dir's embedded one), migrated."""
    from bitbd.cli import require_database, settings_from

    settings = settings_from(args)
    require_database(args, settings, may_create=may_create)
    with services(settings, "cli", redis=False) as running:

        async def go() -> T:
            async with migrated_pool(running.database, 2) as pool:
                return await fn(pool)

        return asyncio.run(go())


def cmd_migrate(args: argparse.Namespace) -> int:
    """`bitbd migrate`: apply pending migrations; creates the database only in a data dir chosen explicitly."""
    from bitbd.cli import require_database, settings_from

    settings = settings_from(args)
    require_database(args, settings, may_create=True)
    with services(settings, "cli", redis=False) as running:
        applied = asyncio.run(migrate_database(running.database))
    print(f"applied {applied} migration(s); schema at version {latest_version()}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """`bitbd plugins`: the loaded plugins with their versions, modules and hooks; skipped and disabled
    ones are listed on stderr (with --json, skipped ones are in the JSON)."""
    from bitbd.cli import settings_from

    settings = settings_from(args)
    plugins = load_plugins(settings.plugins.disabled)
    loaded = plugins.loaded()
    if args.json:
        _print_json(
            {
                "plugins": [vars(i) for i in loaded],
                "skipped": [{"name": n, "reason": r} for n, r in sorted(plugins.skipped.items())],
            }
        )
        return 0
    _table(["NAME", "VERSION", "MODULE", "HOOKS"], [[i.name, i.version, i.module, ", ".join(i.hooks)] for i in loaded])
    for name, reason in sorted(plugins.skipped.items()):
        print(f"skipped {name}: {reason}", file=sys.stderr)
    for name in settings.plugins.disabled:
        print(f"disabled {name} (plugins.disabled)", file=sys.stderr)
    return 0


def cmd_admin_token(args: argparse.Namespace) -> int:
    """`bitbd admin-token`: print the admin token, generating it in the data dir if none is set or
    kept; where it came from goes to stderr."""
    from bitbd.cli import require_database, settings_from

    configured = settings_from(args)
    if not configured.admin_token.get_secret_value() and not token_path(configured).exists():
        require_database(args, configured, may_create=True)  # a token for a data dir no server has used yet
    settings, _ = ensure_admin_token(configured)
    print(settings.admin_token.get_secret_value())
    source = (
        "BITBD_ADMIN_TOKEN / admin_token setting"
        if configured.admin_token.get_secret_value()
        else str(token_path(settings))
    )
    print(f"(from {source})", file=sys.stderr)
    return 0


def cmd_tenant_create(args: argparse.Namespace) -> int:
    """`bitbd tenant create NAME`; creates the database only in a data dir chosen explicitly."""
    tenant = with_pool(args, lambda pool: tenancy.create_tenant(pool, args.name), may_create=True)
    _emit(args, tenant.to_json(), f"created tenant {tenant.name} ({tenant.id})")
    return 0


def cmd_tenant_list(args: argparse.Namespace) -> int:
    """`bitbd tenant list`: id, name, active keys, documents and creation time of every tenant."""
    tenants = with_pool(args, tenancy.list_tenants)
    if args.json:
        _print_json({"tenants": [t.to_json() for t in tenants]})
    else:
        _table(
            ["ID", "NAME", "KEYS", "DOCUMENTS", "CREATED"],
            [
                [
                    str(t.id),
                    t.name,
                    str(t.stats.get("active_keys", 0)),
                    str(t.stats.get("documents", 0)),
                    t.created_at.strftime("%Y-%m-%d %H:%M"),
                ]
                for t in tenants
            ],
        )
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    """`bitbd sources`: the tenant's sources with their first URL, refresh, last and next crawl, last job,
    documents and chunks."""

    async def fetch(pool: asyncpg.Pool) -> list[dict[str, Any]]:
        return await list_sources(pool, (await tenancy.get_tenant(pool, args.tenant)).id)

    sources = with_pool(args, fetch)
    if args.json:
        _print_json({"sources": sources})
        return 0

    def when(iso: str | None) -> str:
        return iso[:16].replace("T", " ") if iso else "-"

    _table(
        ["ID", "TYPE", "URL", "REFRESH", "LAST CRAWL", "NEXT CRAWL", "LAST JOB", "DOCS", "CHUNKS"],
        [
            [
                s["id"][:8],
                s["type"],
                (s["urls"] or s.get("files") or ["-"])[0],
                s["refresh"] or "never",
                when(s["last_crawl_at"]),
                when(s["next_crawl_at"]),
                (s["last_job"] or {}).get("status", "-"),
                str(s["documents"]),
                str(s["chunks"]),
            ]
            for s in sources
        ],
    )
    return 0


def cmd_tenant_delete(args: argparse.Namespace) -> int:
    """`bitbd tenant delete`: asks for confirmation unless --yes (and refuses without a terminal
    to ask on); exits 1 if the answer is not y."""
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidRequest(f"deleting tenant {args.tenant!r} removes all its data; add --yes to confirm")
        if input(f"Delete tenant {args.tenant!r} and all its keys, documents and chats? [y/N] ").lower() != "y":
            print("not deleted")
            return 1
    tenant = with_pool(args, lambda pool: tenancy.delete_tenant(pool, args.tenant))
    print(f"deleted tenant {tenant.name} ({tenant.id})")
    return 0


def key_spec(args: argparse.Namespace) -> tenancy.KeySpec:
    """The key `bitbd key create` asks for: --quota as given (0 included: refused as not positive, not unlimited)."""
    kind: tenancy.KeyKind = "public" if args.public else "secret"
    return tenancy.KeySpec(kind, args.origin, args.name, args.trial, args.expires, args.quota)


def cmd_key_create(args: argparse.Namespace) -> int:
    """`bitbd key create`: the new key's secret on stdout (it is shown only this once), what was
    created on stderr."""
    spec = key_spec(args)
    kind = spec.kind
    key, raw = with_pool(args, lambda pool: tenancy.create_key(pool, args.tenant, spec))
    if args.json:
        _print_json({**key.to_json(), "key": raw})
        return 0
    print(raw)
    extra = f", origins {', '.join(key.origins)}" if key.origins else ""
    print(f"created {kind} key {key.prefix}… ({key.id}){extra}; it is shown only this once", file=sys.stderr)
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    """`bitbd key list`: the tenant's keys with status, origins, expiry and use; never their secrets."""
    keys = with_pool(args, lambda pool: tenancy.list_keys(pool, args.tenant))
    if args.json:
        _print_json({"keys": [k.to_json() for k in keys]})
        return 0
    _table(
        ["ID", "PREFIX", "KIND", "STATUS", "ORIGINS", "EXPIRES", "USED/QUOTA"],
        [
            [
                str(k.id),
                k.prefix + "…",
                k.kind + (" trial" if k.trial else ""),
                k.status,
                ",".join(k.origins) or "-",
                k.expires_at.strftime("%Y-%m-%d %H:%M") if k.expires_at else "-",
                f"{k.used}/{k.quota}" if k.quota else str(k.used),
            ]
            for k in keys
        ],
    )
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    """`bitbd key revoke`: revoke a key by its id or its listed prefix."""
    key = with_pool(args, lambda pool: tenancy.revoke_key(pool, args.tenant, args.key))
    _emit(args, key.to_json(), f"revoked key {key.prefix}… ({key.id})")
    return 0


def _emit(args: argparse.Namespace, data: dict[str, Any], line: str) -> None:
    if args.json:
        _print_json(data)
    else:
        print(line)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
