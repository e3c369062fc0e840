"""Session-wide real services: embedded PostgreSQL+pgvector and Redis (or BITBD_TEST_DSN / BITBD_TEST_REDIS)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import hypothesis
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from bitbd.app import create_app
from bitbd.db.pool import migrate_database, open_pool
from bitbd.embedded.services import services
from bitbd.plugins import Plugins, new_manager
from bitbd.settings import DatabaseSettings, JobSettings, RedisSettings, Settings
from bitbd_plugins.embedders import fastembed, sentence_transformers
from bitbd_plugins.generators import extractive, openai
from bitbd_plugins.sources import upload as upload_source
from bitbd_plugins.sources import web as web_source
from bitbd_plugins.stores import pgvector

# Fixtures: an indexed corpus; a site and an ingesting app; standalone PostgreSQL and Redis servers, a static site.
pytest_plugins = ["tests.corpus", "tests.ingesting", "tests.servers"]
# Property tests (hypothesis, schemathesis) draw from this seed unless told otherwise, so a run fails for a change
# in the code, not for a new random draw. `--hypothesis-seed=N` (or BITBD_HYPOTHESIS_SEED=N) picks another;
# `--hypothesis-profile=explore` draws at random (the seed is printed on failure) and tries more examples.
HYPOTHESIS_SEED = int(os.environ.get("BITBD_HYPOTHESIS_SEED", "20261201"))
hypothesis.settings.register_profile("explore", max_examples=500)
ADMIN_TOKEN = "adm_test_token_for_the_suite_32_chars_or_more"
AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


@pytest.hookimpl(tryfirst=True)  # before hypothesis' own pytest_configure reads the seed
def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hypothesis_seed") is None and config.getoption("hypothesis_profile") != "explore":
        config.option.hypothesis_seed = str(HYPOTHESIS_SEED)


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed")
    return f"property tests: seed {seed}" if seed is not None else "property tests: random seed (explore)"


def property_seed(config: pytest.Config) -> int | None:
    """The seed property tests run with (None: at random), for tools that take their own (schemathesis)."""
    seed = config.getoption("hypothesis_seed")
    return None if seed is None else int(seed)


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's BITBD_* variables must not change what the tests see.
    for name in list(os.environ):
        if name.startswith("BITBD_") and name not in ("BITBD_TEST_DSN", "BITBD_TEST_REDIS"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def service_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    data_dir = tmp_path_factory.mktemp("services")
    base = Settings(
        data_dir=data_dir,
        admin_token=SecretStr(ADMIN_TOKEN),
        database=DatabaseSettings(dsn=SecretStr(os.environ.get("BITBD_TEST_DSN", "")), pool_max=5),
        redis=RedisSettings(url=SecretStr(os.environ.get("BITBD_TEST_REDIS", ""))),
        # Most tests need no workers; ingestion tests start apps with their own.
        jobs=JobSettings(workers=0),
    )
    with services(base, "test") as running:
        yield running


@pytest.fixture(scope="session")
async def session_pool(service_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    await migrate_database(service_settings.database)
    pool = await open_pool(service_settings.database)
    yield pool
    await pool.close()


@pytest.fixture
async def pool(session_pool: asyncpg.Pool, service_settings: Settings) -> asyncpg.Pool:
    """The shared pool over an empty database: every tenant (and by cascade all tenant data) removed."""
    await session_pool.execute("TRUNCATE tenants CASCADE")
    client = aioredis.Redis.from_url(service_settings.redis.url.get_secret_value())
    await client.flushdb()
    await client.aclose()
    return session_pool


def builtin_plugins() -> Plugins:
    """Built-ins registered explicitly, never through whatever entry points happen to be installed."""
    plugins = Plugins(new_manager())
    for name, module in (
        ("pgvector", pgvector),
        ("fastembed", fastembed),
        ("web", web_source),
        ("upload", upload_source),
        ("extractive", extractive),
        ("openai", openai),
        ("sentence-transformers", sentence_transformers),
    ):
        plugins.pm.register(module, name=name)
    return plugins


@pytest.fixture
def settings(service_settings: Settings) -> Settings:
    return service_settings


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool
) -> TestClient[web.Request, web.Application]:
    """The real app on a real loopback port, over the suite's real PostgreSQL and Redis."""
    return await aiohttp_client(create_app(settings, builtin_plugins()))


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
