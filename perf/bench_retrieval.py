"""Retrieval quality: hybrid against vector-only and keyword-only, on a real documentation site.

    python -m perf.bench_retrieval [--data-dir DIR] [--pages 400] [--quick]

Crawls Python's library reference (Debian's python3.11-doc, served on loopback) into a tenant (once: the data
dir is kept, so later runs reuse it), then asks the hand-written questions of perf/questions.py (each with the
page(s) that answer it, plus two paraphrases each; and questions that name an identifier) through bitbd's own
Retriever in each mode. Prints recall@5 (an answering page among the first five hits), MRR@10 and the median
search time, and appends the table with this command to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bitbd.answer.retrieval import Mode, QueryEmbedder, Retriever
from bitbd.db.pool import migrate_database, open_pool
from bitbd.embedded.services import services
from bitbd.jobs.runtime import make_embedder
from bitbd.plugin_api import PluginContext
from bitbd.plugins import load_plugins
from bitbd.settings import AnswerSettings, CrawlerSettings, RetrievalSettings, Settings
from bitbd_plugins.stores.pgvector import PgVectorStore
from perf.corpus import PYDOCS, ensure_crawled, scratch_or, served
from perf.questions import IDENTIFIERS, QUESTIONS
from perf.report import append, markdown_table

CONFIGS: list[tuple[str, Mode, dict[str, Any]]] = [
    ("vector (HNSW, ef_search 100)", "vector", {}),
    ("vector (HNSW, ef_search 40)", "vector", {"ef_search": 40}),
    ("keyword (full text, any of the words)", "keyword", {}),
    ("hybrid, rrf_k 60", "hybrid", {"rrf_k": 60}),
    ("hybrid, rrf_k 20 (default)", "hybrid", {}),
    ("hybrid, rrf_k 20, keyword weight 0.5", "hybrid", {"keyword_weight": 0.5}),
    ("hybrid, rrf_k 10", "hybrid", {"rrf_k": 10}),
]


def quality(ranks: list[int | None]) -> list[str]:
    """recall@5 and MRR@10 of a list of ranks."""
    recall = sum(1 for r in ranks if r is not None and r <= 5) / len(ranks)
    return [f"{recall:.3f}", f"{statistics.fmean(1 / r if r else 0.0 for r in ranks):.3f}"]


def rank_of(urls: list[str], answers: tuple[str, ...]) -> int | None:
    """1-based rank of the first hit on an answering page."""
    for i, url in enumerate(urls, start=1):
        page = url.split("#")[0].rsplit("/", 1)[-1]
        if page in answers:
            return i
    return None


async def measure(settings: Settings, pages: int, quick: bool, url: str) -> tuple[list[list[str]], int, int]:
    await migrate_database(settings.database)
    pool = await open_pool(settings.database)
    plugins = load_plugins()
    try:
        config = {"urls": [f"{url}/library/index.html"], "include": ["/library/"], "max_depth": 1, "max_pages": pages}
        tenant = await ensure_crawled(settings, pool, plugins, "pydocs", config)
        documents = await pool.fetchval("SELECT count(*) FROM documents WHERE tenant_id = $1", tenant.id)
        chunks = await pool.fetchval("SELECT count(*) FROM chunks WHERE tenant_id = $1", tenant.id)
        queries = QueryEmbedder(make_embedder(settings, plugins))
        store = PgVectorStore(PluginContext("pgvector", pool=pool))
        natural = [
            (q, answers) for q, answers, paraphrases in QUESTIONS[: 5 if quick else None] for q in (q, *paraphrases)
        ]
        named = IDENTIFIERS[: 3 if quick else None]
        asked = natural + named
        vectors = [await queries.embed(q) for q, _ in asked]
        rows = []
        for label, mode, overrides in CONFIGS:
            retriever = Retriever(RetrievalSettings(**overrides), store, queries)
            ranks, times = [], []
            for (question, answers), vector in zip(asked, vectors, strict=True):
                started = time.perf_counter()
                hits = await retriever.search(tenant.id, question, 10, vector, mode)
                times.append(time.perf_counter() - started)
                ranks.append(rank_of([h.url for h in hits], answers))
            rows.append(
                [
                    label,
                    *quality(ranks),
                    *quality(ranks[: len(natural)]),
                    *quality(ranks[len(natural) :]),
                    f"{statistics.median(times) * 1000:.1f} ms",
                ]
            )
        return rows, documents, chunks
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="kept between runs, so the crawl is done once (default /tmp/bitbd-perf-pydocs; --quick: a temporary one)",
    )
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--site", type=Path, default=PYDOCS)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 pages, 5 questions, nothing appended")
    args = parser.parse_args()
    if args.quick:
        args.pages = 5
    with contextlib.ExitStack() as stack:
        data_dir = scratch_or(args.data_dir, args.quick, stack)
        url = stack.enter_context(served(args.site))
        # Nothing is answered here: --quick's fresh crawl skips the sentences ingestion prepares for answers.
        answer = AnswerSettings(prepare=not args.quick)
        base = Settings(data_dir=data_dir, crawler=CrawlerSettings(allow_private=True), answer=answer)
        running = stack.enter_context(services(base, "bench"))
        rows, documents, chunks = asyncio.run(measure(running, args.pages, args.quick, url))
    head = [
        "configuration",
        "recall@5 all",
        "MRR@10 all",
        "recall@5 natural",
        "MRR@10 natural",
        "recall@5 identifiers",
        "MRR@10 identifiers",
        "median search",
    ]
    table = markdown_table(head, rows)
    print(table)
    if not args.quick:
        n = len(QUESTIONS)
        append(
            "Retrieval quality",
            f"corpus: {documents} pages of the Python 3.11 library reference, {chunks} "
            f"chunks; natural: {n} hand-written questions x 3 phrasings = {n * 3} queries; identifiers: "
            f"{len(IDENTIFIERS)} questions naming a function or constant; perf/questions.py",
            table,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
