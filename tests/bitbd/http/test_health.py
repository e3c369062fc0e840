"""Liveness and readiness, with the dependencies really up and really down."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from pydantic import SecretStr

from bitbd.app import create_app
from bitbd.embedded.redis import free_port
from bitbd.embedded.services import services
from bitbd.settings import RedisSettings, Settings
from tests.conftest import AiohttpClient, builtin_plugins


async def test_healthz_and_readyz(aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool) -> None:
    client = await aiohttp_client(create_app(settings, builtin_plugins()))
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"]["postgres"]["ok"] and body["checks"]["redis"]["ok"]


async def test_readyz_names_redis_when_it_is_down(aiohttp_client: AiohttpClient, settings: Settings,
                                                  pool: asyncpg.Pool) -> None:
    nowhere = RedisSettings(url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"), timeout=0.5)
    client = await aiohttp_client(create_app(settings.model_copy(update={"redis": nowhere}), builtin_plugins()))
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert body["checks"]["postgres"]["ok"] and not body["checks"]["redis"]["ok"]
    assert body["error"]["message"].startswith("not ready: redis:")
    assert (await client.get("/healthz")).status == 200


async def test_readyz_names_postgres_when_it_stops(aiohttp_client: AiohttpClient, settings: Settings,
                                                   tmp_path: Path) -> None:
    # A PostgreSQL of its own, so that stopping it leaves the suite's alone.
    own = settings.model_copy(update={"data_dir": tmp_path, "database": settings.database.model_copy(
        update={"dsn": SecretStr("")})})
    with services(own, "test", redis=False) as running:
        client = await aiohttp_client(create_app(running, builtin_plugins()))
        assert (await client.get("/readyz")).status == 200
    # services() has stopped that PostgreSQL; the app is still up.
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503
    assert not body["checks"]["postgres"]["ok"] and body["checks"]["redis"]["ok"]
    assert "postgres" in body["error"]["message"]
