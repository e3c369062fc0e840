"""The tenant and key service layer on a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bitbd import tenancy
from bitbd.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from bitbd.tenancy import KeySpec


async def test_only_a_hash_of_the_secret_is_stored(pool: asyncpg.Pool) -> None:
    await tenancy.create_tenant(pool, "acme")
    key, raw = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", key.id)
    stored = " ".join(str(v) for v in row.values())
    assert raw not in stored and raw[11:] not in stored
    assert bytes(row["key_hash"]) == tenancy.hash_key(raw)
    assert key.prefix == raw[:11]


async def test_authenticate_accepts_live_keys_only(pool: asyncpg.Pool) -> None:
    await tenancy.create_tenant(pool, "acme")
    key, raw = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    assert (await tenancy.authenticate(pool, raw)).id == key.id
    assert (await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id)) is not None

    await pool.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", key.id)
    with pytest.raises(Unauthorized, match=r"expired at"):
        await tenancy.authenticate(pool, raw)
    await pool.execute("UPDATE api_keys SET expires_at = NULL WHERE id = $1", key.id)
    await tenancy.revoke_key(pool, "acme", key.prefix)
    with pytest.raises(Unauthorized, match=r"was revoked"):
        await tenancy.authenticate(pool, raw)
    with pytest.raises(Unauthorized, match=r"unknown API key"):
        await tenancy.authenticate(pool, raw[:-1] + ("A" if raw[-1] != "A" else "B"))


async def test_keys_are_scoped_to_their_tenant(pool: asyncpg.Pool) -> None:
    await tenancy.create_tenant(pool, "a")
    await tenancy.create_tenant(pool, "b")
    key_a, _ = await tenancy.create_key(pool, "a", KeySpec("secret"))
    assert [k.id for k in await tenancy.list_keys(pool, "b")] == []
    with pytest.raises(NotFound):
        await tenancy.revoke_key(pool, "b", str(key_a.id))
    assert (await tenancy.list_keys(pool, "a"))[0].status == "active"


async def test_deleting_a_tenant_deletes_its_keys(pool: asyncpg.Pool) -> None:
    await tenancy.create_tenant(pool, "gone")
    _, raw = await tenancy.create_key(pool, "gone", KeySpec("secret"))
    await tenancy.delete_tenant(pool, "gone")
    assert await pool.fetchval("SELECT count(*) FROM api_keys") == 0
    with pytest.raises(Unauthorized):
        await tenancy.authenticate(pool, raw)


async def test_tenant_names(pool: asyncpg.Pool) -> None:
    await tenancy.create_tenant(pool, "acme-1.eu_west")
    with pytest.raises(Conflict):
        await tenancy.create_tenant(pool, "acme-1.eu_west")
    for bad in ("", "Acme", "-acme", "a" * 64, "a b"):
        with pytest.raises(InvalidRequest):
            await tenancy.create_tenant(pool, bad)


def test_trial_key_spec_and_origins() -> None:
    spec = KeySpec("public", ["https://A.example:443", "https://a.example/", "http://b.example:8080"],
                   trial=True, quota=5, expires_at=datetime.now(UTC) + timedelta(days=1)).validated()
    assert spec.origins == ["http://b.example:8080", "https://a.example"]
    for origin in ("a.example", "ftp://a.example", "https://a.example/x", "https://u:p@a.example",
                   "https://a.example?x=1"):
        with pytest.raises(InvalidRequest, match=r"not of the form"):
            tenancy.normalize_origin(origin)
