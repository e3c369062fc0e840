"""The openai generator against a real llama.cpp server (llama-cpp-python, a real GGUF model) on loopback, through
the real app and chat WebSocket: skipped, saying how to install them, where they are not installed.

The model is a 270M base model: its answers are poor and often run into max_tokens. What is tested is what bitbd
does with a real server's behaviour: the stream, the finish, the one slot, the markers, the death of the server.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bitbd.app import create_app
from bitbd.settings import Settings
from perf.llama import LlamaServer, llama_server, missing
from tests.bitbd.http.test_chat import ask, auth, receive
from tests.conftest import AiohttpClient, builtin_plugins
from tests.corpus import Indexed

pytestmark = pytest.mark.skipif(missing() is not None, reason=missing() or "")
QUESTION = "How long does standard delivery take?"


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with llama_server(tmp_path_factory.mktemp("llama")) as server:
        yield server


def real(settings: Settings, url: str, **openai: Any) -> Settings:
    table = {
        "base_url": url,
        "model": "gemma-3-270m",
        "max_tokens": 48,
        "connect_timeout": 20.0,
        "max_wait": 60.0,
        **openai,
    }
    return settings.model_copy(
        update={
            "answer": settings.answer.model_copy(update={"generator": "openai"}),
            "plugins": settings.plugins.model_copy(update={"openai": table}),
            "cache": settings.cache.model_copy(update={"enabled": True}),
        }
    )


def check_markers(text: str, sources: list[dict[str, Any]]) -> None:
    given = {s["n"] for s in sources}
    cited = {int(n) for n in re.findall(r"\[(\d{1,3})\]", text)}
    assert cited <= given, f"markers {sorted(cited - given)} have no source: {text!r}"


async def test_answers_stream_from_the_real_model_and_a_cut_one_is_never_cached(
    aiohttp_client: AiohttpClient, settings: Settings, acme: Indexed, llama: LlamaServer
) -> None:
    client = await aiohttp_client(create_app(real(settings, llama.url), builtin_plugins()))
    async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
        text, sources, done = await ask(ws, QUESTION, "first")
        assert done["generator"] == "openai" and text.strip(), (done, text)
        check_markers(text, sources)
        again = await ask(ws, QUESTION, "again")
        assert again[2]["cached"] is done["complete"], "cached if and only if the model finished it"
        refused, _, refusal = await ask(ws, "What is the capital of France?", "off")
        assert refused == "I don't know based on the available documents." and refusal["generator"] is None


async def test_two_visitors_at_once_both_get_the_models_answer(
    aiohttp_client: AiohttpClient, settings: Settings, acme: Indexed, llama: LlamaServer
) -> None:
    # llama.cpp's defaults: one slot, and a new request interrupts the one in progress. bitbd sends one at a time.
    client = await aiohttp_client(create_app(real(settings, llama.url), builtin_plugins()))
    async with (
        client.ws_connect("/v1/chat", headers=auth(acme.secret)) as one,
        client.ws_connect("/v1/chat", headers=auth(acme.secret)) as two,
    ):
        results = await asyncio.gather(ask(one, QUESTION, "a"), ask(two, "How can I return an item?", "b"))
    for text, sources, done in results:
        assert done["generator"] == "openai", "neither fell back to extractive"
        assert text.strip() and (done["complete"] or done["stopped"] == "length"), (done, text)
        check_markers(text, sources)


async def test_the_model_killed_mid_answer_ends_the_question_and_the_next_is_answered_without_it(
    aiohttp_client: AiohttpClient, settings: Settings, acme: Indexed, tmp_path: Path
) -> None:
    with llama_server(tmp_path) as doomed:
        client = await aiohttp_client(
            create_app(real(settings, doomed.url, max_tokens=400, connect_timeout=60.0), builtin_plugins())
        )
        async with client.ws_connect("/v1/chat", headers=auth(acme.secret)) as ws:
            await ws.send_json({"type": "ask", "id": "k", "question": "Tell me everything about shipping."})
            first = await receive(ws)
            assert first["type"] == "delta", first
            doomed.kill()
            while (event := await receive(ws))["type"] == "delta":
                pass
            assert event["type"] == "error" and event["code"] == "plugin_error", event
            text, _, done = await ask(ws, QUESTION, "after")
            assert done["generator"] == "extractive" and "3 to 5 days" in text
    async with aiohttp.ClientSession() as session, session.get(str(client.make_url("/metrics"))) as resp:
        metrics = await resp.text()
    assert 'bitbd_answers_total{complete="true",generator="extractive"}' in metrics
