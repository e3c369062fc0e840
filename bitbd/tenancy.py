"""The service layer for tenants and API keys, shared by the admin HTTP API and the CLI."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from yarl import URL

from bitbd.db import queries as q
from bitbd.errors import (
    Conflict,
    InvalidRequest,
    KeyExpired,
    KeyRevoked,
    NotFound,
    QuotaExhausted,
    Unauthorized,
)

KeyKind = Literal["public", "secret"]
PREFIXES: dict[str, KeyKind] = {"sk_": "secret", "pk_": "public"}
_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_QUOTA = 2_147_483_647  # api_keys.quota is a PostgreSQL integer
_DISPLAY_PREFIX = 11  # "sk_" + 8 characters: enough to tell keys apart, useless to an attacker


@dataclass(frozen=True)
class Tenant:
    """A tenant; `stats` (filled by `list_tenants` only) are merged into its JSON."""

    id: uuid.UUID
    name: str
    created_at: datetime
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """id, name, created_at and any stats, as the admin API and `--json` show a tenant."""
        return {"id": str(self.id), "name": self.name, "created_at": self.created_at.isoformat(), **self.stats}


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: its displayed prefix and settings, never its secret (only a hash is kept)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: KeyKind
    prefix: str
    name: str
    origins: list[str]
    trial: bool
    expires_at: datetime | None
    quota: int | None
    used: int
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiKey:
        """A key from an `api_keys` row holding every field."""
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def status(self) -> str:
        """`revoked`, `expired`, `exhausted` (quota used up) or `active`: the first that applies, as of now."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= datetime.now(UTC):
            return "expired"
        if self.quota is not None and self.used >= self.quota:
            return "exhausted"
        return "active"

    def to_json(self) -> dict[str, Any]:
        """The key as the admin API and `--json` show it, with its `status`."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": str(self.id),
            "tenant_id": str(self.tenant_id),
            "kind": self.kind,
            "prefix": self.prefix,
            "name": self.name,
            "origins": self.origins,
            "trial": self.trial,
            "expires_at": iso(self.expires_at),
            "quota": self.quota,
            "used": self.used,
            "status": self.status,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
        }


@dataclass(frozen=True)
class KeySpec:
    """What to create; validated here so that the API and the CLI refuse the same things."""

    kind: KeyKind
    origins: list[str] = field(default_factory=list)
    name: str = ""
    trial: bool = False
    expires_at: datetime | None = None
    quota: int | None = None

    def validated(self) -> KeySpec:
        """The spec checked, with its origins normalised, deduplicated and sorted; InvalidRequest saying
        what is wrong (a public key without origins, a trial key without expiry or quota, ...)."""
        if self.kind == "public" and not self.origins:
            raise InvalidRequest(
                "a public key needs at least one allowed origin, e.g. "
                '"origins": ["https://www.example.com"] (CLI: --origin)'
            )
        if self.kind == "secret" and self.origins:
            raise InvalidRequest("origins apply to public keys only; secret keys are for servers, not browsers")
        if self.expires_at is not None:
            if self.expires_at.tzinfo is None:
                raise InvalidRequest("expires_at needs a time zone, e.g. 2026-12-31T23:59:59Z")
            if self.expires_at <= datetime.now(UTC):
                raise InvalidRequest(f"expires_at {self.expires_at.isoformat()} is in the past")
        if self.quota is not None and not 0 < self.quota <= MAX_QUOTA:
            raise InvalidRequest(f"quota must be a positive number of messages up to {MAX_QUOTA}, got {self.quota}")
        if self.trial and (self.expires_at is None and self.quota is None):
            raise InvalidRequest("a trial key needs an expiry or a quota (or both)")
        if len(self.name) > 100:
            raise InvalidRequest("key name is longer than 100 characters")
        origins = sorted({normalize_origin(o) for o in self.origins})
        return KeySpec(self.kind, origins, self.name, self.trial, self.expires_at, self.quota)


def normalize_origin(origin: str) -> str:
    """`https://Acme.example:443/` → `https://acme.example`; anything but scheme://host[:port] is refused."""
    try:
        url = URL(origin.strip())
    except ValueError:
        url = URL()
    if (
        url.scheme not in ("http", "https")
        or not url.host
        or url.path not in ("", "/")
        or url.query_string
        or url.fragment
        or url.user
    ):
        raise InvalidRequest(f"origin {origin!r} is not of the form https://host[:port] (no path, no query)")
    host = url.host.lower()
    port = "" if url.is_default_port() else f":{url.port}"
    return f"{url.scheme}://{host}{port}"


