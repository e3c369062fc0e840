"""A visitor's conversation: rated (`feedback` on the chat socket, POST /v1/messages/{message}/feedback) once per
answer, read back (GET /v1/conversations/{conversation}) only by who may see it, and deleted after its retention;
a public key's conversations are its own."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.client import exchange
from bitbd.settings import Settings
from tests.bitbd.http.test_metrics import scrape, value
from tests.conftest import AiohttpClient, builtin_plugins
from tests.corpus import Indexed
from tests.support.waiting import wait_until_async

Client = TestClient[Any, Any]
SHOP = "https://shop.acme.example"


async def public_key(pool: asyncpg.Pool) -> str:
    _, key = await tenancy.create_key(pool, "acme", tenancy.KeySpec("public", [SHOP]))
    return key


async def test_every_done_names_its_answer_and_a_visitor_rates_it_on_the_socket(
    client: Client, acme: Indexed, pool: asyncpg.Pool
) -> None:
    _, before = await scrape(client)
    key = await public_key(pool)
    async with client.ws_connect(f"/v1/chat?key={key}", origin=SHOP) as ws:
        done = (await exchange(ws, "q1", "How long does delivery take?")).end
        assert done["type"] == "done" and done["message_id"].isdigit(), done
        await ws.send_json({"type": "feedback", "id": "f1", "message_id": done["message_id"], "rating": "down"})
        saved = await ws.receive_json(timeout=10)
        assert saved == {
            "type": "feedback_saved",
            "id": "f1",
            "message_id": done["message_id"],
            "rating": "down",
            "comment": "",
            "replaced": False,
        }
        comment = {"comment": "  It was faster than that.  ", "rating": "up"}
        await ws.send_json({"type": "feedback", "id": "f2", "message_id": done["message_id"], **comment})
        again = await ws.receive_json(timeout=10)
        assert again["replaced"] is True and again["comment"] == "It was faster than that."
    rows = await pool.fetch("SELECT rating, comment FROM feedback WHERE message_id = $1", int(done["message_id"]))
    assert [tuple(r) for r in rows] == [("up", "It was faster than that.")], "once per answer, the later one kept"
    _, after = await scrape(client)
    for rating in ("up", "down"):
        counted = value(after, "bitbd_answer_feedback_total", rating=rating)
        assert counted - value(before, "bitbd_answer_feedback_total", rating=rating) == 1, rating


async def test_a_public_key_rates_and_continues_only_its_own_conversations(
    client: Client, acme: Indexed, pool: asyncpg.Pool
) -> None:
    async with client.ws_connect("/v1/chat", headers={"Authorization": f"Bearer {acme.secret}"}) as ws:
        theirs = (await exchange(ws, "q", "How long does delivery take?")).end
    visitor = await public_key(pool)
    async with client.ws_connect(f"/v1/chat?key={visitor}", origin=SHOP) as ws:
        await ws.send_json({"type": "feedback", "id": "f", "message_id": theirs["message_id"], "rating": "down"})
        refused = await ws.receive_json(timeout=10)
        assert refused["type"] == "error" and refused["code"] == "message_not_found", refused
        follow_up = await exchange(ws, "q2", "And express?", theirs["conversation_id"])
        assert not follow_up.ok and follow_up.end["code"] == "conversation_not_found", follow_up.end
        own = (await exchange(ws, "q3", "How long does delivery take?")).end
        assert (await exchange(ws, "q4", "And express?", own["conversation_id"])).ok, "its own goes on"
    resp = await client.post(
        f"/v1/messages/{theirs['message_id']}/feedback?key={visitor}", json={"rating": "up"}, headers={"Origin": SHOP}
    )
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "message_not_found"
    assert await pool.fetchval("SELECT count(*) FROM feedback") == 0


async def test_rating_over_http_with_a_secret_key_and_every_bad_rating_named(
    client: Client, acme: Indexed, globex: Indexed, pool: asyncpg.Pool
) -> None:
    auth = {"Authorization": f"Bearer {acme.secret}"}
    async with client.ws_connect("/v1/chat", headers=auth) as ws:
        done = (await exchange(ws, "q", "How long does delivery take?")).end
    url = f"/v1/messages/{done['message_id']}/feedback"
    resp = await client.post(url, json={"rating": "down", "comment": "wrong price"}, headers=auth)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {
        "message_id": done["message_id"],
        "rating": "down",
        "comment": "wrong price",
        "replaced": False,
    }
    for body, status, says in [
        ({"rating": "meh"}, 400, "rating"),
        ({"rating": "up", "comment": "x" * 2001}, 400, "comment"),
        ({"rating": "up", "stars": 5}, 400, "stars"),
        ({}, 400, "rating"),
    ]:
        resp = await client.post(url, json=body, headers=auth)
        error = (await resp.json())["error"]
        assert resp.status == status and says in error["message"], (body, error)
    for bad in ("abc", "99999999999999999999", str(2**62)):
        resp = await client.post(f"/v1/messages/{bad}/feedback", json={"rating": "up"}, headers=auth)
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "message_not_found", bad
    conversation = uuid.UUID(done["conversation_id"])
    question = await pool.fetchval("SELECT id FROM messages WHERE conversation_id = $1 AND role = 'user'", conversation)
    resp = await client.post(f"/v1/messages/{question}/feedback", json={"rating": "up"}, headers=auth)
    assert resp.status == 404, "a visitor's own question is not an answer to rate"
    resp = await client.post(url, json={"rating": "up"})
    assert resp.status == 401
    resp = await client.post(url, json={"rating": "up"}, headers={"Authorization": f"Bearer {globex.secret}"})
    assert resp.status == 404, "another tenant's answer"
    assert await pool.fetchval("SELECT rating FROM feedback WHERE message_id = $1", int(done["message_id"])) == "down"


async def test_a_conversation_reads_back_with_its_ratings_only_for_who_may_see_it(
    client: Client, acme: Indexed, globex: Indexed, pool: asyncpg.Pool
) -> None:
    visitor = await public_key(pool)
    async with client.ws_connect(f"/v1/chat?key={visitor}", origin=SHOP) as ws:
        first = (await exchange(ws, "q1", "How long does delivery take?")).end
        second = await exchange(ws, "q2", "And express delivery?", first["conversation_id"])
        await ws.send_json({"type": "feedback", "id": "f", "message_id": first["message_id"], "rating": "up"})
        assert (await ws.receive_json(timeout=10))["type"] == "feedback_saved"
    url = f"/v1/conversations/{first['conversation_id']}"
    resp = await client.get(f"{url}?key={visitor}", headers={"Origin": SHOP})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Access-Control-Allow-Origin"] == SHOP, "the widget on the shop may read it"
    body = await resp.json()
    assert [(m["role"], m["content"]) for m in body["messages"]][::2] == [
        ("user", "How long does delivery take?"),
        ("user", "And express delivery?"),
    ]
    answers = [m for m in body["messages"] if m["role"] == "assistant"]
    assert [a["message_id"] for a in answers] == [first["message_id"], second.end["message_id"]]
    assert [a["rating"] for a in answers] == ["up", None]
    assert answers[1]["content"] == second.text and answers[1]["citations"] == second.sources
    secret = await client.get(url, headers={"Authorization": f"Bearer {acme.secret}"})
    assert secret.status == 200 and "Access-Control-Allow-Origin" not in secret.headers
    other_visitor = await public_key(pool)
    for resp in [
        await client.get(f"{url}?key={other_visitor}", headers={"Origin": SHOP}),
        await client.get(url, headers={"Authorization": f"Bearer {globex.secret}"}),
        await client.get("/v1/conversations/not-an-id", headers={"Authorization": f"Bearer {acme.secret}"}),
    ]:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "conversation_not_found"
    resp = await client.get(f"{url}?key={visitor}", headers={"Origin": "https://evil.example"})
    assert resp.status == 403


async def test_conversations_past_their_retention_are_deleted_by_the_server(
    aiohttp_client: AiohttpClient, settings: Settings, acme: Indexed, pool: asyncpg.Pool
) -> None:
    new = "INSERT INTO conversations (tenant_id) VALUES ($1) RETURNING id"
    old, recent = [await pool.fetchval(new, acme.tenant.id) for _ in range(2)]
    for conversation in (old, recent):
        await pool.execute(
            "INSERT INTO messages (tenant_id, conversation_id, role, content) VALUES ($1, $2, 'user', 'hi')",
            acme.tenant.id,
            conversation,
        )
    await pool.execute("UPDATE conversations SET updated_at = now() - interval '31 days' WHERE id = $1", old)
    await pool.execute("UPDATE conversations SET updated_at = now() - interval '29 days' WHERE id = $1", recent)
    kept = settings.model_copy(update={"retention": settings.retention.model_copy(update={"conversations_days": 30})})
    await aiohttp_client(create_app(kept, builtin_plugins()))  # its upkeep runs once at start, then every 10 min

    async def gone() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM conversations WHERE id = $1", old) == 0)

    await wait_until_async(gone, "the old conversation deleted", 30)
    left = await pool.fetch("SELECT conversation_id FROM messages WHERE tenant_id = $1", acme.tenant.id)
    assert [r["conversation_id"] for r in left] == [recent], "its messages went with it; the recent one stays"
