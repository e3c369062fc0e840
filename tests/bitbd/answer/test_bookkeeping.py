"""An answer's bookkeeping completes whatever the client does: a client closing right after `done` (as
`bitbd ask` does) used to cancel the cache write and count the answer as failed (issue 15, item 7)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.daemon import Daemon, clean_env, tenant_with_document

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
DOC = (
    b"# Returns\n\nItems can be returned within 30 days of delivery for a full refund. Sale items cannot be "
    b"returned. Gift cards are never refunded.\n"
)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Daemon, str, str]]:
    env = clean_env()
    daemon = await asyncio.to_thread(Daemon(tmp_path / "data", tmp_path, env=env).start)
    try:
        key = await asyncio.to_thread(tenant_with_document, daemon, tmp_path, env, "returns.md", DOC)
        yield daemon, key, daemon.token()
    finally:
        await asyncio.to_thread(daemon.stop)
    assert "Traceback" not in daemon.output(), daemon.output()[-3000:]


async def ask_and_leave(session: aiohttp.ClientSession, url: str, key: str, question: str) -> dict[str, Any]:
    """One connection, one question; the socket is closed the moment `done` arrives, like `bitbd ask`."""
    async with session.ws_connect(url, headers={"Authorization": f"Bearer {key}"}) as ws:
        await ws.send_json({"type": "ask", "id": "q", "question": question})
        async for msg in ws:
            event = json.loads(msg.data)
            if event["type"] in ("done", "error"):
                await ws.close()
                return dict(event)
    raise AssertionError("closed before the answer ended")


def rag_queries(metrics: str) -> dict[str, float]:
    return {
        m[1]: float(m[2]) for m in re.finditer(r'^bitbd_rag_queries_total\{success="(\w+)"\} (\S+)$', metrics, re.M)
    }


async def test_bookkeeping_survives_a_client_closing_right_after_done(served: tuple[Daemon, str, str]) -> None:
    daemon, key, admin = served
    url = daemon.url.replace("http", "ws") + "/v1/chat"
    questions = [f"How many days do I have to return item number {w}?" for w in WORDS]
    async with aiohttp.ClientSession() as session:
        firsts = [await ask_and_leave(session, url, key, q) for q in questions]
        assert all(e["type"] == "done" and not e["cached"] for e in firsts), firsts
        async with session.get(daemon.url + "/metrics") as resp:
            counted = rag_queries(await resp.text())
        assert counted.get("true") == 10 and counted.get("false", 0) == 0, counted

        seconds = [await ask_and_leave(session, url, key, q) for q in questions]
        assert all(e["type"] == "done" and e["cached"] for e in seconds), "every first answer was cached"

    _, recent = daemon.get("/v1/admin/questions?limit=50", token=admin)
    recorded = [q["question"] for q in recent["questions"]]
    assert sorted(recorded) == sorted(questions * 2), recorded
    _, tenant = daemon.get("/v1/tenant", token=key)
    _, keys = daemon.get(f"/v1/admin/tenants/{tenant['tenant']['id']}/keys", token=admin)
    assert [k["used"] for k in keys["keys"]] == [20], "each question charged exactly once"
