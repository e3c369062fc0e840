"""The `openai` answer generator: any OpenAI-compatible `/v1/chat/completions` server, streamed (SSE).

Hosted APIs and local servers (llama.cpp, vLLM, Ollama) all speak it. The model gets numbered sources and is told
to answer only from them and cite them as [n]. The instruction goes in the user message by default: chat formats
without a system role (llama-cpp-python's `gemma`) drop a system message silently. The prompt is kept within
`max_prompt_tokens` (the passages that do not fit are cut or left out), so a slow local model can read it within
the first-token timeout; at most `max_concurrent` requests are in flight (a one-slot llama.cpp server interrupts
or queues a second one), the rest wait their turn for up to `max_wait` seconds.

When the server cannot be reached, fails before its first token or has no free slot in time, the generator raises
`GeneratorUnavailable` and bitbd answers with `extractive` instead. An answer the model did not finish (it ran
into `max_tokens`, or the stream ended without a `finish_reason`) raises `AnswerCut` after its last piece.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bitbd.plugin_api import (
    AnswerCut,
    AnswerGenerator,
    GeneratorUnavailable,
    Markers,
    Passage,
    PluginContext,
    PluginError,
    Slots,
    SlotTimeout,
    Turn,
    counting_tokenizer,
    hookimpl,
)

log = logging.getLogger(__name__)
_MAX_LINE = 1 << 20  # an SSE line longer than this is not a token
_INSTRUCTION = (
    "You answer questions from visitors of a website, using only the numbered sources {where}. "
    "After each statement, cite the source it comes from as [n], e.g. [1] or [2][3]. Do not use anything you know "
    "from elsewhere. If the sources do not contain the answer, reply exactly: {dont_know}"
)
_PER_MESSAGE = 8  # tokens a chat format adds around each message (role, separators), about
_HISTORY_SHARE = 4  # earlier turns take at most 1/4 of the prompt's room for passages and history
_MIN_PASSAGE = 40  # a passage cut shorter than this many tokens is left out instead


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
    """Seconds to connect and receive the first token (or the next one), counted from when the request is sent."""
    timeout: float = Field(60.0, gt=0)
    """Seconds the whole answer may take."""
    temperature: float = Field(0.1, ge=0, le=2)
    """Sampling temperature."""
    max_tokens: int = Field(512, ge=1)
    """Most tokens in an answer; an answer that runs into it is sent marked incomplete and never cached."""
    max_prompt_tokens: int = Field(1200, ge=300)
    """Tokens of the whole prompt at most (instruction, earlier turns, passages, question): passages that do not
    fit are cut or left out. A local model on 2 cores reads ~200 prompt tokens/s: keep this below
    connect_timeout x that rate (README, "Language models")."""
    tokenizer: str = ""
    """Path of the model's tokenizer.json, to count prompt tokens exactly; empty: counted with the embedding
    model's tokenizer (within ~15% for English prose)."""
    instruction_role: Literal["user", "system"] = "user"
    """Where the instruction goes: at the top of the user message (every chat format keeps it) or in a system
    message (formats without a system role, such as llama-cpp-python's `gemma`, drop it silently)."""
    max_concurrent: int = Field(1, ge=1, le=1024)
    """Requests in flight to the server at once; more questions wait their turn, first come first served. 1 suits
    a one-slot local server (llama.cpp's default: a second request interrupts the first or waits in its queue);
    raise it to the server's slots (llama.cpp `--parallel`, vLLM, hosted APIs)."""
    max_wait: float = Field(20.0, gt=0)
    """Seconds a question waits for a free request slot before it is answered by `extractive` instead."""


