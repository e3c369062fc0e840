"""One tenant's bad text never breaks another tenant's answers (a real `bitbd serve`, two tenants, at once).

Found by an outside probe: a question holding a lone surrogate (`"refund \\ud800 policy"`) got `internal`, and,
because questions are embedded in shared batches, 9 of 16 ordinary questions of another tenant asked at the same
time failed with it. Bad text is refused at the boundary (HTTP and WebSocket) with `invalid_text`; a batch that
fails anyway fails only the question at fault (tests/bitbd/answer/test_retrieval.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitbd.text import UNSTORABLE
from tests.chat import ask
from tests.support.daemon import Daemon, bitbd, clean_env, finished, poll_job

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str, str]]:
    """A daemon, the key of tenant A (hostile) and of tenant B (ordinary, with a document indexed)."""
    root = tmp_path_factory.mktemp("badtext")
    env = clean_env(BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0", BITBD_CACHE__ENABLED="false")
    d = Daemon(root / "data", root, env=env).start()
    keys = []
    for name in ("hostile", "ordinary"):
        assert bitbd("tenant", "create", name, "--data-dir", str(d.data_dir), cwd=root, env=env).returncode == 0
        keys.append(
            bitbd("key", "create", "--tenant", name, "--data-dir", str(d.data_dir), cwd=root, env=env).stdout.strip()
        )
    for key, text in zip(
        keys,
        (
            b"# Refunds\n\nHostile Ltd refunds nothing, ever.\n",
            b"# Refunds\n\nAt Ordinary Inc, a refund is paid within 14 days of the return.\n",
        ),
        strict=True,
    ):
        job = poll_job(d, key, d.upload(key, "refunds.md", text), finished)
        assert job["status"] == "succeeded", job
    yield d, keys[0], keys[1]
    d.stop()
    assert "Traceback" not in d.output(), d.output()[-3000:]


SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
BAD_CHAR = SURROGATE | st.just("\x00")
# Ordinary words with at least one character no text can hold: a lone surrogate (a JSON "\ud800" escape) or a NUL.
# A high surrogate followed by a low one is a valid pair in JSON ("\ud800\udc00" reads as U+10000): such text
# is fine, so only text that is still bad as the server reads it counts.
BAD_TEXT = (
    st.tuples(st.text(max_size=20), st.lists(BAD_CHAR, min_size=1, max_size=3).map("".join), st.text(max_size=20))
    .map("".join)
    .filter(lambda text: UNSTORABLE.search(json.loads(json.dumps(text))) is not None)
)


async def search(session: aiohttp.ClientSession, d: Daemon, key: str, query: str) -> tuple[int, Any]:
    # json.dumps escapes a lone surrogate as "\ud800": exactly what a hostile client sends.
    async with session.post(
        d.url + "/v1/search",
        data=json.dumps({"query": query}),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    ) as r:
        return r.status, await r.json()


async def chat_ask(session: aiohttp.ClientSession, d: Daemon, key: str, ask_id: str, question: str) -> dict[str, Any]:
    async with session.ws_connect(
        d.url.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}
    ) as ws:
        end = (await ask(ws, ask_id, question)).end
        await ws.send_json({"type": "ping", "id": "alive"})  # the socket stays open after an error
        pong = json.loads((await ws.receive(timeout=10)).data)
        assert pong == {"type": "pong", "id": "alive"}, pong
        return end


async def storm(d: Daemon, hostile: str, ordinary: str, bad: list[str]) -> tuple[list[Any], list[Any]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        theirs = [search(session, d, ordinary, f"how long does a refund take {i}") for i in range(8)] + [
            chat_ask(session, d, ordinary, f"b{i}", f"when is my refund paid {i}") for i in range(8)
        ]
        ours = [search(session, d, hostile, text) for text in bad] + [
            chat_ask(session, d, hostile, f"a{i}", text) for i, text in enumerate(bad)
        ]
        results = await asyncio.gather(*theirs, *ours)
    return results[:16], results[16:]


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=st.lists(BAD_TEXT, min_size=1, max_size=4))
def test_bad_text_of_one_tenant_never_fails_another_tenants_questions(
    tenants: tuple[Daemon, str, str], bad: list[str]
) -> None:
    d, hostile, ordinary = tenants
    theirs, ours = asyncio.run(storm(d, hostile, ordinary, bad))
    for result in theirs:  # all 16 of the ordinary tenant's questions answered
        if isinstance(result, tuple):
            status, body = result
            assert status == 200 and body["hits"], body
        else:
            assert result["type"] == "done", result
    for result in ours:  # each hostile one refused, saying why
        if isinstance(result, tuple):
            status, body = result
            assert status == 400 and body["error"]["code"] == "invalid_text", body
            message = body["error"]["message"]
        else:
            assert result["type"] == "error" and result["code"] == "invalid_text", result
            assert result["id"].startswith("a"), result  # the client's own id: it knows which question failed
            message = result["message"]
        assert "surrogate" in message or "NUL" in message, message


def test_a_lone_surrogate_in_a_question_is_refused_by_name(tenants: tuple[Daemon, str, str]) -> None:
    d, hostile, _ = tenants
    status, body = asyncio.run(_one(d, hostile))
    assert status == 400 and body["error"]["code"] == "invalid_text", body
    assert "lone surrogate (\\ud800)" in body["error"]["message"] and "'query'" in body["error"]["message"], body


async def _one(d: Daemon, key: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        return await search(session, d, key, "refund \ud800 policy")
