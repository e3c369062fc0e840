"""Hybrid retrieval: vector and keyword candidates of one tenant, fused by weighted reciprocal rank, re-ranked."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bitbd.errors import Unavailable
from bitbd.interfaces import Embedder, Hit, Reranker, Vector, VectorStore
from bitbd.metrics import METRICS
from bitbd.settings import RetrievalSettings
from bitbd.timing import phase

Mode = Literal["hybrid", "vector", "keyword"]
_MAX_BATCH = 32
_RECENT = 1024  # questions' vectors remembered: the extractive generator compares the question just embedded


class QueryEmbedder:
    """Embeds questions, batching the ones that arrive together into one model call.

    Under load (many visitors at once) one call for 32 short questions costs little more than one for a single
    question, so waiting questions are embedded together instead of one after another.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._waiting: list[tuple[str, asyncio.Future[Vector]]] = []
        self._batch: list[tuple[str, asyncio.Future[Vector]]] = []  # being embedded now
        self._running: asyncio.Task[None] | None = None
        self._recent: OrderedDict[str, Vector] = OrderedDict()

    def recent(self, text: str) -> Vector | None:
        """The vector of a text embedded lately (one of the last ~1,000), or None."""
        vector = self._recent.get(text)
        if vector is not None:
            self._recent.move_to_end(text)
        return vector

    async def embed(self, text: str) -> Vector:
        """The question's vector: remembered if it was embedded lately, else embedded in one batch with the
        questions waiting alongside it; raises only the error its own embedding raised."""
        if (vector := self.recent(text)) is not None:
            return vector
        future: asyncio.Future[Vector] = asyncio.get_running_loop().create_future()
        self._waiting.append((text, future))
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:_MAX_BATCH], self._waiting[_MAX_BATCH:]
            self._batch = batch
            try:
                await self._embed(batch)
            except Exception:
                # The batch mixes questions of many callers (and tenants): one bad question must fail only itself,
                # so each is embedded again on its own, and only a question that fails alone gets the error.
                for item in batch:
                    if item[1].done():  # answered already, or its asker gave up
                        continue
                    try:
                        await self._embed([item])
                    except Exception as e:
                        if not item[1].done():
                            item[1].set_exception(e)

    async def _embed(self, batch: list[tuple[str, asyncio.Future[Vector]]]) -> None:
        with METRICS.embedding("query"):
            vectors = await self.embedder.embed_queries([text for text, _ in batch])
        for (text, future), vector in zip(batch, vectors, strict=True):
            self._recent[text] = vector
            if len(self._recent) > _RECENT:
                self._recent.popitem(last=False)
            if not future.done():
                future.set_result(vector)

    async def close(self) -> None:
        """Cancel the batch being embedded, if any (when the server stops); every question still waiting fails
        with `Unavailable` instead of waiting for ever."""
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running
        stopped = Unavailable("the server is stopping: ask again when it is back")
        for _, future in [*self._batch, *self._waiting]:
            if not future.done():
                future.set_exception(stopped)
        self._batch, self._waiting = [], []


@dataclass
class Retriever:
    """Searches one tenant's chunks: vector and keyword candidates from the store (per
    `retrieval.mode`), fused by weighted reciprocal rank, then re-ranked if a reranker is configured."""

    settings: RetrievalSettings
    store: VectorStore
    queries: QueryEmbedder
    reranker: Reranker | None = None

    async def support(self, tenant_id: uuid.UUID, question: str) -> float:
        """How well the tenant's documents support a follow-up as it was asked, without its conversation: the
        conversation only helps find passages, so an off-topic follow-up is refused like an opening question."""
        vector = await self.queries.embed(question)
        nearest = await self.store.search(tenant_id, vector, 1, self.settings.ef_search)
        return max((h.similarity for h in nearest if h.similarity is not None), default=0.0)

    async def search(
        self, tenant_id: uuid.UUID, query: str, k: int, vector: Vector | None = None, mode: Mode | None = None
    ) -> list[Hit]:
        """The ``k`` best chunks of this tenant for ``query``, best first."""
        cfg = self.settings
        mode = mode or cfg.mode
        if vector is None:
            with phase("embed"):
                vector = await self.queries.embed(query)
        pool = max(cfg.candidates, k)
        searches: list[tuple[float, Awaitable[list[Hit]]]] = []
        if mode in ("hybrid", "vector"):
            searches.append((1.0, _timed("vector", self.store.search(tenant_id, vector, pool, cfg.ef_search))))
        if mode in ("hybrid", "keyword"):
            keyword = self.store.keyword_search(tenant_id, query, vector, pool)
            searches.append((cfg.keyword_weight, _timed("keyword", keyword)))
        # Both at once, on two connections: hybrid costs the slower of the two, not their sum.
        results = await asyncio.gather(*(search for _, search in searches))
        lists = [(weight, hits) for (weight, _), hits in zip(searches, results, strict=True)]
        with phase("fuse"):
            hits = lists[0][1] if len(lists) == 1 else fuse(lists, cfg.rrf_k)
        if self.reranker is not None and hits:
            with phase("rerank"):
                hits = await self.reranker.rerank(query, hits)
        return hits[:k]


async def _timed(name: str, search: Awaitable[list[Hit]]) -> list[Hit]:
    with phase(name):
        return await search


def fuse(lists: Sequence[tuple[float, Sequence[Hit]]], rrf_k: int) -> list[Hit]:
    """Weighted reciprocal rank fusion: each list adds ``weight / (rrf_k + rank)`` to a chunk's score."""
    scores: dict[int, float] = {}
    first: dict[int, Hit] = {}
    for weight, hits in lists:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (rrf_k + rank)
            if hit.chunk_id not in first or first[hit.chunk_id].similarity is None:
                first[hit.chunk_id] = hit
    ranked = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))
    return [replace(first[chunk_id], score=round(scores[chunk_id], 6)) for chunk_id in ranked]
