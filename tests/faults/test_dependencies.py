"""PostgreSQL and Redis go away under a running daemon, for real, and come back: nothing crashes, callers get a
clear error meanwhile, nothing is lost, and everything recovers without restarting bitbd.

The servers are standalone (tests/servers.py), so the test can stop, kill and restart them as an outage would."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.servers import STATIC_PAGES, StandalonePostgres, StandaloneRedis
from tests.support.daemon import Daemon, bitbd, clean_env, finished, poll_job
from tests.support.waiting import wait_until


def daemon_on(tmp_path: Path, pg: StandalonePostgres, redis: StandaloneRedis) -> tuple[Daemon, str]:
    env = clean_env(
        BITBD_DATABASE__DSN=pg.dsn,
        BITBD_REDIS__URL=redis.url,
        BITBD_JOBS__REDELIVERY_SECONDS="5",
        BITBD_CRAWLER__ALLOW_PRIVATE="true",
    )
    daemon = Daemon(tmp_path / "data", tmp_path, env=env).start()
    assert bitbd("tenant", "create", "acme", cwd=tmp_path, env=env).returncode == 0
    key = bitbd("key", "create", "--tenant", "acme", cwd=tmp_path, env=env).stdout.strip()
    return daemon, key


def crawl(daemon: Daemon, key: str, url: str) -> str:
    status, queued = daemon.request("POST", "/v1/sources", {"type": "web", "urls": [url], "sitemap": False}, key)
    assert status == 202, queued
    return str(queued["job_id"])


def wait_ready(daemon: Daemon, want: int, seconds: float = 60) -> dict[str, Any]:
    """The /readyz body once it answers `want`."""

    def answered() -> dict[str, Any] | None:
        status, body = daemon.get("/readyz")
        return dict(body) if status == want else None

    return wait_until(answered, f"/readyz answering {want}", seconds, every=0.25)


async def ask(ws: aiohttp.ClientWebSocketResponse, question: str, ask_id: str) -> dict[str, Any]:
    """The question's final event (`done` or `error`), within 30 s."""
    await ws.send_json({"type": "ask", "id": ask_id, "question": question})
    async with asyncio.timeout(30):
        async for msg in ws:
            event = json.loads(msg.data)
            if event.get("id") == ask_id and event["type"] in ("done", "error"):
                return dict(event)
    raise AssertionError("the socket closed before the answer ended")


async def test_postgres_stopped_then_back(
    tmp_path: Path, static_site: str, standalone_postgres: StandalonePostgres, standalone_redis: StandaloneRedis
) -> None:
    daemon, key = await asyncio.to_thread(daemon_on, tmp_path, standalone_postgres, standalone_redis)
    try:
        job = await asyncio.to_thread(poll_job, daemon, key, crawl(daemon, key, static_site), finished)
        assert job["status"] == "succeeded"
        question = "Where was record 30 found?"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                daemon.url.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}
            ) as ws,
        ):
            assert (await ask(ws, question, "before"))["type"] == "done"

            await asyncio.to_thread(standalone_postgres.stop)
            ready = await asyncio.to_thread(wait_ready, daemon, 503)
            assert not ready["checks"]["postgres"]["ok"] and ready["checks"]["redis"]["ok"]
            during = await ask(ws, "How was record 31 stored?", "during")
            assert during["type"] == "error" and during["code"] == "unavailable", during
            assert "PostgreSQL" in during["message"]
            async with session.post(
                daemon.url + "/v1/search", json={"query": "record 30"}, headers={"Authorization": f"Bearer {key}"}
            ) as r:
                body = await r.json()
                assert r.status == 503 and body["error"]["code"] == "unavailable", body
            status, _ = await asyncio.to_thread(daemon.get, "/healthz")
            assert status == 200 and daemon.proc is not None and daemon.proc.poll() is None

            await asyncio.to_thread(standalone_postgres.start)
            await asyncio.to_thread(wait_ready, daemon, 200)
            # The same connection, no restart of anything: answers again.
            after = await ask(ws, question, "after")
            assert after["type"] == "done", after
        second = await asyncio.to_thread(poll_job, daemon, key, crawl(daemon, key, static_site), finished)
        assert second["status"] == "succeeded" and second["progress"]["failed"] == 0
    finally:
        await asyncio.to_thread(daemon.stop)


def test_redis_killed_mid_crawl_then_restarted(
    tmp_path: Path, static_site: str, standalone_postgres: StandalonePostgres, standalone_redis: StandaloneRedis
) -> None:
    daemon, key = daemon_on(tmp_path, standalone_postgres, standalone_redis)
    try:
        job_id = crawl(daemon, key, static_site)
        poll_job(daemon, key, job_id, lambda j: j["progress"]["fetched"] >= 5)
        standalone_redis.kill()  # SIGKILL: only what the AOF had survives
        ready = wait_ready(daemon, 503)
        assert not ready["checks"]["redis"]["ok"] and ready["checks"]["postgres"]["ok"]
        status, job = daemon.get(f"/v1/jobs/{job_id}", token=key)
        assert status == 200 and job["status"] == "running", "job state lives in PostgreSQL and stays readable"
        time.sleep(2)  # Redis stays down a while: the server and its workers must ride out an outage
        standalone_redis.start()  # same port, same AOF
        wait_ready(daemon, 200)
        job = poll_job(daemon, key, job_id, finished, seconds=180)
        assert job["status"] == "succeeded", job
        assert job["progress"]["fetched"] == STATIC_PAGES + 1 and job["progress"]["failed"] == 0
        _, listing = daemon.get("/v1/documents?limit=1000", token=key)
        docs = listing["documents"]
        assert len(docs) == STATIC_PAGES + 1 and len({d["url"] for d in docs}) == len(docs), "each page once"
        assert all(d["chunks"] > 0 for d in docs)
        assert daemon.proc is not None and daemon.proc.poll() is None
    finally:
        daemon.stop()
