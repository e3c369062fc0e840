"""Answering one question: limits, conversation, cache, retrieval, generation, citations, records."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bitbd import __version__, tenancy
from bitbd.answer import conversations
from bitbd.answer.cache import SemanticCache
from bitbd.answer.events import AnswerEvent, Citations, Delta, Done, merged
from bitbd.answer.follow_ups import leans_on_context, retrieval_query
from bitbd.answer.markdown import SAFE_MARKDOWN, sanitize
from bitbd.answer.outcome import Asked, Caller, Progress, Send, Written, public_key_id
from bitbd.answer.retrieval import Mode, QueryEmbedder, Retriever
from bitbd.answer.writing import Writer, token_counter
from bitbd.db.chunks import has_chunks
from bitbd.errors import BitbdError, InvalidRequest, NoDocuments, QuestionTooLong, RateLimited
from bitbd.interfaces import (
    AnswerGenerator,
    Embedder,
    Hit,
    Vector,
    VectorStore,
)
from bitbd.metrics import METRICS
from bitbd.plugins import Plugins
from bitbd.prepared import Prepare, attach, preparers_of
from bitbd.settings import Settings
from bitbd.timing import phase, timed
from bitbd.tracing import Span, Tracer, tracer

log = logging.getLogger(__name__)
_CLOSE_WAIT = 10.0  # seconds a stopping server gives answers still being recorded and cached


class AnswerTimeout(BitbdError):
    """An answer not complete within `chat.answer_timeout` (HTTP 504, code `timeout`)."""

    status, code = 504, "timeout"


@dataclass
class Answerer:
    """Answers questions and serves searches for every tenant: one per server, built by `create()` and
    stopped by `close()`."""

    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    retriever: Retriever
    generator: AnswerGenerator
    fallback: AnswerGenerator
    cache: SemanticCache
    namespace: str  # cache entries are only shared by identical answering set-ups
    tracer: Tracer
    preparers: list[Prepare]  # what the generators embed of a chunk: stored at ingestion (bitbd/prepared.py)
    model: str  # the embedder's model_name: prepared vectors of another are not used
    _warming: asyncio.Task[None] | None = None
    _asks: set[asyncio.Task[None]] = field(default_factory=set)  # answers being written; close() waits for them

    @classmethod
    def create(
        cls,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        plugins: Plugins,
        embedder: Embedder,
        store: VectorStore,
    ) -> Answerer:
        """Build the answerer from the settings: generator and fallback, optional reranker, retriever
        and semantic cache, whose namespace hashes everything that shapes an answer."""
        name = settings.answer.generator
        generator = plugins.build("generator", name, settings, pool=pool)
        fallback = generator
        if settings.answer.fallback != name:
            fallback = plugins.build(
                "generator", settings.answer.fallback, settings, pool=pool, setting="answer.fallback"
            )
        reranker = None
        if settings.retrieval.reranker:
            reranker = plugins.build("reranker", settings.retrieval.reranker, settings, pool=pool)
        queries = QueryEmbedder(embedder)
        retriever = Retriever(settings.retrieval, store, queries, reranker)

        async def embed_sentences(texts: Sequence[str]) -> list[Vector]:
            known = {t: v for t in texts if (v := queries.recent(t)) is not None}  # the question, just embedded
            missing = [t for t in dict.fromkeys(texts) if t not in known]
            if missing:
                with METRICS.embedding("sentences"):
                    known.update(zip(missing, await embedder.embed_queries(missing), strict=True))
            return [known[t] for t in texts]

        count = token_counter(embedder)
        for one in {generator, fallback}:
            one.use_embedder(embed_sentences)
            one.use_token_counter(count)
        table = {k: v for k, v in settings.plugins.plugin_table(name).items() if k != "api_key"}
        fingerprint = json.dumps(
            [
                __version__,
                SAFE_MARKDOWN,
                settings.retrieval.model_dump(),
                settings.answer.model_dump(),
                table,
                embedder.model_name,
            ],
            sort_keys=True,
            default=str,
        )
        namespace = f"{name}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:12]}"
        cache = SemanticCache(redis, settings.cache, settings.jobs.queue_prefix)
        preparers = preparers_of(settings, plugins)
        return cls(
            settings,
            pool,
            redis,
            retriever,
            generator,
            fallback,
            cache,
            namespace,
            tracer(settings),
            preparers,
            embedder.model_name,
        )

    def backlogs(self) -> list[dict[str, Any]]:
        """The console's view of the requests waiting for and in flight to the generators' backends."""
        generators = [self.generator] if self.fallback is self.generator else [self.generator, self.fallback]
        return [b for g in generators if (b := g.backlog()) is not None]

    def warm_up(self) -> None:
        """Load the query model in the background, once: called when a chat connection opens, so the visitor's
        first question (typed seconds later) does not wait ~0.5 s for it, while an idle server stays small."""
        if self._warming is None:
            self._warming = asyncio.create_task(self._warm())

    async def _warm(self) -> None:
        try:
            await self.retriever.queries.embed("warm up")
        except Exception as e:  # the first question will say what is wrong
            log.warning("embedding model failed to load", extra={"error": f"{type(e).__name__}: {e}"})

    async def close(self) -> None:
        """Stop answering: wait up to 10 s for answers still being recorded and cached (then cancel
        them), and close the query embedder and the generators."""
        if self._warming is not None:
            self._warming.cancel()
        if self._asks:  # their clients are gone by now (sockets close first): only bookkeeping is left
            _, pending = await asyncio.wait(set(self._asks), timeout=_CLOSE_WAIT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.retriever.queries.close()
        await self.generator.close()
        if self.fallback is not self.generator:
            await self.fallback.close()

    async def search(self, caller: Caller, query: str, k: int, mode: Mode | None = None) -> list[Hit]:
        """`POST /v1/search`: the tenant's best chunks for `query`."""
        query = self.check_question(query, "query")
        await self.limit(caller)
        hits = await self.retriever.search(caller.tenant_id, query, k, mode=mode)
        if not hits:
            await self.refuse_if_empty(caller.tenant_id)
        return hits

    def check_question(self, text: str, what: str = "question") -> str:
        """The question (or search query, as `what` names it) stripped; raises InvalidRequest
        if it is empty or holds a NUL, QuestionTooLong if it is over `answer.max_question_chars`."""
        text = text.strip()
        if not text:
            raise InvalidRequest(f"the {what} is empty; send some words to look for")
        if "\x00" in text:
            raise InvalidRequest(f"the {what} holds a NUL character (\\u0000); remove it")
        limit = self.settings.answer.max_question_chars
        if len(text) > limit:
            raise QuestionTooLong(
                f"the {what} is {len(text)} characters long; the limit is {limit} "
                "(answer.max_question_chars): ask something shorter"
            )
        return text

    async def limit(self, caller: Caller) -> None:
        """Per-key rate limit, in fixed one-minute windows shared by every server process (Redis)."""
        per_minute = self.settings.chat.rate_limit_per_minute
        if not per_minute or caller.key is None:
            return
        now = time.time()
        key = f"{self.settings.jobs.queue_prefix}:rate:{caller.key.id}:{int(now // 60)}"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        if count > per_minute:
            wait = 60 - int(now % 60)
            raise RateLimited(
                f"this key asked {per_minute} questions this minute, its limit "
                f"(chat.rate_limit_per_minute); try again in {wait} s"
            )

    async def refuse_if_empty(self, tenant_id: uuid.UUID) -> None:
        """Raise NoDocuments if the tenant has no chunks at all, to say why nothing was
        found."""
        if not await has_chunks(self.pool, tenant_id):
            raise NoDocuments(
                "this tenant has no documents yet, so there is nothing to answer from; ingest its "
                "website or files first (`bitbd ingest`, POST /v1/sources or POST /v1/uploads)"
            )

    async def ask(self, caller: Caller, question: str, conversation_id: str | None) -> AsyncGenerator[AnswerEvent]:
        """Answer one question: `Delta` events, then `Citations`, then `Done`; errors raise `BitbdError`.

        The answer is written in a task of the service's own, which hands its events to this iterator. A client
        that leaves (its task cancelled, or the iteration closed) before the answer is complete stops it there:
        not charged, not counted. Once it is complete, its bookkeeping (record the message, metrics, cache) runs to
        the end whatever the client does, and `close()` waits for it: `bitbd ask` closes right after `done`, which
        used to lose the cache entry and count the answer as failed.
        """
        events: asyncio.Queue[AnswerEvent | None] = asyncio.Queue()
        state = Progress()

        async def send(event: AnswerEvent) -> None:
            events.put_nowait(event)

        task = asyncio.create_task(self._counted(caller, question, conversation_id, send, state))
        self._asks.add(task)
        task.add_done_callback(self._forget)
        task.add_done_callback(lambda _: events.put_nowait(None))
        try:
            taken: AnswerEvent | None = None  # an event taken from the queue after merged deltas, said next
            while (event := taken if taken is not None else await events.get()) is not None:
                taken = None
                if isinstance(event, Delta):
                    event, taken = merged(event, events)
                yield event
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        except (asyncio.CancelledError, GeneratorExit):
            if not state.complete:
                task.cancel()
            raise

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._asks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # retrieved here too: its client may be gone
            log.debug("answer ended with an error", extra={"error": type(task.exception()).__name__})

    async def _counted(
        self, caller: Caller, question: str, conversation_id: str | None, send: Send, state: Progress
    ) -> None:
        success: str | None = "false"
        try:
            with timed() as phases:  # where the answer's time went, said in its `done` (timings_ms)
                await self._ask(caller, question, conversation_id, send, state, phases)
            success = "true"
        except asyncio.CancelledError:
            if not state.complete:
                success = None  # the client left before the answer was written: not a failure of ours
            raise
        finally:
            if success is not None:
                METRICS.rag_queries.inc({"success": success})

    async def _ask(
        self,
        caller: Caller,
        question: str,
        conversation_id: str | None,
        send: Send,
        state: Progress,
        phases: dict[str, float],
    ) -> None:
        started = time.monotonic()
        question = self.check_question(question)
        conv = conversations.parse_id(conversation_id) if conversation_id else None
        history = (
            await conversations.recent_turns(
                self.pool, caller.tenant_id, conv, self.settings.answer.history_turns, public_key_id(caller)
            )
            if conv
            else []
        )
        # The key is charged while the question is embedded and searched: the answer waits for the charge only
        # before its first word (an UPDATE of one row that every visitor of a widget's key shares, so under load it
        # queued 6 ms at the median ahead of everything else). A refused key's search is wasted, that is all.
        charging = asyncio.create_task(self._charge(caller))
        asked = Asked(caller, question, conv, history, send, charging, state, started, phases)
        answered = False
        with self.tracer.span("question", input=question, metadata={"tenant": str(caller.tenant_id)}) as trace:
            try:
                limit = self.settings.chat.answer_timeout
                try:
                    async with asyncio.timeout(limit) as deadline:
                        state.deadline = deadline
                        store = await self._answer_and_record(asked, trace)
                except TimeoutError:
                    if state.complete:
                        raise
                    raise AnswerTimeout(
                        f"the answer took longer than {limit:g} s (chat.answer_timeout); try "
                        "again, or ask something narrower"
                    ) from None
                answered = True  # `done` is sent: from here on nothing is refunded, even if the client leaves
                if store is not None:
                    await store()
            finally:
                if not answered:
                    await asyncio.shield(self._refund(caller, asked.charging))

    async def _charge(self, caller: Caller) -> None:
        """Apply the key's rate limit and charge it for one answer; raises what refuses it."""
        with phase("charge"):
            await self.limit(caller)
            if caller.key is not None:
                await tenancy.charge(self.pool, caller.key)

    async def _refund(self, caller: Caller, charging: asyncio.Task[None]) -> None:
        """Give the charge back for an answer that was not given, once it has been made (if it was)."""
        try:
            await charging
        except Exception:
            return  # refused: nothing was charged (and its error, if it was not said, is the answer's own)
        if caller.key is not None:
            await tenancy.refund(self.pool, caller.key)

    async def _version(self, caller: Caller, opening: bool) -> int:
        """The tenant's corpus version, which keys its cache entries; not read when nothing will be cached."""
        if not (opening and self.settings.cache.enabled):
            return 0
        return int(await self.pool.fetchval("SELECT corpus_version FROM tenants WHERE id = $1", caller.tenant_id))

    async def _answer_and_record(self, asked: Asked, trace: Span) -> Callable[[], Awaitable[None]] | None:
        """Everything after the charge, up to `done`; returns how to store the answer in the cache, if it may be."""
        caller, question, history, send = asked.caller, asked.question, asked.history, asked.send
        query = retrieval_query(question, history, self.settings.answer.history_turns)
        # A follow-up means what its conversation makes it mean ("what does it not cover?"): only opening
        # questions are answered from, and stored in, the cache.
        opening = not history
        hits: Sequence[Hit] = []
        with self.tracer.span("retrieve", input=query) as span:
            with phase("embed"):
                vector, version = await asyncio.gather(
                    self.retriever.queries.embed(query), self._version(caller, opening)
                )
            cached = await self.cache.get(caller.tenant_id, self.namespace, version, vector, query) if opening else None
            if cached is None:
                hits = await self.retriever.search(caller.tenant_id, query, self.settings.retrieval.k, vector)
                with phase("attach"):
                    hits = await attach(self.pool, caller.tenant_id, hits, self.preparers, self.model)
                METRICS.rag_chunks.observe({}, len(hits))
                if not hits:
                    await self.refuse_if_empty(caller.tenant_id)
            span.update(
                output=[h.url for h in hits],
                metadata={"cached": cached is not None, "hits": len(hits), "mode": self.settings.retrieval.mode},
            )
        await asked.charging  # nothing of the answer is said to a key that is refused
        retrieved = time.monotonic()
        with self.tracer.span("generate", metadata={"generator": self.generator.name}) as span:
            if cached is not None:
                refused = cached.answer.strip() == self.settings.answer.dont_know.strip()
                written = Written(
                    sanitize(cached.answer), cached.sources, None if refused else self.generator.name, cacheable=False
                )
                await send(Delta(written.answer))  # entries of older versions too
            else:
                support = (
                    await self.retriever.support(caller.tenant_id, question)
                    if history and hits and not leans_on_context(question)
                    else None
                )
                writer = Writer(self.generator, self.fallback, self.settings.answer)
                written = await writer.write(question, hits, history, send, support)
                METRICS.answers.inc(
                    {"generator": written.generator or "none", "complete": str(written.stopped is None).lower()}
                )
            answer, sources = written.answer, written.sources
            span.update(
                output=answer,
                metadata={
                    "citations": len(sources),
                    "answered_by": written.generator,
                    "complete": written.stopped is None,
                },
            )
        generated = time.monotonic()
        asked.state.completed()  # from here on the client leaving changes nothing, and no timeout cuts the bookkeeping
        started = asked.started
        conv, message_id = await conversations.record(
            self.pool,
            caller.tenant_id,
            asked.conversation,
            caller.key.id if caller.key else None,
            question,
            answer,
            sources,
            cached is not None,
            int((generated - started) * 1000),
            refused := answer.strip() == self.settings.answer.dont_know.strip(),
            written.support,
        )
        if refused:
            METRICS.rag_refusals.inc({})
        await send(Citations(sources))
        timings = {
            "retrieve": round((retrieved - started) * 1000),
            "generate": round((generated - retrieved) * 1000),
            "total": round((time.monotonic() - started) * 1000),
            **{name: round(ms) for name, ms in asked.phases.items()},
        }
        await send(
            Done(
                str(conv),
                str(message_id),
                cached is not None,
                written.generator,
                written.stopped is None,
                written.stopped,
                timings,
            )
        )
        for name, seconds in (
            ("retrieve", retrieved - started),
            ("generate", generated - retrieved),
            ("total", time.monotonic() - started),
        ):
            METRICS.rag_latency.observe({"phase": name}, seconds)
        trace.update(
            output=answer, metadata={"cached": cached is not None, "citations": len(sources), "conversation": str(conv)}
        )
        if not (written.cacheable and opening):
            return None

        async def store() -> None:
            try:
                await self.cache.put(caller.tenant_id, self.namespace, version, vector, query, answer, sources)
            except Exception as e:  # answered already; the cache is only a shortcut
                log.warning("could not store the answer in the cache", extra={"error": type(e).__name__})

        return store
