"""Scheduled re-crawls: refresh set over the API, due crawls claimed once across processes, never overlapping,
caught up once; and a sitemap's <lastmod> sparing unchanged pages even the conditional request."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.jobs import records, schedule
from bitbd.settings import Settings
from bitbd.tenancy import KeySpec
from tests.conftest import AiohttpClient, builtin_plugins
from tests.ingesting import Client, ingest_settings, wait_job
from tests.site import BREAD, VOLCANO, Site, page, serving
from tests.support.waiting import wait_until_async


@pytest.fixture
async def fast(aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool) -> tuple[Client, str]:
    """A daemon with workers whose sources may refresh every second, and a secret key of tenant `acme`."""
    client = await aiohttp_client(create_app(ingest_settings(settings, min_refresh=1), builtin_plugins()))
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    return client, key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_source(pool: asyncpg.Pool, refresh: int | None) -> tuple[uuid.UUID, uuid.UUID]:
    """A web source of a new tenant (no crawl run: the jobs are only rows here), and its tenant."""
    tenant = await tenancy.create_tenant(pool, f"t-{uuid.uuid4().hex[:8]}")
    job_id, source_id = await records.create_job(
        pool, tenant.id, "web", {"urls": ["https://docs.example/"]}, "normal", refresh
    )
    await pool.execute(
        "UPDATE jobs SET status = 'succeeded', started_at = now(), finished_at = now() WHERE id = $1", job_id
    )
    return tenant.id, source_id


async def test_refresh_is_set_listed_changed_and_checked(ingest: tuple[Client, str], site: tuple[Site, str]) -> None:
    client, key = ingest
    _, base = site
    bad = {
        "1m": "shorter than the server's least, 5m (crawler.min_refresh",
        "soon": "is not a duration",
        "0s": "more than 0s",
        5: "must be a duration",
    }
    for refresh, says in bad.items():
        resp = await client.post(
            "/v1/sources", json={"type": "web", "urls": [base + "/"], "refresh": refresh}, headers=auth(key)
        )
        assert resp.status == 400, refresh
        assert says in (await resp.json())["error"]["message"], refresh
    assert (await (await client.get("/v1/sources", headers=auth(key))).json())["sources"] == [], "nothing stored"

    resp = await client.post(
        "/v1/sources", json={"type": "web", "urls": [base + "/"], "max_pages": 5, "refresh": "6h"}, headers=auth(key)
    )
    assert resp.status == 202
    made = await resp.json()
    job = await wait_job(client, key, made["job_id"])
    [source] = (await (await client.get("/v1/sources", headers=auth(key))).json())["sources"]
    assert source["urls"] == [base + "/"]
    assert (source["refresh"], source["refresh_seconds"]) == ("6h", 21600)
    assert source["last_job"]["id"] == job["id"] and source["last_job"]["status"] == job["status"]
    assert source["documents"] > 0 and source["chunks"] >= source["documents"]
    started = datetime.fromisoformat(source["last_crawl_at"])
    assert started == datetime.fromisoformat(job["started_at"])
    assert datetime.fromisoformat(source["next_crawl_at"]) == started + timedelta(hours=6)

    one = f"/v1/sources/{made['source_id']}"
    resp = await client.patch(one, json={"refresh": "1d"}, headers=auth(key))
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert changed["refresh"] == "1d" and datetime.fromisoformat(changed["next_crawl_at"]) == started + timedelta(
        days=1
    )
    assert (await (await client.get(one, headers=auth(key))).json()) == changed
    resp = await client.patch(one, json={"refresh": None}, headers=auth(key))
    assert (await resp.json())["refresh"] is None and (await client.get(one, headers=auth(key))).status == 200
    assert (await (await client.get(one, headers=auth(key))).json())["next_crawl_at"] is None

    for body, status, says in (
        ({}, 400, "nothing to change"),
        ({"refresh": "2m"}, 400, "crawler.min_refresh"),
        ({"urls": ["https://x.example/"]}, 400, "unknown field"),
    ):
        resp = await client.patch(one, json=body, headers=auth(key))
        assert resp.status == status and says in (await resp.json())["error"]["message"], body
    resp = await client.patch(f"/v1/sources/{uuid.uuid4()}", json={"refresh": "6h"}, headers=auth(key))
    assert resp.status == 404 and "GET /v1/sources" in (await resp.json())["error"]["message"]

    form = aiohttp.FormData()
    form.add_field(
        "file", b"Lighthouses keep ships off the rocks at night.", filename="l.txt", content_type="text/plain"
    )
    resp = await client.post("/v1/uploads", data=form, headers=auth(key))
    assert resp.status == 202, await resp.text()
    upload_source = (await resp.json())["source_id"]
    resp = await client.patch(f"/v1/sources/{upload_source}", json={"refresh": "6h"}, headers=auth(key))
    assert resp.status == 400 and "nothing to re-fetch" in (await resp.json())["error"]["message"]


async def test_a_due_crawl_is_claimed_exactly_once_by_concurrent_processes(pool: asyncpg.Pool) -> None:
    sources = [await new_source(pool, 3600) for _ in range(5)]
    await pool.execute("UPDATE sources SET next_crawl_at = now() - interval '1 minute'")
    claims = await asyncio.gather(*(schedule.claim_due(pool) for _ in range(8)))
    started = [job for claim in claims for job in claim]
    assert len(started) == len(sources) == len(set(started)), claims
    rows = await pool.fetch("SELECT source_id, params FROM jobs WHERE id = ANY($1::uuid[])", started)
    assert {r["source_id"] for r in rows} == {s for _, s in sources}
    assert all('"scheduled": true' in r["params"] for r in rows)
    assert await schedule.claim_due(pool) == [], "moved on: not due again"


async def test_after_downtime_a_source_is_crawled_once_not_per_missed_interval(pool: asyncpg.Pool) -> None:
    _, source = await new_source(pool, 3600)
    await pool.execute("UPDATE sources SET next_crawl_at = now() - interval '10 days' WHERE id = $1", source)
    assert len(await schedule.claim_due(pool)) == 1
    assert await schedule.claim_due(pool) == []
    next_at = await pool.fetchval("SELECT next_crawl_at FROM sources WHERE id = $1", source)
    assert timedelta(minutes=59) < next_at - datetime.now(UTC) <= timedelta(hours=1)


async def test_a_source_with_a_crawl_queued_or_running_is_not_due(pool: asyncpg.Pool) -> None:
    tenant, source = await new_source(pool, 3600)
    await pool.execute("UPDATE sources SET next_crawl_at = now() - interval '1 minute' WHERE id = $1", source)
    busy = await pool.fetchval(records.INSERT_JOB, tenant, source, "ingest", "normal", "{}")
    for status in ("queued", "running"):
        await pool.execute("UPDATE jobs SET status = $2 WHERE id = $1", busy, status)
        assert await schedule.claim_due(pool) == [], status
    await pool.execute("UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = $1", busy)
    assert len(await schedule.claim_due(pool)) == 1, "due once the running crawl has ended"
    never = await new_source(pool, None)
    await pool.execute("UPDATE sources SET next_crawl_at = now() - interval '1 day' WHERE id = $1", never[1])
    assert await schedule.claim_due(pool) == [], "no refresh: never by itself"


def sitemap(base: str, stamps: dict[str, str]) -> bytes:
    urls = "".join(f"<url><loc>{base}{path}</loc><lastmod>{stamp}</lastmod></url>" for path, stamp in stamps.items())
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()


async def jobs_of(client: Client, key: str, source_id: str) -> list[dict[str, Any]]:
    jobs = (await (await client.get("/v1/jobs?limit=500", headers=auth(key))).json())["jobs"]
    return sorted((j for j in jobs if j["source_id"] == source_id), key=lambda j: j["created_at"])


async def test_scheduled_crawls_follow_the_refresh_and_a_sitemap_lastmod_spares_requests(
    fast: tuple[Client, str], pool: asyncpg.Pool
) -> None:
    client, key = fast
    site = Site()
    long_ago = "2020-01-01T00:00:00+00:00"
    site.html("/volcanoes", page("Volcanoes", VOLCANO))
    site.html("/bread", page("Bread", BREAD))
    site.pages["/robots.txt"] = ("text/plain", b"User-agent: *\nAllow: /\n")
    async with serving(site.app()) as base:
        site.pages["/sitemap.xml"] = (
            "application/xml",
            sitemap(base, {"/volcanoes": long_ago, "/bread": "2020-01-01"}),
        )
        resp = await client.post(
            "/v1/sources",
            json={"type": "web", "urls": [base + "/volcanoes"], "max_depth": 0, "refresh": "2s"},
            headers=auth(key),
        )
        source_id = (await resp.json())["source_id"]
        first = await wait_job(client, key, (await resp.json())["job_id"])
        assert first["status"] == "succeeded" and first["progress"]["fetched"] == 2, first["progress"]
        assert not first["scheduled"]
        hits = dict(site.hits)

        async def scheduled(n: int) -> list[dict[str, Any]] | None:
            jobs = await jobs_of(client, key, source_id)
            done = [j for j in jobs if j["scheduled"] and j["status"] == "succeeded"]
            return jobs if len(done) >= n else None

        jobs = await wait_until_async(lambda: scheduled(1), "a scheduled re-crawl", 30)
        again = next(j for j in jobs if j["scheduled"])
        assert again["priority"] == "normal" and again["progress"]["unchanged"] == 2, again["progress"]
        assert site.hits["/volcanoes"] == hits["/volcanoes"] and site.hits["/bread"] == hits["/bread"], (
            "pages the sitemap says are older than the stored copies are not requested at all"
        )
        delay = datetime.fromisoformat(again["started_at"]) - datetime.fromisoformat(first["started_at"])
        assert timedelta(seconds=2) <= delay < timedelta(seconds=6), delay

        # An edit the sitemap announces is fetched and embedded by the next scheduled crawl.
        site.html("/bread", page("Bread", BREAD + "<h2>Storing</h2><p>Keep the loaf in a linen bag.</p>"))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        site.pages["/sitemap.xml"] = ("application/xml", sitemap(base, {"/volcanoes": long_ago, "/bread": now}))
        before = site.hits["/bread"]
        marker = "linen bag"

        async def indexed() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM chunks WHERE text LIKE '%' || $1 || '%'", marker))

        await wait_until_async(indexed, "the edit indexed by a scheduled crawl", 30)
        assert site.hits["/bread"] == before + 1
        await client.patch(f"/v1/sources/{source_id}", json={"refresh": None}, headers=auth(key))

    jobs = await jobs_of(client, key, source_id)
    for earlier, later in itertools.pairwise(jobs):
        assert earlier["finished_at"] and later["started_at"] and later["started_at"] >= earlier["finished_at"], (
            "crawls of one source never overlap"
        )


async def test_two_servers_on_one_database_start_each_due_crawl_once(
    fast: tuple[Client, str], aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    client, key = fast
    await aiohttp_client(create_app(ingest_settings(settings, min_refresh=1), builtin_plugins()))  # a second server
    site = Site()
    site.html("/", page("Volcanoes", VOLCANO))
    async with serving(site.app()) as base:
        resp = await client.post(
            "/v1/sources", json={"type": "web", "urls": [base + "/"], "refresh": "1s"}, headers=auth(key)
        )
        source_id = (await resp.json())["source_id"]

        async def four() -> list[dict[str, Any]] | None:
            jobs = await jobs_of(client, key, source_id)
            return jobs if sum(j["scheduled"] and j["status"] == "succeeded" for j in jobs) >= 4 else None

        await wait_until_async(four, "four scheduled crawls", 40)
        await client.patch(f"/v1/sources/{source_id}", json={"refresh": None}, headers=auth(key))
    jobs = [j for j in await jobs_of(client, key, source_id) if j["status"] != "queued" or j["started_at"]]
    for earlier, later in itertools.pairwise(jobs):
        assert later["started_at"] >= earlier["finished_at"], "never two crawls of the source at once"
        gap = datetime.fromisoformat(later["started_at"]) - datetime.fromisoformat(earlier["started_at"])
        assert gap >= timedelta(seconds=1), f"started twice within the refresh: {gap}"
