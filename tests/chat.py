"""A chat client for tests against a real daemon: ask one question over a WebSocket and collect its answer."""

from __future__ import annotations

from typing import Any, NamedTuple

import aiohttp

from bitbd.client import Disconnected, exchange


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
    try:
        reply = await exchange(ws, ask_id, question, conversation or None, seconds)
    except Disconnected:
        raise AssertionError("the socket closed before the answer ended") from None
    return Asked(reply.text, reply.sources, reply.end, reply.seconds)