def hash_key(raw: str) -> bytes:
    """What is stored and looked up for a key: the SHA-256 digest of its secret."""
    # Keys carry 256 random bits, so a fast hash is enough; a slow one would only slow every request.
    return hashlib.sha256(raw.encode()).digest()


def new_key(kind: KeyKind) -> str:
    """A new secret: `sk_` (secret) or `pk_` (public) and 256 random bits, URL-safe."""
    prefix = "sk_" if kind == "secret" else "pk_"
    return prefix + secrets.token_urlsafe(32)


def looks_like_id(ref: str) -> bool:
    """True for anything `uuid.UUID()` reads as an id (32 hex digits, with or without dashes): such a reference
    is always an id, so no tenant may be named like one (sql/0009 renamed any that were)."""
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True


async def create_tenant(pool: asyncpg.Pool, name: str) -> Tenant:
    """Create a tenant; InvalidRequest for a name that is not valid or reads as an id, Conflict if it is
    taken."""
    if not _TENANT_NAME.fullmatch(name):
        raise InvalidRequest(
            f"tenant name {name!r} is not valid: use 1-63 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    if looks_like_id(name):
        raise InvalidRequest(
            f"tenant name {name!r} looks like a tenant id (32 hex digits); ids and names must never "
            "be confused, so pick a name with other letters in it"
        )
    try:
        row = await pool.fetchrow(q.INSERT_TENANT, name)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"tenant {name!r} already exists; pick another name or use the existing one") from None
    return Tenant(row["id"], row["name"], row["created_at"])


async def list_tenants(pool: asyncpg.Pool) -> list[Tenant]:
    """Every tenant, oldest first, with its stats: active keys, documents, chunks, questions, last crawl."""
    rows = await pool.fetch(q.LIST_TENANTS)
    return [
        Tenant(
            r["id"],
            r["name"],
            r["created_at"],
            {
                "active_keys": r["active_keys"],
                "documents": r["documents"],
                "chunks": r["chunks"],
                "questions": r["questions"],  # counted on its keys (their `used`, what quotas limit)
                # asked with the admin token (`bitbd ask`, /v1/admin): no key counts them; kept conversations only
                "admin_questions": r["admin_questions"],
                "last_crawl": r["last_crawl"].isoformat() if r["last_crawl"] else None,
                "next_crawl": r["next_crawl"].isoformat() if r["next_crawl"] else None,
            },
        )
        for r in rows
    ]


async def get_tenant(pool: asyncpg.Pool, ref: str) -> Tenant:
    """A tenant by id or by name: a reference that reads as an id is only ever an id (no name looks like one)."""
    if looks_like_id(ref):
        row = await pool.fetchrow(q.TENANT_BY_ID, uuid.UUID(ref))
    else:
        row = await pool.fetchrow(q.TENANT_BY_NAME, ref)
    if row is None:
        raise NotFound(f"tenant {ref!r} not found; list tenants with GET /v1/admin/tenants or `bitbd tenant list`")
    return Tenant(row["id"], row["name"], row["created_at"])


async def delete_tenant(pool: asyncpg.Pool, ref: str) -> Tenant:
    """Delete a tenant and, by cascade, all its keys, sources, documents, chunks, jobs and conversations."""
    tenant = await get_tenant(pool, ref)
    await pool.execute(q.DELETE_TENANT, tenant.id)
    return tenant


async def create_key(pool: asyncpg.Pool, tenant_ref: str, spec: KeySpec) -> tuple[ApiKey, str]:
    """Create a key; returns it and its secret, which is never stored and cannot be shown again."""
    spec = spec.validated()
    tenant = await get_tenant(pool, tenant_ref)
    raw = new_key(spec.kind)
    row = await pool.fetchrow(
        q.INSERT_KEY,
        tenant.id,
        spec.kind,
        raw[:_DISPLAY_PREFIX],
        hash_key(raw),
        spec.name,
        spec.origins,
        spec.trial,
        spec.expires_at,
        spec.quota,
    )
    return ApiKey.from_row(row), raw


