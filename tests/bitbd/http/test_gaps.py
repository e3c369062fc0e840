"""GET /v1/gaps and /v1/admin/gaps: what a tenant's visitors asked that its documents do not answer, grouped by
topic, with the pages that came closest; bitbd_rag_refusals_total counts the refusals."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from bitbd.client import exchange
from tests.bitbd.http.test_metrics import scrape, value
from tests.conftest import admin_headers
from tests.corpus import Indexed

Client = TestClient[Any, Any]
GIFT_CARDS = [  # acme's documents say nothing about gift cards
    "Do you sell gift cards?",
    "Can I buy a gift voucher for a friend?",
    "How much does a gift card cost?",
]
PARKING = ["Where can I park my car at your store?", "Is there free car parking at the shop?"]


async def test_unanswered_questions_become_topics_with_examples_and_the_closest_pages(
    client: Client, acme: Indexed, globex: Indexed
) -> None:
    _, before = await scrape(client)
    auth = {"Authorization": f"Bearer {acme.secret}"}
    async with client.ws_connect("/v1/chat", headers=auth) as ws:
        for i, question in enumerate(GIFT_CARDS + PARKING):
            reply = await exchange(ws, f"q{i}", question)
            assert reply.ok and "I don't know" in reply.text, (question, reply.text)
        answered = await exchange(ws, "ok", "How long does standard delivery take?")
        assert "3 to 5 days" in answered.text
        await ws.send_json({"type": "feedback", "id": "f", "message_id": answered.end["message_id"], "rating": "down"})
        assert (await ws.receive_json(timeout=10))["type"] == "feedback_saved"
    _, after = await scrape(client)
    assert value(after, "bitbd_rag_refusals_total") - value(before, "bitbd_rag_refusals_total") == 5

    resp = await client.get("/v1/gaps", headers=auth)
    assert resp.status == 200, await resp.text()
    topics = (await resp.json())["topics"]
    by_example = {t["examples"][0]: t for t in topics}
    print([(t["count"], t["examples"], t["reasons"]) for t in topics])
    gift = next(t for t in topics if any("gift" in e for e in t["examples"]))
    assert gift["count"] == 3 and sorted(gift["examples"]) == sorted(GIFT_CARDS), gift
    assert gift["reasons"]["refused"] == 3 and gift["first_seen"] <= gift["last_seen"]
    parking = next(t for t in topics if any("park" in e for e in t["examples"]))
    assert parking["count"] == 2 and parking is not gift
    assert topics[0] is gift, "the largest topic first"
    rated = next(t for t in topics if "How long does standard delivery take?" in t["examples"])
    assert rated["reasons"]["rated_down"] == 1 and rated["count"] == 1
    assert rated["closest_pages"][0]["url"] == "https://acme.example/shipping", rated
    assert all(len(t["closest_pages"]) >= 1 for t in topics), by_example

    resp = await client.get("/v1/gaps", headers={"Authorization": f"Bearer {globex.secret}"})
    assert (await resp.json())["topics"] == [], "another tenant's visitors' questions are not its gaps"
    resp = await client.get("/v1/admin/gaps?tenant=acme", headers=admin_headers())
    assert resp.status == 200 and len((await resp.json())["topics"]) == len(topics)
    resp = await client.get("/v1/admin/gaps", headers=admin_headers())
    assert resp.status == 400 and "tenant" in (await resp.json())["error"]["message"]
    resp = await client.get("/v1/gaps?days=0", headers=auth)
    assert resp.status == 400 and "days" in (await resp.json())["error"]["message"]
