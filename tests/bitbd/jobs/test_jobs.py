"""Uploads, the SSRF guard, cancellation and priorities, through the API with real workers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.settings import JobSettings, Settings
from bitbd.tenancy import KeySpec
from tests.conftest import AiohttpClient, builtin_plugins
from tests.ingesting import Client, ingest_settings, wait_job, wait_progress
from tests.site import Site, make_pdf, page, serving
from tests.support.waiting import holds_for


@pytest.fixture
async def big_site() -> AsyncIterator[str]:
    """40 linked pages, each long enough to take a moment to embed."""
    site = Site()
    paths = [f"/p{i}" for i in range(40)]
    site.html("/", page("Index", "<p>All the numbered pages of the archive are listed here.</p>", paths))
    for i, path in enumerate(paths):
        body = "".join(
            f"<h2>Part {j}</h2><p>Page {i} part {j} describes item {i * 7 + j} of the archive in "
            f"some detail, with notes on its origin, its condition and its history.</p>"
            for j in range(8)
        )
        site.html(path, page(f"Page {i}", body, ["/"]))
    async with serving(site.app()) as url:
        yield url


async def start(client: Client, key: str, body: dict[str, object]) -> str:
    resp = await client.post("/v1/sources", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 202, await resp.text()
    job_id: str = (await resp.json())["job_id"]
    return job_id


async def one_worker(aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool) -> tuple[Client, str]:
    base = ingest_settings(settings)
    client = await aiohttp_client(
        create_app(base.model_copy(update={"jobs": JobSettings(workers=1)}), builtin_plugins())
    )
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    return client, key


async def test_private_addresses_are_refused_by_default(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, big_site: str
) -> None:
    guarded = ingest_settings(settings, allow_private=False)
    client = await aiohttp_client(create_app(guarded, builtin_plugins()))
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    port = big_site.rsplit(":", 1)[1]
    # Addresses and loopback names are refused when the source is created (400, naming the setting)...
    for url in (
        big_site + "/",
        f"http://localhost:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        f"http://\uff11\uff12\uff17\u3002\uff10.\u24ea.\u2460:{port}/",
    ):
        resp = await client.post(
            "/v1/sources", json={"type": "web", "urls": [url]}, headers={"Authorization": f"Bearer {key}"}
        )
        assert resp.status == 400, url
        message = (await resp.json())["error"]["message"]
        assert "private, loopback or link-local" in message and "crawler.allow_private" in message, message
    # ...a name that only DNS (here /etc/hosts) turns into one, when the worker resolves it.
    name = socket.gethostname()
    if socket.gethostbyname(name).startswith("127."):
        job = await wait_job(client, key, await start(client, key, {"type": "web", "urls": [f"http://{name}:{port}/"]}))
        assert job["status"] == "failed"
        error = job["errors"][-1]["error"]
        assert "private, loopback or link-local" in error and "BITBD_CRAWLER__ALLOW_PRIVATE=true" in error, error
        assert "bitbd serve" in error, "the message says which process's settings matter"
    assert await pool.fetchval("SELECT count(*) FROM documents") == 0


async def test_uploads(ingest: tuple[Client, str], pool: asyncpg.Pool) -> None:
    client, key = ingest
    auth = {"Authorization": f"Bearer {key}"}
    form = aiohttp.FormData()
    form.add_field(
        "file",
        b"# Kettles\n\nDescale the kettle monthly with citric acid to keep it quiet.\n",
        filename="kettles.md",
        content_type="text/markdown",
    )
    form.add_field(
        "file",
        b"Plain notes: the boiler is serviced every autumn by a certified engineer.",
        filename="../../etc/notes.txt",
    )
    form.add_field(
        "file",
        make_pdf(["Tide tables list high and low water for each day of the year."]),
        filename="tides.pdf",
        content_type="application/pdf",
    )
    form.add_field("file", b"", filename="empty.txt")
    form.add_field("file", b"%PDF-1.7 garbage", filename="broken.pdf")
    resp = await client.post("/v1/uploads", data=form, headers=auth)
    assert resp.status == 202, await resp.text()
    queued = await resp.json()
    assert queued["files"] == ["kettles.md", "notes.txt", "tides.pdf", "empty.txt", "broken.pdf"]
    job = await wait_job(client, key, queued["job_id"])
    assert job["status"] == "succeeded"
    errors = {e["item"]: e["error"] for e in job["errors"]}
    assert any("empty.txt: empty file" in e for e in errors.values())
    assert any("broken.pdf: broken PDF" in e for e in errors.values())
    titles = {r["url"]: r["title"] for r in await pool.fetch("SELECT url, title FROM documents")}
    assert titles == {"upload:kettles.md": "Kettles", "upload:notes.txt": "notes.txt", "upload:tides.pdf": "tides.pdf"}

    form = aiohttp.FormData()
    form.add_field("file", b"MZ\x90\x00", filename="setup.exe")
    resp = await client.post("/v1/uploads", data=form, headers=auth)
    assert resp.status == 415 and ".pdf" in (await resp.json())["error"]["message"]
    resp = await client.post("/v1/uploads", json={"file": "x"}, headers=auth)
    assert resp.status == 415 and "multipart/form-data" in (await resp.json())["error"]["message"]


async def test_cancel_stops_a_crawl(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, big_site: str
) -> None:
    client, key = await one_worker(aiohttp_client, settings, pool)
    auth = {"Authorization": f"Bearer {key}"}
    job_id = await start(client, key, {"type": "web", "urls": [big_site + "/"], "sitemap": False})
    await wait_progress(client, key, job_id, "fetched", 2)
    resp = await client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"

    async def progress() -> dict[str, int]:
        job = await (await client.get(f"/v1/jobs/{job_id}", headers=auth)).json()
        assert job["status"] == "cancelled"
        return dict(job["progress"])

    at_cancel = await progress()
    assert at_cancel["queued"] == 0 and at_cancel["fetched"] < 10 and at_cancel["skipped"] > 25, at_cancel

    async def stopped() -> bool:  # the one worker's page in hand may still be recorded; nothing after it
        now = await progress()
        return now["queued"] == 0 and now["fetched"] <= at_cancel["fetched"] + 1

    await holds_for(stopped, "the cancelled crawl fetches nothing more", seconds=1.5)
    resp = await client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert resp.status == 409 and "already cancelled" in (await resp.json())["error"]["message"]

    async def listed(query: str) -> list[str]:
        resp = await client.get(f"/v1/jobs{query}", headers=auth)
        assert resp.status == 200, await resp.text()
        return [job["id"] for job in (await resp.json())["jobs"]]

    assert await listed("?status=cancelled") == [job_id] and await listed("?status=running") == []
    assert await listed("?status=") == [job_id] == await listed("")  # an empty filter is no filter
    resp = await client.get("/v1/jobs?status=finished", headers=auth)
    assert resp.status == 400 and "status must be one of" in (await resp.json())["error"]["message"]


@pytest.fixture
async def slow_site() -> AsyncIterator[str]:
    """60 linked pages, each answered after 0.3 s: a crawl always has pages in flight."""
    site = Site()
    paths = [f"/s{i}" for i in range(60)]
    site.html("/", page("Index", "<p>Every slow page of the archive is listed here.</p>", paths))
    for i, path in enumerate(paths):
        body = "".join(
            f"<h2>Part {j}</h2><p>Slow page {i} part {j} tells of record {i * 5 + j}, its keeper and its year.</p>"
            for j in range(12)
        )
        site.html(path, page(f"Slow {i}", body, ["/"]))

    async def slowly(request: web.Request) -> web.StreamResponse:
        if request.path != "/":
            await asyncio.sleep(0.3)
        return await site.handle(request)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", slowly)
    async with serving(app) as url:
        yield url


async def test_nothing_is_fetched_embedded_or_stored_after_a_cancel(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, slow_site: str
) -> None:
    """Pages already queued or in flight used to be fetched and embedded after the cancel (48 -> 50 pages,
    2,151 -> 2,510 chunks): now the documents and chunks stay as they were when the cancel returned."""
    base = ingest_settings(settings)
    client = await aiohttp_client(
        create_app(base.model_copy(update={"jobs": base.jobs.model_copy(update={"workers": 6})}), builtin_plugins())
    )
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    auth = {"Authorization": f"Bearer {key}"}
    counts = "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks)"
    for round_ in range(3):  # cancel at different moments: mid-fetch, mid-embed, mid-store
        job_id = await start(client, key, {"type": "web", "urls": [f"{slow_site}/?r={round_}"], "sitemap": False})
        await wait_progress(client, key, job_id, "fetched", 3 + 4 * round_)
        await asyncio.sleep(0.1 * round_)
        started = time.monotonic()
        resp = await client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
        assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
        waited = time.monotonic() - started
        assert waited < 2, f"round {round_}: the cancel took {waited:.2f}s behind the storing workers"
        print(f"round {round_}: cancel answered in {waited * 1000:.0f} ms")
        job = await (await client.get(f"/v1/jobs/{job_id}", headers=auth)).json()
        assert job["status"] == "cancelled" and job["progress"]["queued"] == 0, job  # none left running
        before = tuple(await pool.fetchrow(counts))

        async def unchanged(before: tuple[int, int] = before) -> bool:
            return tuple(await pool.fetchrow(counts)) == before

        # The window is longer than a page in flight takes to fetch, embed and store.
        await holds_for(unchanged, f"round {round_}: nothing written after the cancel", seconds=2.5)


@pytest.mark.timeout(150)  # a pool deadlock hangs the app's shutdown too: fail, do not wait out the suite's 300 s
async def test_more_workers_than_pool_connections_finish_a_crawl(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, big_site: str
) -> None:
    """12 workers over a pool of 2 connections: a task holds one connection at a time (a store's live check, lock
    and writes share one), so tasks wait for each other's connections but never hold one while waiting for
    another. With two per store (the lock on one, the writes on others) every connection could be held by a task
    waiting for a second: the crawl hung, undetected. The second crawl finds every page unchanged, so the
    workers do little but store, all at once."""
    base = ingest_settings(settings)
    client = await aiohttp_client(
        create_app(
            base.model_copy(
                update={
                    "jobs": base.jobs.model_copy(update={"workers": 12}),
                    "database": base.database.model_copy(update={"pool_max": 2}),
                }
            ),
            builtin_plugins(),
        )
    )
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    for crawl in ("first", "unchanged"):
        job_id = await start(client, key, {"type": "web", "urls": [big_site + "/"], "sitemap": False})
        job = await asyncio.wait_for(wait_job(client, key, job_id), 120)
        assert job["status"] == "succeeded" and job["progress"]["fetched"] == 41, (crawl, job)
        assert job["progress"]["unchanged"] == (41 if crawl == "unchanged" else 0), (crawl, job)
    assert await pool.fetchval("SELECT count(*) FROM documents") == 41


async def test_high_priority_jobs_overtake_queued_normal_work(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, big_site: str
) -> None:
    client, key = await one_worker(aiohttp_client, settings, pool)
    auth = {"Authorization": f"Bearer {key}"}
    normal = await start(client, key, {"type": "web", "urls": [big_site + "/"], "sitemap": False})
    await wait_progress(client, key, normal, "found", 41)
    high = await start(
        client, key, {"type": "web", "urls": [big_site + "/p39"], "max_depth": 0, "sitemap": False, "priority": "high"}
    )
    done = await wait_job(client, key, high)
    assert done["status"] == "succeeded" and done["priority"] == "high"
    slow = await (await client.get(f"/v1/jobs/{normal}", headers=auth)).json()
    assert slow["status"] == "running" and slow["progress"]["queued"] > 20, (
        "the high job finished while most of the normal crawl was still waiting"
    )
    await client.post(f"/v1/jobs/{normal}/cancel", headers=auth)