class OpenAIGenerator(AnswerGenerator):
    """Streams answers from an OpenAI-compatible chat completions server: the prompt kept within
    `max_prompt_tokens`, at most `max_concurrent` requests in flight, markers of sources not sent removed."""

    name = "openai"

    def __init__(self, ctx: PluginContext) -> None:
        super().__init__(ctx)
        self.options = ctx.options(OpenAIConfig)
        self.url = self.options.base_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None
        self.slots = Slots(self.name, self.options.max_concurrent, self.options.max_wait)
        own = counting_tokenizer(Path(self.options.tokenizer)) if self.options.tokenizer else None
        if self.options.tokenizer and own is None:
            raise PluginError(
                f"plugins.openai.tokenizer: {self.options.tokenizer} is not a file; give the path of "
                "the model's tokenizer.json, or leave it empty"
            )
        self._count: Callable[[str], int] = (
            (lambda text: len(own.encode(text, add_special_tokens=False).ids))
            if own is not None
            else (lambda text: len(text) // 4 + 1)
        )
        self._own_tokenizer = own is not None

    def backlog(self) -> dict[str, Any]:
        """The request slots' figures, for the console."""
        return self.slots.snapshot()

    def use_token_counter(self, count: Callable[[str], int]) -> None:
        """Count prompt tokens with the embedding model's tokenizer, unless
        `tokenizer` gave the model's own."""
        if not self._own_tokenizer:
            self._count = count

    def messages(
        self, question: str, passages: Sequence[Passage], history: Sequence[Turn]
    ) -> tuple[list[dict[str, str]], list[int]]:
        """The chat messages, within `max_prompt_tokens`, and the numbers of the passages they hold."""
        in_user = self.options.instruction_role == "user"
        rule = _INSTRUCTION.format(
            dont_know=self.ctx.settings.answer.dont_know, where="given below" if in_user else "the user message gives"
        )
        ask = f"Question: {question}"
        count = self._count
        room = self.options.max_prompt_tokens - count(rule) - count(ask) - 3 * _PER_MESSAGE
        turns: list[dict[str, str]] = []
        history_room = room // _HISTORY_SHARE
        for turn in reversed(history):  # the latest turns matter most
            content = turn.content[:2000]
            need = count(content) + _PER_MESSAGE
            if need > history_room:
                break
            turns.insert(0, {"role": turn.role, "content": content})
            history_room -= need
            room -= need
        while turns and turns[0]["role"] != "user":  # chat formats want turns to alternate, a user's first
            room += count(turns.pop(0)["content"]) + _PER_MESSAGE
        sources, sent = [], []
        for p in passages:
            head = f"[{p.n}] {p.hit.title or p.hit.url} ({p.hit.url})\n"
            text = _fit(p.hit.text, room - count(head) - 2, count)
            if count(text) < min(_MIN_PASSAGE, count(p.hit.text)):
                break
            sources.append(head + text)
            sent.append(p.n)
            room -= count(head + text) + 2
        content = "Sources:\n\n" + "\n\n".join(sources) + f"\n\n{ask}"
        if in_user:
            return [*turns, {"role": "user", "content": f"{rule}\n\n{content}"}], sent
        return [{"role": "system", "content": rule}, *turns, {"role": "user", "content": content}], sent

    async def generate(
        self, question: str, passages: Sequence[Passage], history: Sequence[Turn] = ()
    ) -> AsyncIterator[str]:
        """Stream the model's answer. Raises GeneratorUnavailable before the first token (no
        free slot in time, unreachable, HTTP error, no tokens), PluginError if the stream breaks after it, and
        AnswerCut after the last piece if the model did not finish."""
        messages, sent = self.messages(question, passages, history)
        body = {
            "model": self.options.model,
            "stream": True,
            "temperature": self.options.temperature,
            "max_tokens": self.options.max_tokens,
            "messages": messages,
        }
        headers = {"Accept": "text/event-stream"}
        if self.options.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {self.options.api_key.get_secret_value()}"
        timeout = aiohttp.ClientTimeout(
            total=self.options.timeout,
            sock_connect=self.options.connect_timeout,
            sock_read=self.options.connect_timeout,
        )
        markers = Markers(sent)  # the model may cite sources it was not sent: [4] when it was given [1]-[3]
        stream = _Stream()
        started = False
        try:
            async with self.slots.slot():  # the timeouts run from here: when the request is sent
                async with self.session().post(self.url, json=body, headers=headers, timeout=timeout) as resp:
                    if resp.status != 200:
                        detail = (await resp.content.read(300)).decode("utf-8", "replace").strip()
                        raise GeneratorUnavailable(f"{self.url} answered HTTP {resp.status}: {detail[:200]}")
                    async for piece in stream.deltas(resp):
                        started = True
                        if text := markers.feed(piece):
                            yield text
        except SlotTimeout as e:
            raise GeneratorUnavailable(
                f"{self.url}: no free request slot (plugins.openai.max_concurrent): {e}"
            ) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            if not started:
                raise GeneratorUnavailable(f"{self.url}: {reason}") from None
            raise PluginError(f"the language model stopped in the middle of the answer ({reason})") from None
        if not started:
            raise GeneratorUnavailable(f"{self.url} sent no tokens")
        if rest := markers.close():
            yield rest
        stream.check_finished(self.options.max_tokens)

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session, made on first use (and again after close())."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(read_bufsize=_MAX_LINE)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


class _Stream:
    """Reads an SSE chat completions stream (`data: {...}` lines, `data: [DONE]` at the end): its content pieces,
    then how it ended (the last `finish_reason` the server sent, and whether `[DONE]` came)."""

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.done = False

    async def deltas(self, resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
        async for raw in resp.content:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue  # blank separators, comments (": keep-alive"), event names
            data = line[5:].strip()
            if data == "[DONE]":
                self.done = True
                return
            event = json.loads(data)
            if "error" in event:
                raise ValueError(f"server error: {str(event['error'])[:200]}")
            for choice in event.get("choices") or []:
                self.finish_reason = choice.get("finish_reason") or self.finish_reason
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield content

    def check_finished(self, max_tokens: int) -> None:
        """Raise `AnswerCut` unless the model said it finished the answer (`finish_reason` "stop")."""
        if self.finish_reason == "length":
            raise AnswerCut(
                "length", f"the model ran into max_tokens ({max_tokens}) before it finished (plugins.openai.max_tokens)"
            )
        if self.finish_reason is None:
            ended = "with [DONE]" if self.done else "without [DONE]"
            raise AnswerCut("no_finish", f"the server ended the stream {ended} but no finish_reason: cut off")
        if self.finish_reason != "stop":
            raise AnswerCut(self.finish_reason, f"the model stopped with finish_reason {self.finish_reason!r}")


def _fit(text: str, tokens: int, count: Callable[[str], int]) -> str:
    """`text`, or as much of it as fits in `tokens`, cut at a line or word boundary."""
    if tokens <= 0:
        return ""
    total = count(text)
    while total > tokens and text:
        keep = max(1, int(len(text) * tokens / total * 0.95))
        cut = text[:keep]
        text = cut[: cut.rfind("\n")] if "\n" in cut[keep // 2 :] else cut.rsplit(" ", 1)[0] if " " in cut else ""
        text = text.rstrip()
        total = count(text)
    return text


@hookimpl
def register_generators() -> list[type[AnswerGenerator]]:
    """Hook: the `openai` generator."""
    return [OpenAIGenerator]
