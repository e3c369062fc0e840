"""Two tenants of one real `bitbd serve` probing each other: every read and write path is scoped to the caller's
tenant (jobs, sources, documents, search, chat, conversations, the semantic cache), the operator's paths (the
events feed among them) refuse tenant keys, and /metrics carries no tenant, document or question."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.chat import ask
from tests.support.daemon import Daemon, bitbd, clean_env, finished, poll_job

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

QUESTION = "How many days do I have to return an item?"


@dataclass
class Tenant:
    name: str
    key: str
    job: str
    source: str
    document: str
    url: str


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Tenant, Tenant]]:
    root = tmp_path_factory.mktemp("isolation")
    env = clean_env(BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0")
    d = Daemon(root / "data", root, env=env).start()
    acme = _tenant(
        d,
        root,
        env,
        "acme",
        "acme-returns.md",
        b"# Returns\n\nAt Acme, items can be returned within 30 days of delivery. Acme secret code ZEBRA-17.\n",
    )
    globex = _tenant(
        d,
        root,
        env,
        "globex",
        "globex-returns.md",
        b"# Returns\n\nAt Globex, items can be returned within 90 days. Globex secret code OTTER-42.\n",
    )
    yield d, acme, globex
    d.stop()
    assert "Traceback" not in d.output(), d.output()[-3000:]


def _tenant(d: Daemon, cwd: Path, env: dict[str, str], name: str, filename: str, text: bytes) -> Tenant:
    assert bitbd("tenant", "create", name, "--data-dir", str(d.data_dir), cwd=cwd, env=env).returncode == 0
    key = bitbd("key", "create", "--tenant", name, "--data-dir", str(d.data_dir), cwd=cwd, env=env).stdout.strip()
    job = poll_job(d, key, d.upload(key, filename, text), finished)
    assert job["status"] == "succeeded", job
    _, listing = d.get("/v1/documents", token=key)
    [document] = listing["documents"]
    return Tenant(name, key, job["id"], job["source_id"], document["id"], document["url"])


def test_a_tenant_cannot_read_or_touch_another_tenants_jobs_sources_or_documents(
    two: tuple[Daemon, Tenant, Tenant],
) -> None:
    d, acme, globex = two
    for method, path in [
        ("GET", f"/v1/jobs/{acme.job}"),
        ("POST", f"/v1/jobs/{acme.job}/cancel"),
        ("POST", f"/v1/sources/{acme.source}/crawl"),
        ("DELETE", f"/v1/sources/{acme.source}"),
        ("DELETE", f"/v1/documents/{acme.document}"),
    ]:
        status, body = d.request(method, path, token=globex.key)
        assert status == 404 and body["error"]["code"] == "not_found", (method, path, body)
        assert acme.name not in json.dumps(body), "a refusal says nothing about the other tenant"
    for path, field in [("/v1/jobs", "jobs"), ("/v1/sources", "sources"), ("/v1/documents", "documents")]:
        _, body = d.get(path, token=globex.key)
        seen = json.dumps(body[field])
        assert acme.job not in seen and acme.source not in seen and acme.document not in seen, (path, seen)
        assert body[field], f"{path}: globex sees its own"
    _, mine = d.get("/v1/documents", token=acme.key)
    assert [doc["id"] for doc in mine["documents"]] == [acme.document], "nothing of acme's was deleted"
    _, job = d.get(f"/v1/jobs/{acme.job}", token=acme.key)
    assert job["status"] == "succeeded"


def test_search_finds_only_the_callers_chunks(two: tuple[Daemon, Tenant, Tenant]) -> None:
    d, acme, globex = two
    for query in ["ZEBRA-17", "Acme secret code", QUESTION]:
        for mode in ("hybrid", "vector", "keyword"):
            _, own = d.request("POST", "/v1/search", {"query": query, "mode": mode, "k": 50}, acme.key)
            assert [h["url"] for h in own["hits"]] == [acme.url], "the query does find acme's page, for acme"
            status, body = d.request("POST", "/v1/search", {"query": query, "mode": mode, "k": 50}, globex.key)
            assert status == 200
            assert all(h["url"] == globex.url for h in body["hits"]), (query, mode, body)
            assert "ZEBRA" not in json.dumps(body)


async def test_chat_conversations_and_cache_stay_with_their_tenant(two: tuple[Daemon, Tenant, Tenant]) -> None:
    d, acme, globex = two
    ws_url = d.url.replace("http", "ws") + "/v1/chat"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, headers={"Authorization": f"Bearer {acme.key}"}) as ws:
            text, sources, done, _ = await ask(ws, "a1", QUESTION)
            assert done["type"] == "done" and "30 days" in text and [s["url"] for s in sources] == [acme.url]
            _, _, again, _ = await ask(ws, "a2", QUESTION)
            assert again["cached"], "acme's second asking comes from the cache"
        async with session.ws_connect(ws_url, headers={"Authorization": f"Bearer {globex.key}"}) as ws:
            text, sources, theirs, _ = await ask(ws, "g1", QUESTION)
            assert theirs["type"] == "done" and not theirs["cached"], "acme's cached answer is never served to globex"
            assert "90 days" in text and "30 days" not in text and [s["url"] for s in sources] == [globex.url]
            text, sources, _, _ = await ask(ws, "g2", "What is the Acme secret code ZEBRA-17?")
            assert "ZEBRA" not in text and all(s["url"] == globex.url for s in sources), text
            _, _, refused, _ = await ask(ws, "g3", "and for sale items?", conversation=done["conversation_id"])
            assert refused["type"] == "error" and refused["code"] == "conversation_not_found", refused


async def test_operator_paths_and_the_events_feed_refuse_tenant_keys(two: tuple[Daemon, Tenant, Tenant]) -> None:
    d, acme, _ = two
    for path in [
        "/v1/admin/tenants",
        "/v1/admin/jobs",
        f"/v1/admin/jobs/{acme.job}",
        "/v1/admin/questions",
        "/v1/admin/stats",
        "/v1/admin/plugins",
        "/v1/admin/tenants/acme/keys",
    ]:
        status, body = await asyncio.to_thread(d.get, path, acme.key)
        assert status == 401 and body["error"]["code"] == "unauthorized", (path, body)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                d.url.replace("http", "ws") + "/v1/admin/events", headers={"Authorization": f"Bearer {acme.key}"}
            )
        assert refused.value.status == 401


def test_metrics_name_no_tenant_document_or_question(two: tuple[Daemon, Tenant, Tenant]) -> None:
    d, acme, globex = two
    with urllib.request.urlopen(d.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    assert "bitbd_rag_queries_total{" in text, "the questions asked above were counted"
    assert "/v1/documents/{document}" in text, "requests are labelled by route pattern, never by the id asked for"
    for t in (acme, globex):
        for secret in (t.name, t.key, t.key[:12], t.job, t.source, t.document, t.url):
            assert secret not in text, f"/metrics names {secret!r}"
    assert "ZEBRA" not in text and "return an item" not in text
