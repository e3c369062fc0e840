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
Busy = Literal["parallel", "interrupt", "queue"]
UNINSTRUCTED = "Paris is the capital of France."  # what a model says that never got the instruction


@dataclass
class FakeLLM:
    """Streams `answer` word by word; `mode` makes it misbehave the way real servers do: `hang` (accepts, never
    answers), `garbage` (200 with HTML, not SSE), `error` (HTTP 500), `cut` (connection closed after two tokens),
    `stall` (two tokens, then silence), `trickle` (a token every 0.5 s, forever).

    Like real servers it can also: end with another `finish` ("length": the answer ran into max_tokens; None: no
    finish_reason at all, only `[DONE]`); drop system messages (`system_role=False`, like llama-cpp-python's
    `gemma` chat format: a model that never got the instruction answers `UNINSTRUCTED`); and serve one request
    at a time (`busy`): "interrupt" ends the stream in progress when a new request arrives (llama.cpp's
    default), "queue" holds the new one, sending nothing, until the one in progress has ended.
    """

    answer: str = "Items can be returned within 30 days [1]."
    pieces: list[str] | None = None  # the deltas to send instead of the answer's words, e.g. split mid-link
    mode: Mode = "ok"
    finish: str | None = "stop"
    system_role: bool = True
    busy: Busy = "parallel"
    delay: float = 0.005  # seconds between tokens
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    active: int = 0  # requests being answered now
    most_active: int = 0  # the most at once so far
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    _interrupted: set[int] = field(default_factory=set)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if not self.system_role:  # what the model reads; the request stays as it was sent
            body = {**body, "messages": [m for m in body["messages"] if m["role"] != "system"]}
        if self.busy == "queue":
            async with self._turn:
                return await self._serve(request, body)
        if self.busy == "interrupt":
            self._interrupted.update(range(len(self.requests) - 1))  # every earlier stream stops
        return await self._serve(request, body)

    async def _serve(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            return await self._stream(request, body, len(self.requests) - 1)
        finally:
            self.active -= 1

    async def _stream(self, request: web.Request, body: dict[str, Any], number: int) -> web.StreamResponse:
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "error":
            return web.json_response({"error": {"message": "model overloaded"}}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.mode == "garbage":
            await resp.write(b"<html>this is not an event stream</html>\n\n")
            return resp
        instructed = any("cite the source" in m["content"] for m in body["messages"])
        answer = self.answer if instructed else UNINSTRUCTED
        texts = (
            self.pieces
            if self.pieces is not None and instructed
            else [(" " if i else "") + word for i, word in enumerate(answer.split(" "))]
        )
        for i, text in enumerate(texts):
            if number in self._interrupted:  # a newer request took the slot: this stream just ends
                await resp.write(b"data: [DONE]\n\n")
                return resp
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "model": "fake",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if self.mode == "cut" and i == 1:
                request.transport.close()  # type: ignore[union-attr]
                return resp
            if self.mode == "stall" and i == 1:
                await asyncio.sleep(3600)
            await asyncio.sleep(0.5 if self.mode == "trickle" else self.delay)
        if self.mode == "trickle":
            await asyncio.sleep(3600)
        done = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": self.finish}]}
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
