"""Crawling a real site on loopback through the daemon's API and in-process workers."""

from __future__ import annotations

from typing import Any

import asyncpg

from bitbd.plugin_api import PluginContext
from bitbd_plugins.embedders.fastembed import FastEmbedder
from bitbd_plugins.stores.pgvector import PgVectorStore
from tests.ingesting import Client, wait_job
from tests.site import BREAD, Site, page


async def crawl(client: Client, key: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/v1/sources", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 202, await resp.text()
    queued = await resp.json()
    job = await wait_job(client, key, queued["job_id"])
    return {**job, "source_id": queued["source_id"]}


def errors_by_item(job: dict[str, Any], base: str) -> dict[str, str]:
    return {(e["item"] or "").removeprefix(base): e["error"] for e in job["errors"]}


async def test_crawl_records_every_bad_page_and_indexes_the_good_ones(
    ingest: tuple[Client, str], site: tuple[Site, str], pool: asyncpg.Pool
) -> None:
    client, key = ingest
    the_site, base = site
    # The unreachable page is on another port, so another site (the link to it is not followed): a start URL.
    unreachable = the_site.unreachable
    job = await crawl(client, key, {"type": "web", "urls": [base + "/", unreachable], "max_pages": 50})
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    errors = errors_by_item(job, base)
    expected = {
        "/private/secret": "disallowed by robots.txt",
        "/missing": "HTTP 404",
        "/loop1": "redirect loop",
        "/binary": "binary content served as text/html",
        "/big": "over the 200000-byte limit",
        "/broken.pdf": "broken PDF",
        "/locked.pdf": "encrypted",
        "/empty": "empty file",
        "/image.png": "content type image/png is not indexed",
        unreachable: "cannot connect",
    }
    for item, reason in expected.items():
        assert reason in errors.get(item, ""), (item, errors.get(item))
    assert "after 3 attempts" in errors[unreachable]
    assert "/flaky" not in errors and the_site.hits["/flaky"] == 3, "two 500s, then a success on the third try"
    assert the_site.hits["/private/secret"] == 0, "robots.txt is obeyed before fetching"
    assert "https://other.example/x" not in str(job["errors"]), "links to other sites are not followed"

    docs = {
        r["url"].removeprefix(base): r["chunks"]
        for r in await pool.fetch(
            "SELECT d.url, count(c.id) AS chunks FROM documents d LEFT JOIN chunks c ON c.document_id = d.id "
            "GROUP BY d.url"
        )
    }
    assert set(docs) == {"/", "/volcanoes", "/bread", "/flaky", "/from-sitemap", "/latin", "/guide.pdf"}
    assert all(n > 0 for n in docs.values()), docs
    progress = job["progress"]
    assert progress["fetched"] == 7 and progress["failed"] == len(expected)
    resp = await client.get("/v1/jobs?status=succeeded", headers={"Authorization": f"Bearer {key}"})
    listed = (await resp.json())["jobs"]
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["progress"]["fetched"] == 7
    assert progress["chunks_embedded"] == sum(docs.values())

    # The right page comes back for a question about it.
    embedder = FastEmbedder(PluginContext("fastembed"))
    tenant_id = await pool.fetchval("SELECT id FROM tenants WHERE name = 'acme'")
    store = PgVectorStore(PluginContext("pgvector", pool=pool))
    for question, path in [
        ("how do I feed a sourdough starter", "/bread"),
        ("what warns that an eruption is coming", "/volcanoes"),
        ("where did the glacier ice stop", "/guide.pdf"),
    ]:
        hits = await store.search(tenant_id, (await embedder.embed([question]))[0], 3)
        assert hits[0].url == base + path, (question, [h.url for h in hits])


async def test_recrawl_skips_unchanged_and_follows_changes(
    ingest: tuple[Client, str], site: tuple[Site, str], pool: asyncpg.Pool
) -> None:
    client, key = ingest
    the_site, base = site
    first = await crawl(client, key, {"type": "web", "urls": [base + "/"], "max_pages": 50})
    chunk_ids = {r["id"] for r in await pool.fetch("SELECT id FROM chunks")}
    auth = {"Authorization": f"Bearer {key}"}

    resp = await client.post(f"/v1/sources/{first['source_id']}/crawl", headers=auth)
    again = await wait_job(client, key, (await resp.json())["job_id"])
    assert again["status"] == "succeeded"
    assert again["progress"]["chunks_embedded"] == 0
    assert again["progress"]["unchanged"] == 7, again["progress"]
    assert {r["id"] for r in await pool.fetch("SELECT id FROM chunks")} == chunk_ids, "nothing rewritten"

    # The site changes: one page gone, one page edited.
    del the_site.pages["/volcanoes"]
    the_site.html(
        "/bread",
        page(
            "Bread",
            BREAD + "<h2>Storing</h2><p>Keep the finished loaf in a linen bag "
            "for up to three days; never in the fridge.</p>",
            ["/"],
        ),
    )
    resp = await client.post(f"/v1/sources/{first['source_id']}/crawl", headers=auth)
    changed = await wait_job(client, key, (await resp.json())["job_id"])
    assert changed["status"] == "succeeded"
    assert 0 < changed["progress"]["chunks_embedded"] <= 2, "only the edited part of /bread is embedded"
    urls = {r["url"] for r in await pool.fetch("SELECT url FROM documents")}
    assert base + "/volcanoes" not in urls, "a page gone from the site leaves the index"
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.url = $1",
            base + "/volcanoes",
        )
        == 0
    )


async def test_max_pages_and_depth_bound_the_crawl(ingest: tuple[Client, str], site: tuple[Site, str]) -> None:
    client, key = ingest
    _, base = site
    job = await crawl(client, key, {"type": "web", "urls": [base + "/"], "max_pages": 3, "sitemap": False})
    assert job["progress"]["found"] == 3 and job["progress"]["truncated"] is True
    job = await crawl(client, key, {"type": "web", "urls": [base + "/volcanoes"], "max_depth": 0, "sitemap": False})
    assert job["progress"]["found"] == 1


async def test_bad_source_requests(ingest: tuple[Client, str]) -> None:
    client, key = ingest
    auth = {"Authorization": f"Bearer {key}"}
    for body, expected in [
        ({"type": "ftp", "urls": ["ftp://x"]}, "unknown source type 'ftp'"),
        ({"type": "web"}, "field 'urls'"),
        ({"type": "web", "urls": ["not a url"]}, "not an absolute http(s) URL"),
        ({"type": "web", "urls": ["http://a.example"], "include": ["("]}, "not a valid regular expression"),
        ({"type": "web", "urls": ["http://a.example"], "colour": "red"}, "field 'colour'"),
    ]:
        resp = await client.post("/v1/sources", json=body, headers=auth)
        assert resp.status == 400, body
        assert expected in (await resp.json())["error"]["message"], body
    resp = await client.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers=auth)
    assert resp.status == 404