async def list_keys(pool: asyncpg.Pool, tenant_ref: str) -> list[ApiKey]:
    """The keys of a tenant (by id or name), oldest first; NotFound if there is no such tenant."""
    tenant = await get_tenant(pool, tenant_ref)
    return [ApiKey.from_row(r) for r in await pool.fetch(q.LIST_KEYS, tenant.id)]


async def revoke_key(pool: asyncpg.Pool, tenant_ref: str, key_ref: str) -> ApiKey:
    """Revoke a key by id or by its displayed prefix; revoking twice keeps the first time."""
    tenant = await get_tenant(pool, tenant_ref)
    matches = [k for k in await list_keys(pool, str(tenant.id)) if key_ref in (str(k.id), k.prefix)]
    if len(matches) != 1:
        raise NotFound(
            f"key {key_ref!r} not found for tenant {tenant.name!r}; list its keys with "
            f"GET /v1/admin/tenants/{tenant.id}/keys or `bitbd key list --tenant {tenant.name}`"
        )
    row = await pool.fetchrow(q.REVOKE_KEY, tenant.id, matches[0].id)
    return ApiKey.from_row(row)


async def authenticate(pool: asyncpg.Pool, raw: str, kind: KeyKind | None = None) -> ApiKey:
    """The key behind a bearer secret, if it is live; every refusal says why and what to do."""
    given = PREFIXES.get(raw[:3])
    if given is None:
        raise Unauthorized("malformed API key: expected a key starting with sk_ (secret) or pk_ (public)")
    if kind is not None and given != kind:
        raise Unauthorized(
            f"this endpoint needs a {kind} key ({'sk_' if kind == 'secret' else 'pk_'}…), got a {given} key"
        )
    digest = hash_key(raw)
    row = await pool.fetchrow(q.KEY_BY_HASH, digest)
    if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
        raise Unauthorized("unknown API key; create one with `bitbd key create` or POST /v1/admin/tenants/{id}/keys")
    key = ApiKey.from_row(row)
    refuse_dead(key)
    await pool.execute(q.TOUCH_KEY, key.tenant_id, key.id)
    return key


def refuse_dead(key: ApiKey, exhausted: bool = False) -> None:
    """Raise the specific error for a revoked or expired key (and, if asked, one that used its quota)."""
    if key.status == "revoked":
        raise KeyRevoked(f"API key {key.prefix}… was revoked; ask the operator for a new key")
    if key.status == "expired":
        assert key.expires_at is not None
        what = "This trial has ended" if key.trial else f"API key {key.prefix}… expired"
        raise KeyExpired(f"{what} (expired at {key.expires_at.isoformat()}); ask for a new key")
    if exhausted and key.status == "exhausted":
        what = "This trial has ended" if key.trial else f"API key {key.prefix}… has used its quota"
        raise QuotaExhausted(f"{what}: all {key.quota} messages are used; ask for a new key or a larger quota")


async def charge(pool: asyncpg.Pool, key: ApiKey) -> None:
    """Count one answered question against the key, atomically: no over-spend under concurrency, and a key
    revoked or expired since the connection opened is refused here."""
    if await pool.fetchval(q.CHARGE_KEY, key.tenant_id, key.id) is not None:
        return
    row = await pool.fetchrow(q.KEY_BY_ID, key.tenant_id, key.id)
    if row is None:
        raise KeyRevoked(f"API key {key.prefix}… no longer exists; ask the operator for a new key")
    now = ApiKey.from_row(row)
    refuse_dead(now, exhausted=True)
    raise QuotaExhausted(f"API key {key.prefix}… cannot be used right now")  # raced with a change; say no


async def refund(pool: asyncpg.Pool, key: ApiKey) -> None:
    """Give back a charge for a question that was not answered (an error on our side)."""
    await pool.execute(q.REFUND_KEY, key.tenant_id, key.id)
