"""GET /metrics: counts that follow what was done, bounded labels, the token, and a separate worker's own /metrics."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from bitbd.app import create_app
from bitbd.client import exchange
from bitbd.embedded.redis import free_port
from bitbd.settings import Settings
from tests.conftest import AiohttpClient, builtin_plugins
from tests.corpus import Indexed
from tests.support.daemon import Daemon, bitbd, clean_env
from tests.support.waiting import wait_until

Client = TestClient[Any, Any]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_LINE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? ([0-9.e+-]+|NaN|\+Inf)$")


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: Client) -> tuple[str, Samples]:
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    return text, parse(text)


async def test_counts_follow_what_was_done(client: Client, acme: Indexed) -> None:
    _, before = await scrape(client)
    auth = {"Authorization": f"Bearer {acme.secret}"}
    assert (await client.post("/v1/search", json={"query": "shipping"}, headers=auth)).status == 200
    assert (await client.get("/v1/nothing/here")).status == 404
    async with client.ws_connect("/v1/chat", headers=auth) as ws:
        for i in range(2):  # the same question twice: the second is a cache hit
            assert (await exchange(ws, f"c{i}", "How long does delivery take?")).ok
        await ws.send_json({"type": "ask", "id": "bad", "question": ""})
        assert (await ws.receive_json())["type"] == "error"
        _, during = await scrape(client)
    text, after = await scrape(client)

    assert value(during, "bitbd_ws_connections") == 1 and value(after, "bitbd_ws_connections") == 0
    assert (
        value(after, "bitbd_rag_queries_total", success="true")
        - value(before, "bitbd_rag_queries_total", success="true")
        == 2
    )
    assert (
        value(after, "bitbd_rag_queries_total", success="false")
        - value(before, "bitbd_rag_queries_total", success="false")
        == 1
    )
    assert (
        value(after, "bitbd_cache_requests_total", result="hit")
        - value(before, "bitbd_cache_requests_total", result="hit")
        == 1
    )
    assert (
        value(after, "bitbd_rag_query_latency_seconds_count", phase="total")
        - value(before, "bitbd_rag_query_latency_seconds_count", phase="total")
        == 2
    )
    assert (
        value(after, "bitbd_http_requests_total", route="/v1/search", status="200")
        - value(before, "bitbd_http_requests_total", route="/v1/search", status="200")
        == 1
    )
    assert value(after, "bitbd_http_requests_total", route="unmatched", status="404") >= 1
    assert value(after, "bitbd_embed_seconds_count", kind="query") > value(
        before, "bitbd_embed_seconds_count", kind="query"
    )
    assert ("bitbd_queue_depth", frozenset({("queue", "normal")})) in after
    for name in (
        "bitbd_queue_jobs_total",
        "bitbd_queue_job_duration_seconds",
        "bitbd_rag_chunks_retrieved",
        "bitbd_ingestion_jobs_total",
        "bitbd_ingestion_pages_processed",
        "bitbd_ingestion_chunks_created",
        "bitbd_http_request_duration_seconds",
    ):
        assert f"# TYPE {name} " in text, name
    # Bounded labels: no tenant ids, key prefixes, concrete paths or URLs anywhere.
    assert str(acme.tenant.id) not in text and acme.secret[:11] not in text
    assert "/v1/nothing" not in text and "acme.example" not in text


async def test_metrics_token(aiohttp_client: AiohttpClient, settings: Settings) -> None:
    protected = settings.model_copy(
        update={"metrics": settings.metrics.model_copy(update={"token": SecretStr("metrics-secret")})}
    )
    client = await aiohttp_client(create_app(protected, builtin_plugins()))
    resp = await client.get("/metrics")
    assert resp.status == 401 and "metrics.token" in (await resp.json())["error"]["message"]
    resp = await client.get("/metrics", headers={"Authorization": "Bearer wrong-secret"})
    assert resp.status == 401 and "metrics.token" in (await resp.json())["error"]["message"]
    for scheme in ("Bearer", "bearer"):  # the scheme is case-insensitive (RFC 9110), as for every credential
        resp = await client.get("/metrics", headers={"Authorization": f"{scheme} metrics-secret"})
        assert resp.status == 200 and "bitbd_http_requests_total" in await resp.text()


async def test_a_raised_redirect_is_counted_by_its_status(aiohttp_client: AiohttpClient, settings: Settings) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/healthz")

    app = create_app(settings, builtin_plugins())
    app.router.add_get("/moved", moved)
    client = await aiohttp_client(app)
    resp = await client.get("/moved", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/healthz"
    _, after = await scrape(client)
    assert value(after, "bitbd_http_requests_total", route="/moved", status="302") == 1
    assert value(after, "bitbd_http_requests_total", route="/moved", status="500") == 0


def test_a_separate_worker_serves_the_counts_of_its_own_jobs(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"page{i}.md").write_text(f"# Page {i}\n\nThis page talks about topic number {i} at length.\n")
    env = clean_env(BITBD_JOBS__WORKERS="0")
    daemon = Daemon(tmp_path / "data", tmp_path, env=env).start()
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "bitbd", "worker", "--data-dir", str(daemon.data_dir), "--metrics-port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        d = str(daemon.data_dir)
        assert bitbd("tenant", "create", "acme", "--data-dir", d, cwd=tmp_path).returncode == 0
        done = bitbd("ingest", "--tenant", "acme", "--data-dir", d, str(docs), cwd=tmp_path, timeout=180)
        assert done.returncode == 0 and done.stdout.startswith("succeeded: 3 pages"), done.stdout + done.stderr
        worker_metrics = parse(_get(f"http://127.0.0.1:{port}/metrics"))
        assert value(worker_metrics, "bitbd_ingestion_jobs_total", status="succeeded") == 1
        assert value(worker_metrics, "bitbd_ingestion_pages_processed_sum") == 3
        assert value(worker_metrics, "bitbd_ingestion_chunks_created_sum") >= 3
        assert value(worker_metrics, "bitbd_queue_jobs_total", queue="normal", status="success") == 4  # start + 3
        assert value(worker_metrics, "bitbd_embed_seconds_count", kind="document") >= 3
        server_metrics = parse(_get(daemon.url + "/metrics"))
        assert value(server_metrics, "bitbd_ingestion_jobs_total", status="succeeded") == 0, (
            "the server ran no task: each process counts only its own work"
        )
    finally:
        worker.terminate()
        worker.wait(30)
        daemon.stop()


def _get(url: str) -> str:
    def fetched() -> str:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    return wait_until(fetched, f"GET {url}", 10, every=0.2, ignoring=(OSError,))
