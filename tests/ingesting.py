"""Fixtures for ingestion: a loopback website, an app with in-process workers, and a tenant's secret key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.embedded.redis import free_port
from bitbd.settings import CrawlerSettings, JobSettings, Settings
from bitbd.tenancy import KeySpec
from tests.conftest import AiohttpClient, builtin_plugins
from tests.site import Site, standard_site
from tests.support.waiting import wait_until_async

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def site() -> AsyncIterator[tuple[Site, str]]:
    site = standard_site(unreachable=f"http://127.0.0.1:{free_port()}/down")
    server = TestServer(site.app(), host="127.0.0.1")
    await server.start_server()
    yield site, str(server.make_url("")).rstrip("/")
    await server.close()


def ingest_settings(settings: Settings, **crawler: Any) -> Settings:
    return settings.model_copy(
        update={
            "crawler": CrawlerSettings(**{"allow_private": True, "max_page_bytes": 200_000, "timeout": 5, **crawler}),
            "jobs": JobSettings(workers=2, retry_backoff=0.2, redelivery_seconds=5),
        }
    )


@pytest.fixture
async def acme_key(pool: asyncpg.Pool) -> str:
    """A secret key of a new tenant `acme`, for a test that builds its own app: with the `ingest` fixture's app
    running too, its workers would take that test's jobs from the shared queue."""
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    return key


@pytest.fixture
async def ingest(aiohttp_client: AiohttpClient, settings: Settings, acme_key: str) -> tuple[Client, str]:
    """A daemon with two in-process workers that may crawl loopback, and a secret key of tenant `acme`."""
    client = await aiohttp_client(create_app(ingest_settings(settings), builtin_plugins()))
    return client, acme_key


async def wait_job(client: Client, key: str, job_id: str, seconds: float = 120) -> dict[str, Any]:
    """The job once it has ended (succeeded, failed or cancelled)."""

    async def ended() -> dict[str, Any] | None:
        resp = await client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
        body: dict[str, Any] = await resp.json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    job: dict[str, Any] = await wait_until_async(ended, f"job {job_id} ended", seconds, every=0.2)
    return job


async def wait_progress(client: Client, key: str, job_id: str, field: str, at_least: int) -> None:
    """Poll until the job's progress[field] reaches `at_least` (a minute at most)."""

    async def reached() -> bool:
        resp = await client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
        return bool((await resp.json())["progress"][field] >= at_least)

    await wait_until_async(reached, f"job progress {field} at {at_least}", 60)


async def crawl_pages(client: Client, key: str, *urls: str) -> dict[str, Any]:
    """Crawl exactly these pages (no links, no sitemap) as the key's tenant; the job once it has ended."""
    resp = await client.post(
        "/v1/sources",
        json={"type": "web", "urls": list(urls), "max_depth": 0, "sitemap": False},
        headers={"Authorization": f"Bearer {key}"},
    )
    return await wait_job(client, key, (await resp.json())["job_id"])
