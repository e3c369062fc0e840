"""Migrations on a real PostgreSQL: in order, once, and safe when several processes start together."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from yarl import URL

from bitbd.db.migrate import current_version, latest_version, load_migrations, migrate
from bitbd.settings import Settings


@pytest.fixture
async def fresh_dsn(session_pool: asyncpg.Pool, service_settings: Settings) -> AsyncIterator[str]:
    """A new, empty database on the suite's server."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    await session_pool.execute(f"CREATE DATABASE {name}")
    base = URL(service_settings.database.dsn.get_secret_value())
    dsn = str(base.with_path(f"/{name}").with_query(base.query))
    yield dsn
    await session_pool.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_files_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert latest_version() == versions[-1] >= 3


async def test_concurrent_migrations_apply_each_file_once(fresh_dsn: str) -> None:
    conns = [await asyncpg.connect(fresh_dsn) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, 0, 0, latest_version()]
        rows = await conns[0].fetch("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, latest_version() + 1))
        assert await migrate(conns[0]) == []
        assert await current_version(conns[0]) == latest_version()
        ext = await conns[0].fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert tuple(int(p) for p in ext.split(".")[:2]) >= (0, 8)
    finally:
        for c in conns:
            await c.close()


async def test_every_tenant_table_has_tenant_id(fresh_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_dsn)
    try:
        await migrate(conn)
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name NOT IN ('tenants', 'schema_version')"
        )
        for t in tables:
            has = await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'tenant_id'",
                t["table_name"],
            )
            assert has == 1, f"table {t['table_name']} holds tenant data but has no tenant_id"
    finally:
        await conn.close()
