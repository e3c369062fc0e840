"""The `openai` answer generator: any OpenAI-compatible `/v1/chat/completions` server, streamed (SSE).

Hosted APIs and local servers (llama.cpp, vLLM, Ollama) all speak it. The model gets numbered sources and is told
to answer only from them and cite them as [n]. When the server cannot be reached, or fails before its first token,
the generator raises `GeneratorUnavailable` and bitbd answers with `extractive` instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bitbd.errors import PluginError
from bitbd.hookspecs import hookimpl
from bitbd.interfaces import AnswerGenerator, GeneratorUnavailable, Passage, Turn
from bitbd.settings import plugin_settings

log = logging.getLogger(__name__)
_MAX_LINE = 1 << 20  # an SSE line longer than this is not a token
_INSTRUCTION = (
    "You answer questions from visitors of a website, using only the numbered sources the user message gives. "
    "After each statement, cite the source it comes from as [n], e.g. [1] or [2][3]. Do not use anything you know "
    "from elsewhere. If the sources do not contain the answer, reply exactly: {dont_know}"
)


class OpenAIConfig(BaseModel):
    """`[plugins.openai]`."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = "http://127.0.0.1:11434/v1"
    """Base URL of the API, up to and including /v1."""
    model: str = "llama3.2"
    """Model name the server knows."""
    api_key: SecretStr = SecretStr("")
    """Bearer token; empty sends none."""
    connect_timeout: float = Field(10.0, gt=0)
    """Seconds to connect and receive the first token."""
    timeout: float = Field(60.0, gt=0)
    """Seconds the whole answer may take."""
    temperature: float = Field(0.1, ge=0, le=2)
    """Sampling temperature."""
    max_tokens: int = Field(512, ge=1)
    """Most tokens in an answer."""


class OpenAIGenerator(AnswerGenerator):
    name = "openai"

    def __init__(self, config: dict[str, Any], settings: Any) -> None:
        super().__init__(config, settings)
        self.options = plugin_settings(OpenAIConfig, config, "openai")
        self.url = self.options.base_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    def messages(self, question: str, passages: Sequence[Passage], history: Sequence[Turn]) -> list[dict[str, str]]:
        sources = "\n\n".join(f"[{p.n}] {p.hit.title or p.hit.url} ({p.hit.url})\n{p.hit.text}" for p in passages)
        system = _INSTRUCTION.format(dont_know=self.settings.answer.dont_know)
        turns = [{"role": t.role, "content": t.content[:2000]} for t in history]
        return [{"role": "system", "content": system}, *turns,
                {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {question}"}]

    async def generate(self, question: str, passages: Sequence[Passage], history: Sequence[Turn] = ()
                       ) -> AsyncIterator[str]:
        body = {"model": self.options.model, "stream": True, "temperature": self.options.temperature,
                "max_tokens": self.options.max_tokens, "messages": self.messages(question, passages, history)}
        headers = {"Accept": "text/event-stream"}
        if self.options.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self.options.api_key.get_secret_value()}"
        timeout = aiohttp.ClientTimeout(total=self.options.timeout, sock_connect=self.options.connect_timeout,
                                        sock_read=self.options.connect_timeout)
        started = False
        try:
            async with self.session().post(self.url, json=body, headers=headers, timeout=timeout) as resp:
                if resp.status != 200:
                    detail = (await resp.content.read(300)).decode("utf-8", "replace").strip()
                    raise GeneratorUnavailable(f"{self.url} answered HTTP {resp.status}: {detail[:200]}")
                async for piece in _deltas(resp):
                    started = True
                    yield piece
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if not started:
                raise GeneratorUnavailable(f"{self.url}: {reason}") from None
            raise PluginError(f"the language model stopped in the middle of the answer ({reason})") from None
        if not started:
            raise GeneratorUnavailable(f"{self.url} sent no tokens")

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(read_bufsize=_MAX_LINE)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _deltas(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The content pieces of an SSE chat completions stream (`data: {...}` lines, `data: [DONE]` at the end)."""
    async for raw in resp.content:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue  # blank separators, comments (": keep-alive"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            raise ValueError(f"server error: {str(event['error'])[:200]}")
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                yield content


@hookimpl
def register_generators() -> list[type[AnswerGenerator]]:
    return [OpenAIGenerator]
