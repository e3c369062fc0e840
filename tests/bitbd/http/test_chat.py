"""GET /v1/chat: the WebSocket protocol of docs/protocol.md, over a real loopback connection to the real app."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.settings import Settings
from tests.conftest import AiohttpClient, admin_headers, builtin_plugins
from tests.corpus import Indexed

Client = TestClient[Any, Any]
Event = dict[str, Any]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def receive(ws: aiohttp.ClientWebSocketResponse) -> Event:
    msg = await ws.receive(timeout=30)
    assert msg.type == WSMsgType.TEXT, f"expected a message, got {msg.type} {msg.data!r} {msg.extra!r}"
    event: Event = json.loads(msg.data)
    return event


async def ask(
    ws: aiohttp.ClientWebSocketResponse, question: str, ask_id: str = "c1", conversation_id: str | None = None
) -> tuple[str, list[Event], Event]:
    """Ask, then collect the answer: its text, its citations and the done message (or fail on an error)."""
    await ws.send_json(
        {
            "type": "ask",
            "id": ask_id,
            "question": question,
            **({"conversation_id": conversation_id} if conversation_id else {}),
        }
    )
    text = ""
    while True:
        event = await receive(ws)
        assert event.get("id") == ask_id, event
        if event["type"] == "delta":
            text += event["text"]
        elif event["type"] == "citations":
            sources = event["sources"]
        elif event["type"] == "done":
            return text, sources, event
        else:
            raise AssertionError(event)


async def expect_error(ws: aiohttp.ClientWebSocketResponse, code: str) -> Event:
    event = await receive(ws)
    assert event["type"] == "error" and event["code"] == code, event
    assert event["message"], "every error says what was wrong"
    return event


async def test_a_question_streams_a_cited_answer_and_is_recorded(
    client: Client, acme: Indexed, pool: asyncpg.Pool
) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        await ws.send_json({"type": "ask", "id": "q1", "question": "How many days do I have to return an item?"})
        kinds: list[str] = []
        while not kinds or kinds[-1] != "done":
            kinds.append((await receive(ws))["type"])
        # The extractive answer is written at once, so its pieces go out as one delta (bitbd/answer/events.py).
        assert kinds.count("delta") >= 1 and kinds[-2:] == ["citations", "done"], kinds
        text, sources, done = await ask(ws, "How many days do I have to return an item?", "q2")
    assert "30 days" in text and "[1]" in text
    assert (
        sources[0]
        == {
            "n": 1,
            "url": "https://acme.example/returns",
            "title": "Returns and refunds",
            "snippet": sources[0]["snippet"],
        }
        and "30 days" in sources[0]["snippet"]
    )
    assert set(done["timings_ms"]) >= {"retrieve", "generate"} and done["cached"] is True
    rows = await pool.fetch(
        "SELECT role, content, cached FROM messages WHERE tenant_id = $1 ORDER BY id", acme.tenant.id
    )
    assert [(r["role"], r["cached"]) for r in rows] == [
        ("user", False),
        ("assistant", False),
        ("user", False),
        ("assistant", True),
    ]
    assert rows[1]["content"] == text


async def test_follow_ups_continue_the_conversation(client: Client, acme: Indexed, pool: asyncpg.Pool) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        _, _, first = await ask(ws, "Do you have a warranty on the Zentrix blenders?")
        conversation = first["conversation_id"]
        # "it" alone means nothing: the conversation's earlier question makes the follow-up findable.
        text, sources, second = await ask(ws, "What does it not cover?", "c2", conversation)
    assert second["conversation_id"] == conversation
    assert sources[0]["url"] == "https://acme.example/warranty" and "misuse" in text
    assert second["cached"] is False, "a follow-up is never answered from the cache: its meaning is its context"
    count = await pool.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", conversation)
    assert count == 4


@pytest.mark.parametrize(
    "off_topic",
    [
        "What is the capital of France?",
        "Who won the football world cup in 1998?",
        "What is the airspeed velocity of an unladen swallow?",
    ],
)
async def test_an_off_topic_follow_up_is_refused_not_answered_from_earlier_turns(
    client: Client, acme: Indexed, off_topic: str
) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        text, _, first = await ask(ws, "Do you have a warranty on the Zentrix blenders?")
        assert text != "I don't know based on the available documents."
        text, sources, _ = await ask(ws, off_topic, "c2", first["conversation_id"])
    assert text == "I don't know based on the available documents." and sources == [], text


async def test_unsupported_questions_get_i_dont_know(client: Client, acme: Indexed) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        text, sources, _ = await ask(ws, "What is the airspeed velocity of an unladen swallow?")
    assert text == "I don't know based on the available documents." and sources == []


async def test_questions_in_flight_together_are_matched_by_id(client: Client, acme: Indexed) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        questions = {
            "a": "When do you ship orders?",
            "b": "How do I reach support by email?",
            "c": "How long is the blender warranty?",
        }
        for ask_id, question in questions.items():
            await ws.send_json({"type": "ask", "id": ask_id, "question": question})
        texts: dict[str, str] = dict.fromkeys(questions, "")
        done: set[str] = set()
        while len(done) < 3:
            event = await receive(ws)
            if event["type"] == "delta":
                texts[event["id"]] += event["text"]
            elif event["type"] == "done":
                done.add(event["id"])
    assert "2 business days" in texts["a"] and "help@acme.example" in texts["b"] and "2-year" in texts["c"]


async def test_a_public_key_works_only_from_its_origins(client: Client, acme: Indexed, pool: asyncpg.Pool) -> None:
    _, public = await tenancy.create_key(pool, "acme", tenancy.KeySpec("public", ["https://shop.acme.example"]))
    async with client.ws_connect(f"/v1/chat?key={public}", origin="https://shop.acme.example") as ws:
        text, _, _ = await ask(ws, "When do you ship?")
        assert "2 business days" in text
    async with client.ws_connect(f"/v1/chat?key={public}", origin="https://evil.example") as ws:
        event = await expect_error(ws, "origin_not_allowed")
        assert "https://evil.example" in event["message"]
        assert (await ws.receive()).type == WSMsgType.CLOSE and ws.close_code == 4403
    async with client.ws_connect(f"/v1/chat?key={public}") as ws:  # no Origin: not a browser
        await expect_error(ws, "origin_not_allowed")


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        ("", {}, "unauthorized"),
        ("", {"Authorization": "Bearer sk_wrong"}, "unauthorized"),
        ("?key=pk_nonsense", {}, "unauthorized"),
    ],
)
async def test_bad_credentials_are_refused_then_closed(
    client: Client, acme: Indexed, query: str, headers: dict[str, str], code: str
) -> None:
    async with client.ws_connect(f"/v1/chat{query}", headers=headers) as ws:
        await expect_error(ws, code)
        assert (await ws.receive()).type == WSMsgType.CLOSE and ws.close_code == 4401


async def test_malformed_messages_get_specific_errors_and_the_connection_stays(client: Client, acme: Indexed) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        await ws.send_str("{not json")
        await expect_error(ws, "invalid_json")
        await ws.send_bytes(b"\x00\x01")
        await expect_error(ws, "binary_not_supported")
        await ws.send_json(["ask"])
        await expect_error(ws, "invalid_message")
        await ws.send_json({"type": "shout", "id": "x"})
        assert (await expect_error(ws, "unknown_type"))["id"] == "x"
        await ws.send_json({"id": "x"})
        await expect_error(ws, "unknown_type")
        await ws.send_json({"type": "ask", "id": "x"})
        assert "question" in (await expect_error(ws, "invalid_message"))["message"]
        await ws.send_json({"type": "ask", "question": "hi"})
        assert '"id"' in (await expect_error(ws, "invalid_message"))["message"]
        await ws.send_json({"type": "ask", "id": "x", "question": "hi", "extra": 1})
        assert "extra" in (await expect_error(ws, "invalid_message"))["message"]
        await ws.send_json({"type": "ask", "id": "x", "question": "q" * 2001})
        assert "2000" in (await expect_error(ws, "question_too_long"))["message"]
        await ws.send_json({"type": "ask", "id": "x", "question": "hi", "conversation_id": "nope"})
        await expect_error(ws, "conversation_not_found")
        await ws.send_json({"type": "ping", "id": "p"})
        assert await receive(ws) == {"type": "pong", "id": "p"}
        text, _, _ = await ask(ws, "When do you ship?")  # still open, still answering
        assert "ship" in text


async def test_answers_never_use_another_tenants_documents(client: Client, acme: Indexed, globex: Indexed) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        for i, question in enumerate(
            [
                "When does the Globex quantum toaster launch and at what price?",
                "confidential launch plan March 3 499 dollars",
            ]
        ):
            text, sources, _ = await ask(ws, question, f"c{i}")
            assert "Globex" not in text and "499" not in text, text
            assert all(s["url"].startswith("https://acme.example/") for s in sources)


async def test_another_tenants_conversation_cannot_be_continued(client: Client, acme: Indexed, globex: Indexed) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(globex.secret)) as ws:
        _, _, done = await ask(ws, "When is the launch?")
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        await ws.send_json(
            {"type": "ask", "id": "x", "question": "and the price?", "conversation_id": done["conversation_id"]}
        )
        await expect_error(ws, "conversation_not_found")


async def test_a_huge_frame_is_refused_with_a_reason(client: Client, acme: Indexed) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        # The server stops reading after 64 KiB and says why; our write of the rest may then fail: that is fine.
        with contextlib.suppress(ConnectionError):
            await ws.send_str(json.dumps({"type": "ask", "id": "x", "question": "q" * (10 * 1024 * 1024)}))
        event = await expect_error(ws, "message_too_large")
        assert "65536" in event["message"]
        closing = await ws.receive()  # the close frame's code; our reply may find the socket already gone
        assert closing.type == WSMsgType.CLOSE and closing.data == 1009


async def test_revoked_key_is_refused_mid_connection(client: Client, acme: Indexed, pool: asyncpg.Pool) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        await ask(ws, "When do you ship?")
        await tenancy.revoke_key(pool, "acme", acme.secret[:11])
        await ws.send_json({"type": "ask", "id": "c2", "question": "When do you ship?"})
        await expect_error(ws, "key_revoked")
        assert (await ws.receive()).type == WSMsgType.CLOSE and ws.close_code == 4401


async def test_trial_keys_expire_and_run_out_without_overspending(
    client: Client, acme: Indexed, pool: asyncpg.Pool
) -> None:
    key, trial = await tenancy.create_key(
        pool, "acme", tenancy.KeySpec("public", ["https://try.example"], trial=True, quota=3)
    )
    async with client.ws_connect(f"/v1/chat?key={trial}", origin="https://try.example") as ws:
        # Four at once against a quota of three: exactly three are answered.
        for i in range(4):
            await ws.send_json({"type": "ask", "id": f"t{i}", "question": "When do you ship?"})
        outcomes: dict[str, str] = {}
        while len(outcomes) < 4:
            event = await receive(ws)
            if event["type"] in ("done", "error"):
                outcomes[event["id"]] = event["type"] if event["type"] == "done" else event["code"]
        assert sorted(outcomes.values()) == ["done", "done", "done", "quota_exhausted"]
    assert await pool.fetchval("SELECT used FROM api_keys WHERE id = $1", key.id) == 3
    async with client.ws_connect(f"/v1/chat?key={trial}", origin="https://try.example") as ws:
        await ws.send_json({"type": "ask", "id": "late", "question": "When do you ship?"})
        assert "This trial has ended" in (await expect_error(ws, "quota_exhausted"))["message"]
    await pool.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second', quota = NULL WHERE id = $1", key.id
    )
    async with client.ws_connect(f"/v1/chat?key={trial}", origin="https://try.example") as ws:
        assert "This trial has ended" in (await expect_error(ws, "key_expired"))["message"]


async def test_a_tenant_without_documents_is_told_so(client: Client, pool: asyncpg.Pool) -> None:
    await tenancy.create_tenant(pool, "empty")
    key, secret = await tenancy.create_key(pool, "empty", tenancy.KeySpec("secret"))
    async with client.ws_connect("/v1/chat", headers=auth(secret)) as ws:
        await ws.send_json({"type": "ask", "id": "x", "question": "Hello?"})
        await expect_error(ws, "no_documents")
    assert await pool.fetchval("SELECT used FROM api_keys WHERE id = $1", key.id) == 0, "unanswered: not charged"


async def test_the_cache_serves_paraphrases_until_the_documents_change(
    client: Client, acme: Indexed, pool: asyncpg.Pool, globex: Indexed
) -> None:
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        first, sources, done = await ask(ws, "How long does standard delivery take?")
        assert done["cached"] is False
        again, cached_sources, done = await ask(ws, "how long does standard delivery take", "c2")
        assert done["cached"] is True and again == first and cached_sources == sources
        # The same question from another tenant is never served this tenant's answer.
        async with client.ws_connect("/v1/chat", headers=auth(globex.secret)) as other:
            _, _, done = await ask(other, "How long does standard delivery take?")
            assert done["cached"] is False
        await pool.execute(
            "UPDATE chunks SET text = replace(text, '3 to 5 days', '4 to 6 days') WHERE tenant_id = $1", acme.tenant.id
        )
        changed, _, done = await ask(ws, "How long does standard delivery take?", "c3")
        assert done["cached"] is False and "4 to 6 days" in changed


async def test_rate_limit_per_key(aiohttp_client: AiohttpClient, settings: Settings, acme: Indexed) -> None:
    limited = settings.model_copy(update={"chat": settings.chat.model_copy(update={"rate_limit_per_minute": 2})})
    client = await aiohttp_client(create_app(limited, builtin_plugins()))
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        await ask(ws, "When do you ship?")
        await ask(ws, "When do you ship?", "c2")
        await ws.send_json({"type": "ask", "id": "c3", "question": "When do you ship?"})
        assert "try again in" in (await expect_error(ws, "rate_limited"))["message"]
    # Over the limit the operator's own questions still go through (admin token, no key).
    async with client.ws_connect("/v1/chat?tenant=acme", headers=admin_headers()) as ws:
        await ask(ws, "When do you ship?")


async def test_idle_connections_are_closed(aiohttp_client: AiohttpClient, settings: Settings, acme: Indexed) -> None:
    quick = settings.model_copy(update={"chat": settings.chat.model_copy(update={"idle_timeout": 0.5})})
    client = await aiohttp_client(create_app(quick, builtin_plugins()))
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        await expect_error(ws, "idle_timeout")
        assert (await ws.receive(timeout=5)).type == WSMsgType.CLOSE and ws.close_code == 4408


async def test_plain_get_is_told_to_use_websocket(client: Client) -> None:
    resp = await client.get("/v1/chat")
    assert resp.status == 400 and "WebSocket" in (await resp.json())["error"]["message"]


async def test_openai_generator_streams_and_falls_back_when_unreachable(
    aiohttp_client: AiohttpClient, settings: Settings, acme: Indexed, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.llm import fake_llm

    def with_llm(url: str) -> Settings:
        plugins = settings.plugins.model_copy(
            update={"openai": {"base_url": url, "model": "m", "connect_timeout": 1.0}}
        )
        return settings.model_copy(
            update={"answer": settings.answer.model_copy(update={"generator": "openai"}), "plugins": plugins}
        )

    async with fake_llm(answer="Standard delivery takes 3 to 5 days [1].") as llm:
        client = await aiohttp_client(create_app(with_llm(llm.url), builtin_plugins()))
        async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
            text, sources, done = await ask(ws, "How long does delivery take?")
        assert text == llm.answer and sources[0]["url"] == "https://acme.example/shipping"
        assert done["generator"] == "openai" and done["complete"] is True and "stopped" not in done
        assert "https://acme.example/shipping" in llm.requests[0]["messages"][-1]["content"]
        async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
            text, _, done = await ask(ws, "What is the capital of France?")
        assert done["generator"] is None and len(llm.requests) == 1, "refused by bitbd, the model never asked"
        stats = await (await client.get("/v1/admin/stats", headers=admin_headers())).json()
        [llm_stats] = stats["llm"]
        # One question never waited for the only slot: a few ms at most of the event loop's own delay (under CI load).
        assert 0 <= llm_stats.pop("wait_p50_ms") <= llm_stats.pop("wait_p95_ms") < 500
        assert llm_stats == {"generator": "openai", "limit": 1, "in_flight": 0, "waiting": 0}, (
            "the console sees the model's queue"
        )
    down = await aiohttp_client(create_app(with_llm("http://127.0.0.1:9/v1"), builtin_plugins()))
    async with down.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        text, _, done = await ask(ws, "How long does standard delivery take?")
    assert "3 to 5 days" in text and "[1]" in text, "the extractive answer, not an error"
    assert done["generator"] == "extractive", "done says who answered: a fallback is not the model's answer"
    assert "answer generator unavailable" in caplog.text


async def test_an_answer_the_model_did_not_finish_is_marked_and_never_cached(
    aiohttp_client: AiohttpClient, settings: Settings, acme: Indexed, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.llm import fake_llm

    async with fake_llm(
        answer="Standard delivery takes 3 to 5 days [1] and [1] and [1] and [9]", finish="length"
    ) as llm:
        plugins = settings.plugins.model_copy(update={"openai": {"base_url": llm.url, "model": "m"}})
        on = settings.model_copy(
            update={
                "answer": settings.answer.model_copy(update={"generator": "openai"}),
                "plugins": plugins,
                "cache": settings.cache.model_copy(update={"enabled": True}),
            }
        )
        client = await aiohttp_client(create_app(on, builtin_plugins()))
        question = "How long does standard delivery take?"
        async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
            for i in range(2):
                text, _, done = await ask(ws, question, f"cut{i}")
                assert done["complete"] is False and done["stopped"] == "length" and done["cached"] is False, done
                assert text == "Standard delivery takes 3 to 5 days [1] and [1] and [1] and", "no [9]: no source 9"
            assert len(llm.requests) == 2, "a cut answer is never replayed from the cache"
            llm.finish = "stop"
            for cached in (False, True):
                _, _, done = await ask(ws, question, f"whole{cached}")
                assert done["complete"] is True and done["cached"] is cached, "a finished one is"
        assert "answer incomplete, not cached" in caplog.text
        metrics = await (await client.get("/metrics")).text()
    assert 'bitbd_answers_total{complete="false",generator="openai"} 2' in metrics
    assert 'bitbd_llm_requests_waiting{generator="openai"} 0' in metrics
