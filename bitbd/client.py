"""A client of a running bitbd server: questions over the chat WebSocket, searches over HTTP. Used by the command
line (`bitbd ask`, `bitbd search`, `bitbd eval`) and the benchmarks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from bitbd.errors import BitbdError


class ServerError(BitbdError):
    """The server answered with an `error` event or an error body; the message is its own, with its code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(f"{message} ({code})", server_code=code)


@dataclass
class Answer:
    """One answered question: the deltas joined, the `citations` sources, and the `done` event."""

    text: str
    sources: list[dict[str, Any]]
    done: dict[str, Any]
    seconds: float  # from sending the question to its `done`

    @property
    def refused(self) -> bool:
        """The documents did not support an answer: the answer is the "I don't know" sentence, citing nothing."""
        return not self.sources

    @property
    def conversation_id(self) -> str:
        """The conversation's id from `done`: pass it with the next question to follow up."""
        return str(self.done["conversation_id"])


class Disconnected(BitbdError):
    """The server closed the chat socket before the answer ended."""


@dataclass
class Reply:
    """What the server sent for one ask: the deltas joined, the `citations` sources, the `done` or `error` that
    ended it, the seconds from sending the ask to that end, and to the first delta (None: there was none)."""

    text: str
    sources: list[dict[str, Any]]
    end: dict[str, Any]
    seconds: float
    first: float | None

    @property
    def ok(self) -> bool:
        """True if the ask ended with `done`, False if with `error`."""
        return bool(self.end["type"] == "done")


async def exchange(
    ws: aiohttp.ClientWebSocketResponse,
    ask_id: str,
    question: str,
    conversation: str | None = None,
    seconds: float = 120.0,
    on_delta: Callable[[str], None] | None = None,
) -> Reply:
    """Send one `ask` on an open chat socket and read until its `done` or `error`; other asks' events are
    skipped. The chat protocol's one client (docs/protocol.md): the CLI, the tests and the benchmarks use it.
    Raises TimeoutError after `seconds`, and `Disconnected` if the socket closes first."""
    message = {"type": "ask", "id": ask_id, "question": question}
    if conversation is not None:
        message["conversation_id"] = conversation
    started = time.monotonic()
    await ws.send_json(message)
    text, sources, first = "", [], None
    async with asyncio.timeout(seconds):
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            if event.get("id") not in (ask_id, None):
                continue
            if event["type"] == "delta":
                first = time.monotonic() - started if first is None else first
                text += event["text"]
                if on_delta is not None:
                    on_delta(event["text"])
            elif event["type"] == "citations":
                sources = event["sources"]
            elif event["type"] in ("done", "error"):
                return Reply(text, sources, dict(event), time.monotonic() - started, first)
    raise Disconnected(f"the server closed the connection ({ws.close_code}) before the answer ended")


@dataclass
class Client:
    """`async with Client(url, headers, params) as c:` then `await c.ask(...)`, `await c.search(...)`."""

    url: str
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0
    _session: aiohttp.ClientSession | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _asked: int = 0

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session; RuntimeError outside `async with`."""
        if self._session is None:
            raise RuntimeError("use the client in `async with`")
        return self._session

    async def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._ws.closed:
            try:
                self._ws = await self.session.ws_connect(
                    f"{self.url}/v1/chat", headers=self.headers, params=self.params, heartbeat=30
                )
            except (aiohttp.ClientError, OSError) as e:
                raise unreachable(self.url, e) from None
        return self._ws

    async def ask(
        self, question: str, conversation: str | None = None, on_delta: Callable[[str], None] | None = None
    ) -> Answer:
        """Ask one question on the client's socket and read its events up to `done`; an `error` raises."""
        ws = await self._socket()
        self._asked += 1
        reply = await exchange(ws, f"q{self._asked}", question, conversation, self.timeout, on_delta)
        if not reply.ok:
            raise ServerError(reply.end["message"], reply.end["code"])
        return Answer(reply.text, reply.sources, reply.end, reply.seconds)

    async def search(self, query: str, k: int, mode: str | None = None) -> dict[str, Any]:
        """`POST /v1/search`: the API's JSON reply; an error body raises."""
        body: dict[str, Any] = {"query": query, "k": k, **({"mode": mode} if mode is not None else {})}
        return await self._call("POST", "/v1/search", json=body)

    async def gaps(self, days: int) -> dict[str, Any]:
        """`GET /v1/gaps`: the tenant's unanswered topics of the last `days` days; an error body raises."""
        return await self._call("GET", "/v1/gaps", params={"days": str(days)})

    async def _call(
        self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            async with self.session.request(
                method, self.url + path, json=json, headers=self.headers, params={**self.params, **(params or {})}
            ) as resp:
                data: dict[str, Any] = await resp.json()
        except (aiohttp.ClientError, OSError) as e:
            raise unreachable(self.url, e) from None
        if "error" in data:
            raise ServerError(data["error"]["message"], data["error"]["code"])
        return data


def unreachable(url: str, e: Exception) -> BitbdError:
    """The error for a server that does not answer at `url`; names the exception's type, not its text."""
    return BitbdError(
        f"no bitbd server answers at {url} ({type(e).__name__}); start one with `bitbd serve`, or pass --url"
    )
