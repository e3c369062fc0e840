"""Nothing a tenant sends stalls the event loop: while in-process workers crawl a hostile loopback site (thousands of
long links under a backtracking include pattern, a huge sitemap and an entity bomb, deeply nested HTML, a page of
100,000 links, a 500 KiB robots.txt), /healthz is polled and every answer comes within 100 ms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.settings import Settings
from bitbd.tenancy import KeySpec
from tests.conftest import AiohttpClient, builtin_plugins
from tests.ingesting import ingest_settings, wait_job
from tests.site import page, serving

LONG = "a" * 2000  # `(a+)+b` against this takes Python's re longer than the universe has
TEXT = "<p>Kettles are descaled monthly with citric acid, which keeps them quiet and the tea tasting better.</p>"
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(9))
    + b"]><urlset><url><loc>&j;</loc></url></urlset>"
)


def hostile_site() -> web.Application:
    sitemap = (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(f"<url><loc>/s/{LONG[:1500]}{i}</loc></url>" for i in range(5000))
        + "</urlset>"
    ).encode()
    index = (
        b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<sitemap><loc>/sitemap-big.xml</loc></sitemap><sitemap><loc>/bomb.xml</loc></sitemap></sitemapindex>"
    )
    pages = {
        "/": page("Hostile", TEXT, [f"/{LONG}{i}" for i in range(2000)] + ["/deep", "/many", "/b"]),
        "/deep": "<html><head><title>Deep</title></head><body>" + "<div>" * 200_000 + TEXT + "</div>" * 200_000,
        "/many": page("Many", TEXT, [f"/m/{i}/{LONG[:90]}" for i in range(100_000)]),
        "/b": page("B", TEXT),
    }
    robots = (
        b"User-agent: *\n"
        + b"".join(b"Disallow: /*a*a*a*a*a*a*a*a*a*a*a*a*" + str(i).encode() + b"$\n" for i in range(12_000))
        + b"Sitemap: /sitemap-index.xml\n"
    )
    files = {
        "/robots.txt": ("text/plain", robots),
        "/sitemap-index.xml": ("application/xml", index),
        "/sitemap-big.xml": ("application/xml", sitemap),
        "/bomb.xml": ("application/xml", BOMB),
    }

    async def handle(request: web.Request) -> web.Response:
        if request.path in files:
            ctype, body = files[request.path]
            return web.Response(body=body, content_type=ctype)
        if request.path in pages:
            return web.Response(text=pages[request.path], content_type="text/html")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    return app


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    async with serving(hostile_site()) as url:
        yield url


async def test_healthz_answers_within_100ms_while_a_hostile_site_is_crawled(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, hostile: str
) -> None:
    crawl_settings = ingest_settings(settings, max_page_bytes=12_000_000, timeout=30, max_pages=200)
    client = await aiohttp_client(create_app(crawl_settings, builtin_plugins()))
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    resp = await client.post(
        "/v1/sources",
        json={
            "type": "web",
            "urls": [hostile + "/"],
            "include": ["(a+)+b", "/b$", "^[^/]+//[^/]+/(deep|many)$"],
            "exclude": ["(x+x+)+y"],
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]
    latencies: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            start = time.perf_counter()
            health = await client.get("/healthz")
            assert health.status == 200
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)

    poller = asyncio.create_task(poll())
    try:
        job = await wait_job(client, key, job_id, seconds=240)
    finally:
        done.set()
        await poller
    assert job["status"] == "succeeded", (job["error"], job["errors"])
    errors = {(e["item"] or "").removeprefix(hostile): e["error"] for e in job["errors"]}
    assert "/b" not in errors and not any("internal" in e for e in errors.values()), errors
    slowest = sorted(latencies)[-5:]
    print(f"/healthz: {len(latencies)} polls, slowest {[round(s * 1000) for s in slowest]} ms")
    # Every poll but one within 100 ms, and that one within 1 s: on CI's 2 cores, shared by four test processes,
    # PostgreSQL and the extraction children, the scheduler alone once held a poll 546 ms in ~780 (a stall of the
    # code under test shows on several of the hostile pages, as trafilatura's 150-185 ms per long-link page did).
    assert len(latencies) > 20 and slowest[-2] < 0.1 and slowest[-1] < 1.0, slowest
