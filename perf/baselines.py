"""Plain retrieval and answer baselines for perf/bench_quality.py, computed over a tenant's own stored chunks:
BM25 (bm25s), exact dense cosine with the same embedding model, their plain RRF, and the answers a trivial
answerer would give (the first three sentences of the top hit; the fact anywhere in the top three)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import bm25s  # type: ignore[import-untyped]
import numpy as np
import snowballstemmer

from bitbd.interfaces import Embedder

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])")
RRF_K = 60  # the constant of the original RRF paper; bitbd's own default differs
DEPTH = 100  # candidates per list fused by RRF


@dataclass
class Corpus:
    """A tenant's chunks as the baselines see them: the text the embedder saw, its page, its vector."""

    urls: list[str]
    texts: list[str]
    vectors: np.ndarray  # (chunks, dim), unit length
    index: bm25s.BM25


async def load_corpus(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> Corpus:
    rows = await pool.fetch(
        "SELECT d.url, d.title, c.heading_path, c.text, c.embedding::text AS v FROM chunks c "
        "JOIN documents d ON d.id = c.document_id WHERE c.tenant_id = $1 AND c.embedding IS NOT NULL "
        "ORDER BY c.id",
        tenant_id,
    )
    texts = [" > ".join([r["title"] or "", *r["heading_path"]]) + "\n\n" + r["text"] for r in rows]
    vectors = np.array([np.array(r["v"].strip("[]").split(","), dtype=np.float32) for r in rows])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = bm25s.BM25()
    index.index(bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False), show_progress=False)
    return Corpus([r["url"] for r in rows], texts, vectors, index)


def _stemmer() -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer("english")


def bm25_ranking(corpus: Corpus, query: str, depth: int = DEPTH) -> list[int]:
    tokens = bm25s.tokenize([query], stopwords="en", stemmer=_stemmer(), show_progress=False)
    if not tokens.vocab:
        return []
    found, scores = corpus.index.retrieve(tokens, k=min(depth, len(corpus.urls)), show_progress=False)
    return [int(i) for i, s in zip(found[0], scores[0], strict=True) if s > 0]


def dense_ranking(corpus: Corpus, vector: Sequence[float], depth: int = DEPTH) -> list[int]:
    similarity = corpus.vectors @ np.asarray(vector, dtype=np.float32)
    return [int(i) for i in np.argsort(-similarity)[:depth]]


def rrf(rankings: Sequence[list[int]], k: int = RRF_K) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking, start=1):
            scores[i] = scores.get(i, 0.0) + 1 / (k + rank)
    return sorted(scores, key=lambda i: (-scores[i], i))


def hit_urls(corpus: Corpus, ranking: list[int], k: int = 10) -> list[str]:
    """The pages of the first `k` chunks of a ranking: ranks count chunks, as `/v1/search`'s hits do."""
    return [corpus.urls[i] for i in ranking[:k]]


async def query_vectors(embedder: Embedder, questions: list[str]) -> list[list[float]]:
    return [list(v) for v in await embedder.embed_queries(questions)]


def lead_three(text: str) -> str:
    """The first three sentences of a chunk, as a trivial answerer would say them."""
    flat = " ".join(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    return " ".join(_SENTENCE.split(" ".join(flat.split()))[:3])
