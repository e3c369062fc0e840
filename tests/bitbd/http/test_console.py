"""The console's admin API over a real app with real workers: live events, jobs of all tenants, retry, cancel,
recent questions, tenant stats."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import asyncpg

from bitbd import tenancy
from tests.conftest import admin_headers
from tests.ingesting import Client, wait_job
from tests.site import Site


async def next_of(
    ws: aiohttp.ClientWebSocketResponse, kind: str, seconds: float = 30, until: Any = lambda m: True
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = await ws.receive(timeout=seconds)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        event: dict[str, Any] = json.loads(msg.data)
        if event["type"] == kind and until(event):
            return event
    raise AssertionError(f"no {kind} message in {seconds}s")


async def test_live_events_follow_a_crawl(ingest: tuple[Client, str], site: tuple[Site, str]) -> None:
    client, key = ingest
    _, base = site
    async with client.ws_connect("/v1/admin/events", headers=admin_headers()) as ws:
        first = await next_of(ws, "snapshot", 5)
        assert set(first) >= {"queues", "workers", "jobs", "chat", "time"}
        assert set(first["queues"]) >= {"high", "normal", "delayed"}
        resp = await client.post(
            "/v1/sources",
            json={"type": "web", "urls": [f"{base}/volcanoes"], "max_depth": 0, "sitemap": False},
            headers={"Authorization": f"Bearer {key}"},
        )
        job_id = (await resp.json())["job_id"]
        started = time.monotonic()
        update = await next_of(ws, "jobs", 10, lambda e: any(j["id"] == job_id for j in e["jobs"]))
        assert time.monotonic() - started < 2, "a change reaches the console within a second or so"
        job = next(j for j in update["jobs"] if j["id"] == job_id)
        assert job["tenant"] == "acme" and job["source_type"] == "web"
        if job["status"] != "succeeded":  # a one-page job may end within the first half second
            await next_of(
                ws, "jobs", 60, lambda e: any(j["id"] == job_id and j["status"] == "succeeded" for j in e["jobs"])
            )
        snap = await next_of(ws, "snapshot", 5, lambda e: e["jobs"]["succeeded"] >= 1)
        assert any(w["concurrency"] == 2 and w["role"] == "serve" for w in snap["workers"]), snap["workers"]
    resp = await client.get("/v1/admin/events")
    assert resp.status == 401, "the feed is for the operator only"


async def test_jobs_of_every_tenant_retry_and_cancel(
    ingest: tuple[Client, str], site: tuple[Site, str], pool: asyncpg.Pool
) -> None:
    client, key = ingest
    _, base = site
    resp = await client.post(
        "/v1/sources",
        json={"type": "web", "urls": [f"{base}/missing"], "max_depth": 0, "sitemap": False},
        headers={"Authorization": f"Bearer {key}"},
    )
    job_id = (await resp.json())["job_id"]
    failed = await wait_job(client, key, job_id)
    assert failed["status"] == "failed"

    listing = await (await client.get("/v1/admin/jobs?status=failed", headers=admin_headers())).json()
    assert [j["id"] for j in listing["jobs"]] == [job_id] and listing["jobs"][0]["tenant"] == "acme"
    detail = await (await client.get(f"/v1/admin/jobs/{job_id}", headers=admin_headers())).json()
    assert "404" in json.dumps(detail["errors"])

    resp = await client.post(f"/v1/admin/jobs/{job_id}/retry", headers=admin_headers())
    assert resp.status == 202
    retried = await resp.json()
    assert retried["retry_of"] == job_id and retried["id"] != job_id
    assert (await wait_job(client, key, retried["id"]))["status"] == "failed", "the page is still missing"

    resp = await client.post(f"/v1/admin/jobs/{job_id}/cancel", headers=admin_headers())
    assert resp.status == 409 and "already failed" in (await resp.json())["error"]["message"]
    tenant = await tenancy.get_tenant(pool, "acme")
    queued = await pool.fetchval("INSERT INTO jobs (tenant_id, kind) VALUES ($1, 'ingest') RETURNING id", tenant.id)
    resp = await client.post(f"/v1/admin/jobs/{queued}/cancel", headers=admin_headers())
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    resp = await client.post(f"/v1/admin/jobs/{job_id}/retry", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 401
    resp = await client.get("/v1/admin/jobs?status=exploded", headers=admin_headers())
    assert resp.status == 400


async def test_recent_questions_and_tenant_stats(ingest: tuple[Client, str], site: tuple[Site, str]) -> None:
    client, key = ingest
    _, base = site
    auth = {"Authorization": f"Bearer {key}"}
    resp = await client.post(
        "/v1/sources",
        json={"type": "web", "urls": [f"{base}/volcanoes"], "max_depth": 0, "sitemap": False},
        headers=auth,
    )
    await wait_job(client, key, (await resp.json())["job_id"])
    async with client.ws_connect("/v1/chat", headers=auth) as ws:
        await ws.send_json({"type": "ask", "id": "q", "question": "How do volcanoes erupt?"})
        while (await ws.receive_json())["type"] != "done":
            pass
    questions = (await (await client.get("/v1/admin/questions", headers=admin_headers())).json())["questions"]
    assert questions[0]["question"] == "How do volcanoes erupt?" and questions[0]["tenant"] == "acme"
    assert questions[0]["citations"] >= 1 and questions[0]["cached"] is False and questions[0]["latency_ms"] >= 0
    tenants = (await (await client.get("/v1/admin/tenants", headers=admin_headers())).json())["tenants"]
    acme = next(t for t in tenants if t["name"] == "acme")
    assert acme["documents"] == 1 and acme["chunks"] >= 1 and acme["questions"] == 1 and acme["last_crawl"]
    stats = await (await client.get("/v1/admin/stats", headers=admin_headers())).json()
    assert stats["chat"]["answered_15m"] == 1 and stats["chat"]["per_minute"][-1] == 1
    assert stats["chat"]["p50_ms"] is not None and stats["chat"]["cache_hit_rate"] == 0
    await asyncio.sleep(0)
