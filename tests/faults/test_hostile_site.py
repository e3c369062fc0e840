"""The crawler against a hostile site on loopback: an infinite link space, a gzip bomb, huge headers, an endless
trickling body, an invalid charset, redirects to loopback and link-local addresses. Each page is refused (or read)
with a specific reason, the crawl ends, the server stays up. (Private addresses, DNS names resolving to them and
the guard itself: tests/bitbd/jobs/test_jobs.py and tests/bitbd/ingest/test_guard.py.)"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.tenancy import KeySpec
from tests.conftest import AiohttpClient, builtin_plugins
from tests.ingesting import ingest_settings, wait_job
from tests.site import page, serving

BOMB = gzip.compress(b"\0" * 50_000_000)  # 50 MB of zeros in ~50 KB


async def hostile(request: web.Request) -> web.StreamResponse:
    path = request.path
    if path == "/":
        links = ["/calendar/1", "/bomb", "/huge-header", "/trickle", "/charset", "/to-loopback", "/to-metadata"]
        return web.Response(
            text=page("Hostile", "<p>A site that tries everything a crawler should survive.</p>", links),
            content_type="text/html",
        )
    if path.startswith("/calendar/"):  # a new page, and two new links, forever
        n = int(path.rsplit("/", 1)[1])
        return web.Response(
            text=page(
                f"Day {n}",
                f"<p>Events of day {n} of the endless calendar, all of them "
                f"equally unremarkable but unique: number {n * 7919}.</p>",
                [f"/calendar/{n + 1}", f"/calendar/{n}?view=week&n={n}"],
            ),
            content_type="text/html",
        )
    if path == "/bomb":
        return web.Response(body=BOMB, headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
    if path == "/huge-header":
        return web.Response(text="<p>x</p>", content_type="text/html", headers={"X-Huge": "a" * 100_000})
    if path == "/trickle":
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        for _ in range(600):
            await resp.write(b"<p>still coming</p>")
            await asyncio.sleep(0.05)
        return resp
    if path == "/charset":
        return web.Response(
            body="<html><body><main><h1>Caf\u00e9</h1><p>Un caf\u00e9 cr\u00e8me, tr\u00e8s chaud, "
            "servi comme \u00e0 Paris.</p></main></body></html>".encode("latin-1"),
            headers={"Content-Type": "text/html; charset=x-no-such-charset"},
        )
    if path == "/to-loopback":
        raise web.HTTPFound("http://127.0.0.1:9/secret")
    if path == "/to-metadata":
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
    return web.Response(status=404)


@pytest.fixture
async def hostile_site() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", hostile)
    async with serving(app) as url:
        yield url


async def test_a_hostile_site_is_crawled_safely(
    aiohttp_client: AiohttpClient, settings: object, pool: asyncpg.Pool, hostile_site: str
) -> None:
    # allow_private only because the site itself is on loopback; redirects are checked by scope and address.
    client = await aiohttp_client(
        create_app(
            ingest_settings(settings, max_page_bytes=1_000_000, timeout=3, max_pages=40),  # type: ignore[arg-type]
            builtin_plugins(),
        )
    )
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    auth = {"Authorization": f"Bearer {key}"}
    resp = await client.post(
        "/v1/sources",
        json={"type": "web", "urls": [hostile_site + "/"], "sitemap": False, "max_depth": 100},
        headers=auth,
    )
    assert resp.status == 202, await resp.text()
    job = await wait_job(client, key, (await resp.json())["job_id"], seconds=180)
    assert job["status"] == "succeeded", job
    errors = {(e["item"] or "").removeprefix(hostile_site): e["error"] for e in job["errors"]}
    assert "over the 1000000-byte limit" in errors["/bomb"], errors
    assert "invalid HTTP response" in errors["/huge-header"], errors
    assert "no complete answer within 3s" in errors["/trickle"], errors
    # Another host (the cloud metadata address) is outside the crawl's sites; the same host on another port is the
    # same site, and with allow_private off its address would be refused as well (test_jobs.py).
    assert "outside the crawl's sites" in errors["/to-metadata"], errors
    assert "/to-loopback" in errors, errors
    assert "/charset" not in errors, "an unknown charset is decoded anyway (detected), not refused"
    found = (await (await client.get("/v1/documents?limit=1000", headers=auth)).json())["documents"]
    calendar = [d for d in found if "/calendar/" in d["url"]]
    assert len(found) <= 40 and calendar, "the endless calendar is cut at max_pages"
    assert any("Caf\u00e9" in d["title"] for d in found)
    assert (await client.get("/readyz")).status == 200
