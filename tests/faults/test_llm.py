"""An LLM endpoint that misbehaves under a real `bitbd serve` (answer.generator = "openai", pointed at a stand-in
speaking the real SSE wire format on loopback): every question still ends, within the generator's timeouts,
in the extractive answer (nothing streamed yet) or a specific error (the model broke off mid-answer); the chat
connection and the server stay up, and a healthy LLM answers again on the same connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.chat import ask
from tests.llm import FakeLLM, Mode, fake_llm
from tests.support.daemon import Daemon, clean_env, tenant_with_document

RETURNS = (
    b"# Returns\n\nItems can be returned within 30 days of delivery for a full refund. Sale items cannot be returned.\n"
)

CONNECT_TIMEOUT, TIMEOUT = 1.0, 4.0
QUESTION = "How many days do I have to return an item?"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[FakeLLM, Daemon, str]]:
    async with fake_llm(answer="You have 30 days to return an item [1].") as llm:
        env = clean_env(
            BITBD_ANSWER__GENERATOR="openai",
            BITBD_CACHE__ENABLED="false",
            BITBD_PLUGINS__OPENAI__BASE_URL=llm.url,
            BITBD_PLUGINS__OPENAI__MODEL="fake",
            BITBD_PLUGINS__OPENAI__CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
            BITBD_PLUGINS__OPENAI__TIMEOUT=str(TIMEOUT),
        )
        daemon = await asyncio.to_thread(Daemon(tmp_path / "data", tmp_path, env=env).start)
        try:
            key = await asyncio.to_thread(tenant_with_document, daemon, tmp_path, env, "returns.md", RETURNS)
            yield llm, daemon, key
        finally:
            await asyncio.to_thread(daemon.stop)
        assert "Traceback" not in daemon.output(), daemon.output()[-3000:]


async def test_a_misbehaving_llm_never_leaves_a_question_unanswered(served: tuple[FakeLLM, Daemon, str]) -> None:
    llm, daemon, key = served
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            daemon.url.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}
        ) as ws,
    ):
        text, _, end, _ = await ask(ws, "healthy", QUESTION)
        assert end["type"] == "done" and text == llm.answer, "the LLM's own words, streamed"

        # Nothing streamed yet: the question is answered from the documents instead (extractive), in time.
        fallbacks: list[tuple[Mode, float]] = [("error", 2.0), ("garbage", 2.0), ("hang", CONNECT_TIMEOUT + 2)]
        for mode, within in fallbacks:
            llm.mode = mode
            asked = len(llm.requests)
            text, sources, end, took = await ask(ws, mode, QUESTION)
            assert len(llm.requests) == asked + 1, "the LLM was asked (no cache in between)"
            assert end["type"] == "done", (mode, end)
            assert text != llm.answer and "30 days" in text and "[1]" in text, (mode, text)
            assert sources and sources[0]["n"] == 1, (mode, sources)
            assert took < within, f"{mode}: fell back after {took:.1f} s"

        # Broken off after tokens were streamed: a specific error, never a silent half answer.
        breaks: list[tuple[Mode, float]] = [("cut", 2.0), ("stall", CONNECT_TIMEOUT + 2), ("trickle", TIMEOUT + 2)]
        for mode, within in breaks:
            llm.mode = mode
            text, _, end, took = await ask(ws, mode, QUESTION)
            assert end["type"] == "error" and end["code"] == "plugin_error", (mode, end)
            assert "stopped in the middle" in end["message"], end["message"]
            assert text, f"{mode}: the tokens before the break were streamed"
            assert took < within, f"{mode}: ended after {took:.1f} s"

        llm.mode = "ok"
        text, _, end, _ = await ask(ws, "recovered", QUESTION)
        assert end["type"] == "done" and text == llm.answer, "the same connection answers again"
    status, _ = await asyncio.to_thread(daemon.get, "/readyz")
    assert status == 200 and daemon.proc is not None and daemon.proc.poll() is None
