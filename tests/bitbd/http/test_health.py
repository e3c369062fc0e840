"""Liveness and readiness, with the dependencies really up and really down."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.embedded.redis import free_port
from bitbd.embedded.services import services
from bitbd.settings import RedisSettings, Settings
from bitbd.tenancy import KeySpec
from tests.conftest import AiohttpClient, builtin_plugins


async def test_healthz_and_readyz(aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool) -> None:
    client = await aiohttp_client(create_app(settings, builtin_plugins()))
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"]["postgres"]["ok"] and body["checks"]["redis"]["ok"]


async def test_readyz_names_redis_when_it_is_down(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    nowhere = RedisSettings(url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"), timeout=0.5)
    client = await aiohttp_client(create_app(settings.model_copy(update={"redis": nowhere}), builtin_plugins()))
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert body["checks"]["postgres"]["ok"] and not body["checks"]["redis"]["ok"]
    assert body["error"]["message"].startswith("not ready: redis:")
    assert (await client.get("/healthz")).status == 200


async def test_readyz_names_postgres_when_it_stops(
    aiohttp_client: AiohttpClient, settings: Settings, tmp_path: Path
) -> None:
    # A PostgreSQL of its own, so that stopping it leaves the suite's alone.
    own = settings.model_copy(
        update={"data_dir": tmp_path, "database": settings.database.model_copy(update={"dsn": SecretStr("")})}
    )
    with services(own, "test", redis=False) as running:
        client = await aiohttp_client(create_app(running, builtin_plugins()))
        assert (await client.get("/readyz")).status == 200
    # services() has stopped that PostgreSQL; the app is still up.
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert not body["checks"]["postgres"]["ok"] and body["checks"]["redis"]["ok"]
    assert "postgres" in body["error"]["message"]
    resp = await client.get("/v1/tenant", headers={"Authorization": "Bearer sk_" + "x" * 43})
    body = await resp.json()
    assert resp.status == 503, body
    assert body["error"] == {
        "code": "unavailable",
        "message": "PostgreSQL is unreachable right now; try again shortly (GET /readyz shows what is down)",
    }


async def test_a_job_sent_while_redis_is_down_is_kept(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    nowhere = RedisSettings(url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"), timeout=0.5)
    client = await aiohttp_client(create_app(settings.model_copy(update={"redis": nowhere}), builtin_plugins()))
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    resp = await client.post(
        "/v1/sources",
        json={"type": "web", "urls": ["https://docs.example/"]},
        headers={"Authorization": f"Bearer {key}"},
    )
    body = await resp.json()
    assert resp.status == 202 and "starts when Redis is back" in body["note"]
    assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", uuid.UUID(body["job_id"])) == "queued"
    resp = await client.post("/v1/reembed", headers={"Authorization": f"Bearer {key}"})
    body = await resp.json()
    assert resp.status == 202 and len(body["jobs"]) == 1 and "starts when Redis is back" in body["note"]
