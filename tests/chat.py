"""A chat client for tests against a real daemon: ask one question over a WebSocket and collect its answer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, NamedTuple

import aiohttp


class Asked(NamedTuple):
    text: str  # the deltas, joined
    sources: list[dict[str, Any]]  # from the `citations` event
    end: dict[str, Any]  # the `done` or `error` event
    seconds: float


async def ask(
    ws: aiohttp.ClientWebSocketResponse,
    ask_id: str,
    question: str,
    conversation: str | None = None,
    seconds: float = 60,
) -> Asked:
    """Send one `ask` and read until its `done` or `error` (other questions' events are skipped)."""
    started = time.monotonic()
    message = {"type": "ask", "id": ask_id, "question": question}
    if conversation:
        message["conversation_id"] = conversation
    await ws.send_json(message)
    text, sources = "", []
    async with asyncio.timeout(seconds):
        async for msg in ws:
            event = json.loads(msg.data)
            if event.get("id") != ask_id:
                continue
            if event["type"] == "delta":
                text += event["text"]
            elif event["type"] == "citations":
                sources = event["sources"]
            elif event["type"] in ("done", "error"):
                return Asked(text, sources, dict(event), time.monotonic() - started)
    raise AssertionError("the socket closed before the answer ended")
