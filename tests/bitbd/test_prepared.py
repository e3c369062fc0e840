"""Vectors prepared at ingestion for the answer generator (bitbd/prepared.py): stored with each chunk, found by
text, used instead of embedding while a visitor waits; chunks stored before are prepared in the background."""

from __future__ import annotations

import uuid

import asyncpg
import numpy as np

from bitbd import prepared
from bitbd.answer.retrieval import QueryEmbedder
from bitbd.interfaces import Hit, Vector
from bitbd.plugin_api import PluginContext
from bitbd.settings import AnswerSettings, Settings
from bitbd_plugins.embedders.fastembed import FastEmbedder
from bitbd_plugins.generators.extractive import ExtractiveGenerator
from tests.bitbd.http.test_metrics import scrape, value
from tests.chat import ask
from tests.conftest import builtin_plugins
from tests.ingesting import Client, crawl_pages
from tests.site import Site


def unit(rng: np.random.Generator, n: int, d: int = 384) -> list[Vector]:
    m = rng.normal(size=(n, d)).astype(np.float32)
    return list(m / np.linalg.norm(m, axis=1, keepdims=True))


def test_packed_vectors_come_back_by_text_within_quantisation() -> None:
    rng = np.random.default_rng(1)
    texts = ["Heading: one sentence.", "Another sentence here.", "A third."]
    vectors = unit(rng, 3)
    blob = prepared.pack(texts, vectors, "m")
    assert len(blob) == 4 + 3 * (8 + 4 + 384)
    back = prepared.unpack(blob)
    assert set(back) == {prepared.digest(t, "m") for t in texts}
    q = unit(rng, 1)[0]
    for text, vector in zip(texts, vectors, strict=True):
        assert abs(float(np.dot(q, back[prepared.digest(text, "m")])) - float(np.dot(q, vector))) < 0.003
    assert prepared.unpack(b"") == {} and prepared.pack([], [], "m") == b""
    assert prepared.unpack(blob[:-1]) == {}, "a damaged value is ignored, not misread"


def test_preparers_follow_the_generators_and_the_setting() -> None:
    plugins = builtin_plugins()
    [prepare] = prepared.preparers_of(Settings(), plugins)
    text = "# Returns\nYou can return any item within 30 days. Refunds are paid within 5 days."
    assert prepare(text) == ExtractiveGenerator.prepare(text) and len(prepare(text)) == 2
    off = Settings(answer=AnswerSettings(prepare=False))
    assert prepared.preparers_of(off, plugins) == []
    openai_only = Settings(answer=AnswerSettings(generator="openai", fallback="openai"))
    assert prepared.preparers_of(openai_only, plugins) == [], "a generator that names nothing prepares nothing"


async def test_a_crawled_page_is_answered_without_embedding_a_sentence(
    ingest: tuple[Client, str], site: tuple[Site, str], pool: asyncpg.Pool
) -> None:
    client, key = ingest
    _, base = site
    auth = {"Authorization": f"Bearer {key}"}
    assert (await crawl_pages(client, key, base + "/volcanoes"))["status"] == "succeeded"
    rows = await pool.fetch("SELECT text, prepared FROM chunks")
    embedder = FastEmbedder(PluginContext("fastembed"))
    for row in rows:
        texts = ExtractiveGenerator.prepare(row["text"])
        stored = prepared.unpack(row["prepared"])
        assert texts and len(stored) == len(texts)
        for text, exact in zip(texts, await embedder.embed(texts), strict=True):
            assert float(np.dot(stored[prepared.digest(text, embedder.model_name)], exact)) > 0.999

    chunk = await pool.fetchrow("SELECT id, tenant_id, document_id, text FROM chunks LIMIT 1")
    hit = Hit(chunk["id"], chunk["document_id"], "u", "t", "", chunk["text"], 1.0, 0.5)
    preparers = prepared.preparers_of(Settings(), builtin_plugins())
    [found] = await prepared.attach(pool, chunk["tenant_id"], [hit], preparers, embedder.model_name)
    assert set(found.prepared) == set(ExtractiveGenerator.prepare(chunk["text"]))
    [other] = await prepared.attach(pool, chunk["tenant_id"], [hit], preparers, "another-model")
    assert other.prepared == {}, "vectors of another model (before a re-embed) are never handed over"
    [foreign] = await prepared.attach(pool, uuid.uuid4(), [hit], preparers, embedder.model_name)
    assert foreign.prepared == {}, "only the tenant's own chunks"

    _, before = await scrape(client)
    async with client.ws_connect("/v1/chat", headers=auth) as ws:
        asked = await ask(ws, "a1", "How do scientists warn of volcanic eruptions in advance?")
    assert asked.end["type"] == "done" and "Seismometers" in asked.text, asked
    _, after = await scrape(client)
    sentences = "bitbd_embed_seconds_count"
    assert value(after, sentences, kind="query") > value(before, sentences, kind="query")  # the question (and warm-up)
    assert value(after, sentences, kind="sentences") == value(before, sentences, kind="sentences"), (
        "neither the sentences (stored) nor the question (just embedded for the search) were embedded again"
    )


async def test_chunks_stored_without_are_prepared_in_the_background(
    ingest: tuple[Client, str], site: tuple[Site, str], pool: asyncpg.Pool
) -> None:
    client, key = ingest
    _, base = site
    assert (await crawl_pages(client, key, base + "/volcanoes", base + "/bread"))["status"] == "succeeded"
    made = dict(await pool.fetch("SELECT id, prepared FROM chunks"))
    await pool.execute("UPDATE chunks SET prepared = NULL")  # as sql/0017 leaves chunks stored before it
    version = await pool.fetchval("SELECT corpus_version FROM tenants")
    embedder = FastEmbedder(PluginContext("fastembed"))
    preparers = prepared.preparers_of(Settings(), builtin_plugins())
    assert await prepared.backfill(pool, [], embedder) == 0, "nothing is marked done when nothing is wanted"
    assert await prepared.backfill(pool, preparers, embedder, limit=1) == 1
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE prepared IS NULL") == len(made) - 1
    assert await prepared.backfill(pool, preparers, embedder) == len(made) - 1
    assert await prepared.backfill(pool, preparers, embedder) == 0
    assert await pool.fetchval("SELECT corpus_version FROM tenants") == version, "the answer cache stays valid"
    await pool.execute("UPDATE chunks SET text = text || '.' WHERE id = $1", min(made))
    assert await pool.fetchval("SELECT corpus_version FROM tenants") == version + 1, "a changed chunk still bumps it"
    again = dict(await pool.fetch("SELECT id, prepared FROM chunks"))
    for chunk_id, blob in made.items():
        old, new = prepared.unpack(blob), prepared.unpack(again[chunk_id])
        assert old.keys() == new.keys()
        assert all(float(np.dot(old[k], new[k])) > 0.999 for k in old)


async def test_the_question_just_embedded_is_not_embedded_again() -> None:
    embedder = FastEmbedder(PluginContext("fastembed"))
    calls: list[list[str]] = []
    real = embedder.embed_queries

    async def counting(texts: object) -> list[Vector]:
        calls.append(list(texts))  # type: ignore[call-overload]
        return await real(texts)  # type: ignore[arg-type]

    embedder.embed_queries = counting  # type: ignore[method-assign]
    queries = QueryEmbedder(embedder)
    first = await queries.embed("what is a volcano")
    assert queries.recent("what is a volcano") is first and queries.recent("something else") is None
    assert await queries.embed("what is a volcano") is first
    assert calls == [["what is a volcano"]]
