"""Hybrid retrieval over real PostgreSQL + pgvector: vector, keyword, fusion, re-ranking, tenant scope."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from bitbd.answer.retrieval import QueryEmbedder, Retriever, fuse
from bitbd.errors import Unavailable
from bitbd.interfaces import Hit, Reranker
from bitbd.plugin_api import PluginContext
from bitbd.settings import RetrievalSettings
from bitbd_plugins.embedders.fastembed import FastEmbedder
from bitbd_plugins.stores.pgvector import PgVectorStore
from tests.corpus import Indexed


def hit(chunk_id: int, similarity: float | None = None) -> Hit:
    return Hit(chunk_id, uuid.uuid4(), f"https://x.example/{chunk_id}", "t", "", "text", 0.0, similarity)


def test_fusion_rewards_chunks_both_lists_rank_high() -> None:
    vector = [hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)]
    keyword = [hit(3), hit(4), hit(1)]
    fused = fuse([(1.0, vector), (1.0, keyword)], rrf_k=60)
    assert [h.chunk_id for h in fused] == [1, 3, 2, 4]
    assert fused[0].score == round(1 / 61 + 1 / 63, 6)
    assert fused[1].similarity == 0.7, "a keyword hit keeps the similarity the vector list knew"
    # Weighting the keyword list down lets the vector order win.
    assert [h.chunk_id for h in fuse([(1.0, vector), (0.01, keyword)], 60)][:3] == [1, 2, 3]


def retriever(
    pool: asyncpg.Pool, embedder: FastEmbedder, reranker: Reranker | None = None, **settings: object
) -> Retriever:
    return Retriever(
        RetrievalSettings(**settings),
        PgVectorStore(PluginContext("pgvector", pool=pool)),
        QueryEmbedder(embedder),
        reranker,
    )


async def test_each_mode_finds_the_page_that_answers(
    pool: asyncpg.Pool, embedder: FastEmbedder, acme: Indexed, globex: Indexed
) -> None:
    r = retriever(pool, embedder)
    tenant = acme.tenant.id
    # Meaning, not words: "send back" / "bought" appear nowhere in the returns page.
    semantic = await r.search(tenant, "Can I send back something I bought?", 2, mode="vector")
    assert semantic[0].url == "https://acme.example/returns"
    assert semantic[0].similarity is not None and semantic[0].similarity > 0.3
    # A rare name the small model does not know: full-text search finds it.
    keyword = await r.search(tenant, "Zentrix", 3, mode="keyword")
    assert [h.url for h in keyword] == ["https://acme.example/warranty"]
    assert keyword[0].similarity is not None, "keyword hits carry their cosine similarity too"
    hybrid = await r.search(tenant, "how long is the Zentrix motor guarantee?", 4)
    assert hybrid[0].url == "https://acme.example/warranty"
    assert hybrid == sorted(hybrid, key=lambda h: -h.score)


async def test_no_mode_crosses_tenants(
    pool: asyncpg.Pool, embedder: FastEmbedder, acme: Indexed, globex: Indexed
) -> None:
    r = retriever(pool, embedder)
    for mode in ("vector", "keyword", "hybrid"):
        hits = await r.search(acme.tenant.id, "Globex quantum toaster launch price", 10, mode=mode)
        assert all(h.url.startswith("https://acme.example/") for h in hits), mode
    hits = await r.search(globex.tenant.id, "Globex quantum toaster launch price", 10)
    assert [h.url for h in hits] == ["https://globex.example/launch"]


class Reverse(Reranker):
    name = "reverse"

    async def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        return list(reversed(hits))


async def test_a_reranker_reorders_the_candidates(pool: asyncpg.Pool, embedder: FastEmbedder, acme: Indexed) -> None:
    plain = await retriever(pool, embedder).search(acme.tenant.id, "refund", 4)
    reranked = await retriever(pool, embedder, Reverse(PluginContext("reverse"))).search(acme.tenant.id, "refund", 4)
    assert plain[0].url == "https://acme.example/returns"
    # The reranker sees every fused candidate (here all four chunks) before the best k are kept.
    assert [h.chunk_id for h in reranked] == [h.chunk_id for h in reversed(plain)]


async def test_concurrent_questions_are_embedded_in_one_batch(embedder: FastEmbedder) -> None:
    import asyncio

    calls: list[int] = []
    original = embedder.embed_queries

    class Counting(FastEmbedder):
        async def embed_queries(self, texts: Sequence[str]) -> list:  # type: ignore[type-arg]
            calls.append(len(texts))
            return await original(texts)

    queries = QueryEmbedder(Counting(PluginContext("fastembed")))
    vectors = await asyncio.gather(*(queries.embed(f"question number {i}") for i in range(10)))
    assert len(vectors) == 10 and all(v.shape == (384,) for v in vectors)
    assert calls == [10], "questions waiting together are embedded in one model call"
    single = (await embedder.embed_queries(["question number 7"]))[0]
    assert float(single @ vectors[7]) > 0.999


async def test_a_question_the_model_cannot_embed_fails_alone_not_its_batch(embedder: FastEmbedder) -> None:
    # Found by an outside probe: one lone surrogate in a batch of questions from several tenants failed them all.
    import asyncio

    queries = QueryEmbedder(embedder)
    texts = [f"ordinary question {i}" for i in range(9)]
    texts.insert(4, "refund \ud800 policy")
    results = await asyncio.gather(*(queries.embed(t) for t in texts), return_exceptions=True)
    failed = [t for t, r in zip(texts, results, strict=True) if isinstance(r, BaseException)]
    assert failed == ["refund \ud800 policy"], results


async def test_questions_waiting_when_the_embedder_closes_fail_instead_of_hanging(embedder: FastEmbedder) -> None:
    import asyncio

    started = asyncio.Event()

    class Stuck(FastEmbedder):
        async def embed_queries(self, texts: Sequence[str]) -> list:  # type: ignore[type-arg]
            started.set()
            await asyncio.sleep(3600)
            return []

    queries = QueryEmbedder(Stuck(PluginContext("fastembed")))
    asking = [asyncio.ensure_future(queries.embed(f"question {i}")) for i in range(3)]
    await asyncio.wait_for(started.wait(), 5)
    late = asyncio.ensure_future(queries.embed("asked while the first batch runs"))
    await asyncio.sleep(0)
    await queries.close()
    results = await asyncio.wait_for(asyncio.gather(*asking, late, return_exceptions=True), 5)
    assert all(isinstance(r, Unavailable) and "stopping" in str(r) for r in results), results
