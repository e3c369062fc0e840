"""Visitors rate answers: `feedback` on the chat socket and POST /v1/messages/{message}/feedback, once per answer,
only by who may see it; a public key's conversations are its own."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from bitbd import tenancy
from bitbd.client import exchange
from tests.bitbd.http.test_metrics import scrape, value
from tests.corpus import Indexed

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
