"""The semantic cache on real Redis: similarity threshold, corpus versions, tenants, TTL, size bound, processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest
import redis.asyncio as aioredis

from bitbd import tenancy
from bitbd.answer.cache import SemanticCache, same_question
from bitbd.interfaces import Vector
from bitbd.settings import CacheSettings, Settings
from bitbd_plugins.embedders.fastembed import FastEmbedder
from tests.support.waiting import Clock

SOURCES = [{"n": 1, "url": "https://acme.example/returns", "title": "Returns", "snippet": "…"}]


@pytest.fixture
async def redis(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis.url.get_secret_value())
    yield client
    await client.aclose()


async def vec(embedder: FastEmbedder, text: str) -> Vector:
    return (await embedder.embed_queries([text]))[0]


async def test_a_paraphrase_hits_and_another_question_misses(redis: aioredis.Redis, embedder: FastEmbedder) -> None:
    cache = SemanticCache(redis, CacheSettings(threshold=0.9), "t")
    tenant = uuid.uuid4()
    asked = "How do I return an item?"
    await cache.put(tenant, "ns", 1, await vec(embedder, asked), asked, "Within 30 days [1].", SOURCES)
    hit = await cache.get(tenant, "ns", 1, await vec(embedder, "how do I return an item"), "how do I return an item")
    assert hit is not None and hit.answer == "Within 30 days [1]." and hit.sources == SOURCES
    assert hit.question == asked and hit.similarity > 0.9
    assert await cache.get(tenant, "ns", 1, await vec(embedder, "How do I contact support?"), "contact") is None
    assert (cache.hits, cache.misses) == (1, 1)
    # Same question, but another tenant, another corpus version or another answering set-up: never shared.
    same = await vec(embedder, asked)
    assert await cache.get(uuid.uuid4(), "ns", 1, same, asked) is None
    assert await cache.get(tenant, "ns", 2, same, asked) is None
    assert await cache.get(tenant, "other", 1, same, asked) is None


async def test_entries_are_shared_across_processes_and_bounded(redis: aioredis.Redis, embedder: FastEmbedder) -> None:
    settings = CacheSettings(max_entries=3)
    writer, reader = SemanticCache(redis, settings, "t"), SemanticCache(redis, settings, "t")
    tenant = uuid.uuid4()
    questions = ["What is the refund policy?", "When do you ship?", "Where is your office?", "Do you sell gifts?"]
    assert await reader.get(tenant, "ns", 1, await vec(embedder, questions[0]), questions[0]) is None  # empty
    for q in questions:
        await writer.put(tenant, "ns", 1, await vec(embedder, q), q, f"answer to {q}", [])
    assert await redis.xlen(writer.key(tenant, "ns", 1)) == 3, "max_entries bounds the stream"
    # The reader (another process) picks up entries written after it first looked.
    found = await reader.get(tenant, "ns", 1, await vec(embedder, questions[3]), questions[3])
    assert found is not None and found.answer == f"answer to {questions[3]}"
    assert await reader.get(tenant, "ns", 1, await vec(embedder, questions[0]), questions[0]) is None, (
        "the oldest went first"
    )
    assert 0 < await redis.ttl(writer.key(tenant, "ns", 1)) <= settings.ttl_seconds


async def test_look_alike_questions_are_not_served_each_others_answers(
    redis: aioredis.Redis, embedder: FastEmbedder
) -> None:
    cache = SemanticCache(redis, CacheSettings(threshold=0.9), "t")
    tenant = uuid.uuid4()
    for asked, other in [
        ("How do I convert a string to a date?", "How do I convert a date to a string?"),
        ("How do I round a number down?", "How do I round a number up?"),
    ]:
        await cache.put(tenant, "ns", 1, await vec(embedder, asked), asked, f"answer to {asked}", [])
        v = await vec(embedder, other)
        assert float(v @ await vec(embedder, asked)) > 0.95, "the model alone cannot tell them apart"
        assert await cache.get(tenant, "ns", 1, v, other) is None
    assert same_question("How do I convert a string to a date?", "how can I convert strings to a date")
    assert not same_question("How do I encode a URL?", "How do I decode a URL?")


async def test_expired_entries_are_not_served(redis: aioredis.Redis, embedder: FastEmbedder) -> None:
    """Each put renews the stream's EXPIRE, so an old entry in a busy stream outlives its TTL in Redis: the mirror
    must drop it by its age."""
    clock = Clock()
    cache = SemanticCache(redis, CacheSettings(ttl_seconds=60), "t", clock=clock)
    tenant = uuid.uuid4()
    v = await vec(embedder, "When do you ship?")
    await cache.put(tenant, "ns", 1, v, "When do you ship?", "In two days.", [])
    assert await cache.get(tenant, "ns", 1, v, "When do you ship?") is not None
    clock.advance(59)
    assert await cache.get(tenant, "ns", 1, v, "When do you ship?") is not None
    clock.advance(2)
    assert await cache.get(tenant, "ns", 1, v, "When do you ship?") is None


async def test_disabled_cache_stores_nothing(redis: aioredis.Redis) -> None:
    cache = SemanticCache(redis, CacheSettings(enabled=False), "t")
    v = np.ones(384, dtype=np.float32) / np.sqrt(384)
    await cache.put(uuid.uuid4(), "ns", 1, v, "q", "a", [])
    assert await redis.keys("t:cache:*") == []


async def test_corpus_version_moves_with_content_not_with_a_recrawl_touch(pool: asyncpg.Pool) -> None:
    tenant = await tenancy.create_tenant(pool, "versions")
    other = await tenancy.create_tenant(pool, "bystander")

    async def version(t: tenancy.Tenant = tenant) -> int:
        value: int = await pool.fetchval("SELECT corpus_version FROM tenants WHERE id = $1", t.id)
        return value

    doc = await pool.fetchval(
        "INSERT INTO documents (tenant_id, url, title) VALUES ($1, 'https://v.example/', 'V') RETURNING id", tenant.id
    )
    v0 = await version()
    await pool.execute(
        "INSERT INTO chunks (tenant_id, document_id, position, text, content_hash) VALUES ($1, $2, 0, 'hello', 'h')",
        tenant.id,
        doc,
    )
    v1 = await version()
    assert v1 > v0
    await pool.execute("UPDATE documents SET fetched_at = now() WHERE id = $1", doc)  # a re-crawl, nothing new
    assert await version() == v1
    await pool.execute("UPDATE documents SET title = 'New title' WHERE id = $1", doc)  # citations change
    v2 = await version()
    assert v2 > v1
    await pool.execute("DELETE FROM documents WHERE id = $1", doc)  # and its chunks, by cascade
    assert await version() > v2
    assert await version(other) == 0, "another tenant's changes never touch this tenant's version"


async def test_a_new_corpus_version_drops_the_old_stream_and_its_mirror(
    redis: aioredis.Redis, embedder: FastEmbedder
) -> None:
    cache = SemanticCache(redis, CacheSettings(threshold=0.9), "t")
    tenant, asked = uuid.uuid4(), "When do you ship?"
    v = await vec(embedder, asked)
    await cache.put(tenant, "ns", 1, v, asked, "In two days.", [])
    assert await cache.get(tenant, "ns", 1, v, asked) is not None
    # The documents changed (a crawl bumps the version once per page): version 1 can never be asked again.
    assert await cache.get(tenant, "ns", 2, v, asked) is None
    assert not await redis.exists(cache.key(tenant, "ns", 1)), "the old stream is deleted, not left for its TTL"
    await cache.put(tenant, "ns", 1, v, asked, "written while the version moved", [])
    assert not await redis.exists(cache.key(tenant, "ns", 1)), "an answer of an older version is not stored"
    assert await cache.get(tenant, "ns", 1, v, asked) is None, "a lookup that raced the change misses"
    await cache.put(tenant, "ns", 2, v, asked, "In three days.", [])
    hit = await cache.get(tenant, "ns", 2, v, asked)
    assert hit is not None and hit.answer == "In three days."


async def test_concurrent_lookups_mirror_each_entry_once_and_mirrors_are_bounded(
    redis: aioredis.Redis, embedder: FastEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = SemanticCache(redis, CacheSettings(), "t"), SemanticCache(redis, CacheSettings(), "t")
    tenant = uuid.uuid4()
    questions = [f"Question number {n} about shipping?" for n in range(8)]
    vectors = await embedder.embed_queries(questions)
    for q, v in zip(questions, vectors, strict=True):
        await writer.put(tenant, "ns", 1, v, q, f"answer to {q}", [])
    await asyncio.gather(*(reader.get(tenant, "ns", 1, vectors[0], questions[0]) for _ in range(20)))
    [mirror] = reader._mirrors.values()
    assert len(mirror.ids) == len(questions), "each entry mirrored once, however many lookups ran at once"

    monkeypatch.setattr("bitbd.answer.cache._MIRRORED_ENTRIES", 20)
    for _ in range(5):  # five more tenants of 8 entries each: only the most recently used fit in 20
        other = uuid.uuid4()
        for q, v in zip(questions, vectors, strict=True):
            await writer.put(other, "ns", 1, v, q, "a", [])
        assert await reader.get(other, "ns", 1, vectors[1], questions[1]) is not None
    assert sum(len(m.ids) for m in reader._mirrors.values()) <= 20
    assert await reader.get(other, "ns", 1, vectors[2], questions[2]) is not None, "the newest is kept"
