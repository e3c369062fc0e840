"""A stand-in OpenAI-compatible server on loopback: `/v1/chat/completions` with the real SSE wire format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Mode = Literal["ok", "hang", "garbage", "error", "cut", "stall", "trickle"]


@dataclass
class FakeLLM:
    """Streams `answer` word by word; `mode` makes it misbehave the way real servers do: `hang` (accepts, never
    answers), `garbage` (200 with HTML, not SSE), `error` (HTTP 500), `cut` (connection closed after two tokens),
    `stall` (two tokens, then silence), `trickle` (a token every 0.5 s, forever)."""

    answer: str = "Items can be returned within 30 days [1]."
    pieces: list[str] | None = None  # the deltas to send instead of the answer's words, e.g. split mid-link
    mode: Mode = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def completions(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "error":
            return web.json_response({"error": {"message": "model overloaded"}}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.mode == "garbage":
            await resp.write(b"<html>this is not an event stream</html>\n\n")
            return resp
        texts = self.pieces if self.pieces is not None else \
            [(" " if i else "") + word for i, word in enumerate(self.answer.split(" "))]
        for i, text in enumerate(texts):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": "fake",
                     "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if self.mode == "cut" and i == 1:
                request.transport.close()  # type: ignore[union-attr]
                return resp
            if self.mode == "stall" and i == 1:
                await asyncio.sleep(3600)
            await asyncio.sleep(0.5 if self.mode == "trickle" else 0.005)
        if self.mode == "trickle":
            await asyncio.sleep(3600)
        done = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await resp.write(f": keep-alive\n\ndata: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        return resp


@asynccontextmanager
async def fake_llm(**kwargs: Any) -> AsyncIterator[FakeLLM]:
    llm = FakeLLM(**kwargs)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", llm.completions)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    llm.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield llm
    finally:
        await runner.cleanup()
