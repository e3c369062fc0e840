"""POST /v1/search over the real app: the hit contract, keys, errors, tenant isolation."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from bitbd import tenancy
from tests.conftest import admin_headers
from tests.corpus import Indexed

Client = TestClient[Any, Any]
HIT_FIELDS = {"chunk_id", "document_id", "url", "title", "heading", "text", "score"}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_hits_have_exactly_the_documented_fields_best_first(client: Client, acme: Indexed) -> None:
    resp = await client.post(
        "/v1/search", json={"query": "Can I get my money back?", "k": 3}, headers=auth(acme.secret)
    )
    assert resp.status == 200
    hits = (await resp.json())["hits"]
    assert 1 <= len(hits) <= 3
    assert all(set(h) == HIT_FIELDS for h in hits)
    assert hits[0]["url"] == "https://acme.example/returns" and hits[0]["title"] == "Returns and refunds"
    assert hits[0]["heading"] == "Returns and refunds" and "30 days" in hits[0]["text"]
    assert isinstance(hits[0]["chunk_id"], str) and isinstance(hits[0]["score"], float)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    keyword = await client.post("/v1/search", json={"query": "Zentrix", "mode": "keyword"}, headers=auth(acme.secret))
    assert [h["url"] for h in (await keyword.json())["hits"]] == ["https://acme.example/warranty"]


async def test_a_key_never_sees_another_tenants_chunks(client: Client, acme: Indexed, globex: Indexed) -> None:
    for query in ("Globex quantum toaster launch price", "confidential plan March"):
        resp = await client.post("/v1/search", json={"query": query, "k": 50}, headers=auth(acme.secret))
        assert all(h["url"].startswith("https://acme.example/") for h in (await resp.json())["hits"])
    resp = await client.post("/v1/search", json={"query": "toaster"}, headers=auth(globex.secret))
    assert [h["url"] for h in (await resp.json())["hits"]] == ["https://globex.example/launch"]


async def test_the_operator_searches_for_a_tenant_with_the_admin_token(client: Client, acme: Indexed) -> None:
    resp = await client.post("/v1/search?tenant=acme", json={"query": "shipping"}, headers=admin_headers())
    assert resp.status == 200 and (await resp.json())["hits"][0]["url"] == "https://acme.example/shipping"
    resp = await client.post("/v1/search", json={"query": "shipping"}, headers=admin_headers())
    assert resp.status == 400 and "?tenant=NAME" in (await resp.json())["error"]["message"]


async def error(resp: Any) -> tuple[int, str, str]:
    body = await resp.json()
    return resp.status, body["error"]["code"], body["error"]["message"]


async def test_bad_requests_say_what_is_wrong(client: Client, pool: asyncpg.Pool, acme: Indexed) -> None:
    key = auth(acme.secret)
    status, code, _ = await error(await client.post("/v1/search", json={"query": "x"}))
    assert (status, code) == (401, "unauthorized")
    status, code, message = await error(
        await client.post("/v1/search", data=b"{nope", headers={**key, "Content-Type": "application/json"})
    )
    assert (status, code) == (400, "invalid_json")
    status, code, message = await error(await client.post("/v1/search", json={"query": "x", "k": 500}, headers=key))
    assert (status, code) == (400, "invalid_request") and "'k'" in message
    status, code, message = await error(await client.post("/v1/search", json={"query": "  "}, headers=key))
    assert (status, code) == (400, "invalid_request") and "empty" in message
    status, code, message = await error(await client.post("/v1/search", json={"query": "x" * 2001}, headers=key))
    assert (status, code) == (400, "question_too_long") and "2000" in message
    _, public = await tenancy.create_key(pool, "acme", tenancy.KeySpec("public", ["https://acme.example"]))
    status, code, message = await error(await client.post("/v1/search", json={"query": "x"}, headers=auth(public)))
    assert (status, code) == (401, "unauthorized") and "secret key" in message
    status, code, message = await error(await client.post(f"/v1/search?key={acme.secret}", json={"query": "x"}))
    assert (status, code) == (401, "unauthorized") and "must not be put in URLs" in message


async def test_a_tenant_with_no_documents_is_told_to_ingest(client: Client, pool: asyncpg.Pool) -> None:
    await tenancy.create_tenant(pool, "empty")
    _, secret = await tenancy.create_key(pool, "empty", tenancy.KeySpec("secret"))
    status, code, message = await error(await client.post("/v1/search", json={"query": "hello"}, headers=auth(secret)))
    assert (status, code) == (409, "no_documents") and "bitbd ingest" in message
