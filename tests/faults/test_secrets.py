"""After a full run that touches every path (verbose logs, a crawl, chat, search, admin, metrics, mistakes with
wrong and revoked keys, an LLM and Langfuse configured but unreachable), no secret appears anywhere bitbd writes or
answers: its log, every HTTP response body, /metrics, the admin console's views, or the job records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from tests.servers import StandalonePostgres, StandaloneRedis
from tests.support.daemon import Daemon, clean_env, finished, poll_job

LLM_KEY = "sk-llm-0123456789abcdefSECRET"
LANGFUSE_SECRET = "sk-lf-0123456789abcdefSECRET"
METRICS_TOKEN = "metrics-token-0123456789SECRET"
ADMIN = "adm_0123456789abcdefghijklmnopSECRET"


async def exercise(base: str, key: str, bodies: list[str]) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as s:

        async def call(method: str, path: str, token: str | None = key, **kw: object) -> None:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with s.request(method, base + path, headers=headers, **kw) as r:  # type: ignore[arg-type]
                bodies.append(await r.text())

        async with s.ws_connect(base.replace("http", "ws") + "/v1/chat", headers=auth) as ws:
            for i, q in enumerate(["Where was record 3 found?", "", "x" * 5000]):
                await ws.send_json({"type": "ask", "id": str(i), "question": q})
                async for msg in ws:
                    bodies.append(msg.data)
                    if json.loads(msg.data)["type"] in ("done", "error"):
                        break
        await call("POST", "/v1/search", json={"query": "record 3"})
        await call("POST", "/v1/search", token=key[:-3] + "abc", json={"query": "record 3"})
        await call("POST", "/v1/search", token=ADMIN[:-2], json={"query": "record 3"})
        await call("GET", "/v1/jobs")
        await call("GET", "/v1/documents")
        for path in (
            "/v1/admin/tenants",
            "/v1/admin/jobs",
            "/v1/admin/questions",
            "/v1/admin/stats",
            "/v1/admin/tenants/acme/keys",
            "/v1/admin/plugins",
        ):
            await call("GET", path, token=ADMIN)
        await call("GET", "/metrics", token=METRICS_TOKEN)
        await call("GET", "/metrics", token="wrong")
        await call("GET", "/readyz", token=None)
        async with s.ws_connect(
            base.replace("http", "ws") + "/v1/admin/events", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as events:
            bodies.append((await events.receive()).data)
        async with s.ws_connect(base.replace("http", "ws") + f"/v1/chat?key={key}") as ws:  # sk_ in a URL: refused
            bodies.append(str((await ws.receive()).data))


def test_no_secret_anywhere_after_a_full_run(
    tmp_path: Path, static_site: str, standalone_postgres: StandalonePostgres, standalone_redis: StandaloneRedis
) -> None:
    env = clean_env(
        BITBD_DATABASE__DSN=standalone_postgres.dsn,
        BITBD_REDIS__URL=standalone_redis.url,
        BITBD_ADMIN_TOKEN=ADMIN,
        BITBD_METRICS__TOKEN=METRICS_TOKEN,
        BITBD_CRAWLER__ALLOW_PRIVATE="true",
        BITBD_ANSWER__GENERATOR="openai",
        BITBD_PLUGINS__OPENAI__BASE_URL="http://127.0.0.1:9/v1",
        BITBD_PLUGINS__OPENAI__API_KEY=LLM_KEY,
        BITBD_TRACING__PUBLIC_KEY="pk-lf-test",
        BITBD_TRACING__SECRET_KEY=LANGFUSE_SECRET,
        BITBD_TRACING__HOST="http://127.0.0.1:9",
        BITBD_TRACING__TIMEOUT="1",
    )
    daemon = Daemon(tmp_path / "data", tmp_path, "--verbose", env=env).start()
    bodies: list[str] = []
    try:
        status, tenant = daemon.request("POST", "/v1/admin/tenants", {"name": "acme"}, ADMIN)
        assert status == 201, tenant
        _, created = daemon.request("POST", "/v1/admin/tenants/acme/keys", {"kind": "secret"}, ADMIN)
        key = created["key"]
        _, revoked = daemon.request("POST", "/v1/admin/tenants/acme/keys", {"kind": "secret"}, ADMIN)
        daemon.request("DELETE", f"/v1/admin/tenants/acme/keys/{revoked['id']}", None, ADMIN)
        bodies.append(json.dumps(daemon.get("/v1/jobs", token=revoked["key"])))
        _, queued = daemon.request("POST", "/v1/sources", {"type": "web", "urls": [static_site]}, key)
        job = poll_job(daemon, key, queued["job_id"], finished, seconds=180)
        bodies.append(json.dumps(job))
        asyncio.run(exercise(daemon.url, key, bodies))
    finally:
        daemon.stop()
    assert any('"type": "done"' in b or '"type":"done"' in b for b in bodies), "the chat really answered"
    secrets = {
        "admin token": ADMIN,
        "API key": key,
        "revoked key": revoked["key"],
        "LLM key": LLM_KEY,
        "Langfuse secret": LANGFUSE_SECRET,
        "metrics token": METRICS_TOKEN,
        "PostgreSQL password": standalone_postgres.password,
        "Redis password": standalone_redis.password,
    }
    log = daemon.output()
    assert "level=debug" in log, "the verbose run logged"
    for what, secret in secrets.items():
        assert secret not in log, f"{what} in the log"
        for body in bodies:
            assert secret not in body or (what == "API key" and body.startswith('{"key"')), f"{what} in {body[:200]}"
