"""A crawl spends its page budget on content: index and contents pages (mostly links) are followed, not indexed,
and do not count against max_pages (issue 16: a 60-page crawl of the Python docs spent its budget on genindex and
py-modindex and never reached argparse)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from bitbd.settings import Settings
from tests.bitbd.jobs.test_crawl import crawl
from tests.conftest import AiohttpClient, builtin_plugins
from tests.ingesting import Client, ingest_settings
from tests.site import Site, serving

TOPICS = ["argparse", "csv", "json", "logging", "pathlib", "sqlite3"]


def module_page(name: str) -> str:
    return (
        f"<html><head><title>{name}</title></head><body><div role='main'><h1>{name}</h1>"
        f"<p>The {name} module is documented here. It does one thing well and has a long description of how "
        f"to use {name} in a program, with <a href='/{TOPICS[0]}.html'>one link</a> in its prose.</p></div></body>"
        "</html>"
    )


def listing(title: str, links: list[str]) -> str:
    items = "".join(f"<li><a href='{href}'>{href.strip('/').removesuffix('.html')} — module</a></li>" for href in links)
    return f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1><ul>{items}</ul></main></body></html>"


@pytest.fixture
async def docs_site() -> AsyncIterator[tuple[Site, str]]:
    site = Site()
    # The start page and two generated indexes lead to everything: before, they took three of the six pages.
    pages = [f"/{name}.html" for name in TOPICS]
    site.html("/", listing("Library", ["/genindex.html", "/modindex.html", *pages]))
    site.html("/genindex.html", listing("Index", ["/", *pages]))
    site.html("/modindex.html", listing("Module index", pages))
    for name in TOPICS:
        site.html(f"/{name}.html", module_page(name))
    async with serving(site.app()) as base:
        yield site, base


async def daemon(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, **crawler: object
) -> tuple[Client, str]:
    from bitbd import tenancy
    from bitbd.app import create_app
    from bitbd.tenancy import KeySpec

    client = await aiohttp_client(create_app(ingest_settings(settings, **crawler), builtin_plugins()))
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    return client, key


async def test_link_pages_are_followed_not_indexed_and_do_not_use_the_budget(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, docs_site: tuple[Site, str]
) -> None:
    client, key = await daemon(aiohttp_client, settings, pool)
    site, base = docs_site
    job = await crawl(client, key, {"type": "web", "urls": [base + "/"], "max_pages": len(TOPICS), "sitemap": False})
    assert job["status"] == "succeeded", (job["progress"], job["errors"])
    urls = {r["url"].removeprefix(base) for r in await pool.fetch("SELECT url FROM documents")}
    items = [tuple(r) for r in await pool.fetch("SELECT item, depth, status, link_page FROM job_items ORDER BY id")]
    assert urls == {f"/{name}.html" for name in TOPICS}, (urls, items)  # every module, no index page
    reasons = {e["item"].removeprefix(base): e["error"] for e in job["errors"]}
    for listing_page in ("/", "/genindex.html", "/modindex.html"):
        assert "a link page" in reasons.get(listing_page, "") and "crawler.index_link_pages" in reasons[listing_page], (
            listing_page,
            reasons,
        )
    assert job["progress"]["skipped"] == 3 and job["progress"]["fetched"] == len(TOPICS), job["progress"]
    assert all(site.hits[f"/{name}.html"] == 1 for name in TOPICS), site.hits


async def test_index_link_pages_restores_counting_them(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, docs_site: tuple[Site, str]
) -> None:
    client, key = await daemon(aiohttp_client, settings, pool, index_link_pages=True)
    _, base = docs_site
    job = await crawl(client, key, {"type": "web", "urls": [base + "/"], "max_pages": len(TOPICS), "sitemap": False})
    urls = {r["url"].removeprefix(base) for r in await pool.fetch("SELECT url FROM documents")}
    assert "/" in urls and len(urls) == len(TOPICS), urls
    assert job["progress"]["skipped"] == 0, job["progress"]
