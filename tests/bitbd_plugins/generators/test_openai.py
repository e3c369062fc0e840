"""The openai generator against a stand-in server speaking the real SSE wire format on loopback."""

from __future__ import annotations

import time
import uuid

import pytest

from bitbd.errors import PluginError
from bitbd.interfaces import GeneratorUnavailable, Hit, Passage, Turn
from bitbd.settings import Settings
from bitbd_plugins.generators.openai import OpenAIGenerator
from tests.llm import fake_llm

PASSAGES = [Passage(1, Hit(1, uuid.uuid4(), "https://acme.example/returns", "Returns", "", "Return within 30 days.",
                           0.1, 0.7))]


def generator(url: str, **config: object) -> OpenAIGenerator:
    return OpenAIGenerator({"base_url": url, "model": "fake-model", **config}, Settings())


async def collect(gen: OpenAIGenerator, history: tuple[Turn, ...] = ()) -> list[str]:
    return [piece async for piece in gen.generate("How long can I return things?", PASSAGES, history)]


async def test_streams_tokens_and_sends_numbered_sources_with_the_instruction() -> None:
    async with fake_llm() as llm:
        gen = generator(llm.url, api_key="sk-llm-secret")
        pieces = await collect(gen, (Turn("user", "Hi"), Turn("assistant", "Hello [1]")))
        await gen.close()
    assert "".join(pieces) == llm.answer and len(pieces) > 3, "tokens pass through as they arrive"
    body = llm.requests[0]
    assert body["model"] == "fake-model" and body["stream"] is True
    system, *turns, user = body["messages"]
    assert "only the numbered sources" in system["content"] and "[n]" in system["content"]
    assert "I don't know based on the available documents." in system["content"]
    assert turns == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello [1]"}]
    assert "[1] Returns (https://acme.example/returns)\nReturn within 30 days." in user["content"]
    assert user["content"].endswith("Question: How long can I return things?")
    assert llm.headers[0]["Authorization"] == "Bearer sk-llm-secret"


@pytest.mark.parametrize("mode", ["error", "garbage"])
async def test_a_failing_server_is_unavailable_before_any_token(mode: str) -> None:
    async with fake_llm(mode=mode) as llm:
        gen = generator(llm.url)
        with pytest.raises(GeneratorUnavailable):
            await collect(gen)
        await gen.close()


async def test_an_unreachable_server_is_unavailable_at_once() -> None:
    gen = generator("http://127.0.0.1:9/v1")  # discard port: connection refused
    with pytest.raises(GeneratorUnavailable, match=r"127.0.0.1:9"):
        await collect(gen)
    await gen.close()


async def test_a_hanging_server_times_out_within_the_setting() -> None:
    async with fake_llm(mode="hang") as llm:
        gen = generator(llm.url, connect_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(GeneratorUnavailable):
            await collect(gen)
        assert time.monotonic() - started < 3
        await gen.close()


async def test_a_stream_cut_midway_is_an_error_not_a_silent_half_answer() -> None:
    async with fake_llm(mode="cut") as llm:
        gen = generator(llm.url)
        pieces: list[str] = []
        with pytest.raises(PluginError, match=r"stopped in the middle"):
            async for piece in gen.generate("q", PASSAGES):
                pieces.append(piece)
        assert pieces, "the tokens before the cut were streamed"
        await gen.close()
