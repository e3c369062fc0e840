"""The pgvector store on a real PostgreSQL with pgvector: dimension check, its indexes, tenant-scoped search."""

from __future__ import annotations

import time
import uuid

import asyncpg
import numpy as np
import pytest

from bitbd import tenancy
from bitbd.db.chunks import replace_chunks
from bitbd.db.pool import open_pool
from bitbd.errors import ConfigError, PluginError
from bitbd.interfaces import Chunk, Vector
from bitbd.plugin_api import PluginContext
from bitbd.settings import Settings
from bitbd_plugins.stores.pgvector import PgVectorStore


def unit(seed: int) -> Vector:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


async def document(pool: asyncpg.Pool, tenant_id: uuid.UUID, url: str) -> uuid.UUID:
    doc_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO documents (tenant_id, url, title) VALUES ($1, $2, $3) RETURNING id", tenant_id, url, url[-5:]
    )
    return doc_id


async def write(pool: asyncpg.Pool, tenant_id: uuid.UUID, document_id: uuid.UUID, items: list[Chunk]) -> int:
    """Chunks written as the ingestion engine writes them (the core owns the table; the store searches it)."""
    async with pool.acquire() as conn:
        return await replace_chunks(conn, tenant_id, document_id, items)


def chunks(*seeds: int) -> list[Chunk]:
    return [Chunk(i, f"text {s}", f"h{s}", ["Guide", f"Part {s}"], unit(s)) for i, s in enumerate(seeds)]


async def test_dimension_check_names_both_numbers(pool: asyncpg.Pool) -> None:
    store = PgVectorStore(PluginContext("pgvector", pool=pool))
    assert await store.dimension() == 384
    await store.check(384)
    with pytest.raises(PluginError, match=r"768-dimensional vectors but chunks.embedding holds 384"):
        await store.check(768)


async def test_a_small_tenant_among_a_big_one_gets_k_hits(pool: asyncpg.Pool) -> None:
    store = PgVectorStore(
        PluginContext("pgvector", config={"index": "hnsw", "exact_below": 0, "tenant_indexes": False}, pool=pool)
    )
    await store.check(384)  # the float HNSW index this test's raw query uses
    small = await tenancy.create_tenant(pool, "small")
    big = await tenancy.create_tenant(pool, "big")
    await write(pool, small.id, await document(pool, small.id, "https://s.example/"), chunks(*range(5)))
    big_doc = await document(pool, big.id, "https://b.example/")
    await write(pool, big.id, big_doc, chunks(*range(100, 3100)))
    await pool.execute("ANALYZE chunks")
    query = "SELECT id FROM chunks WHERE tenant_id = $1 ORDER BY embedding <=> $2 LIMIT 10"
    found = {}
    for mode in ("off", "relaxed_order"):
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_sort = off")  # force the HNSW scan, as on a big table
            await conn.execute(f"SET LOCAL hnsw.iterative_scan = {mode}")
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + query, small.id, unit(1)))
            assert "chunks_embedding" in plan, plan
            found[mode] = len(await conn.fetch(query, small.id, unit(1)))
    assert found["off"] < 5 == found["relaxed_order"], found  # why the store turns iterative scans on
    hits = await store.search(small.id, unit(1), 10)
    assert len(hits) == 5 and hits[0].text == "text 1"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    await PgVectorStore(PluginContext("pgvector", pool=pool)).check(384)  # back to the default index


INDEXES = "SELECT indexname FROM pg_indexes WHERE tablename = 'chunks' AND indexname LIKE 'chunks_embedding%'"


@pytest.mark.parametrize("index", ["hnsw", "hnsw_bits", "exact"])
async def test_each_index_setting_builds_its_index_alone_and_finds_the_same(pool: asyncpg.Pool, index: str) -> None:
    tenant = await tenancy.create_tenant(pool, "t")
    other = await tenancy.create_tenant(pool, "other")
    await write(pool, tenant.id, await document(pool, tenant.id, "https://t.example/"), chunks(*range(300)))
    await write(pool, other.id, await document(pool, other.id, "https://o.example/"), chunks(*range(300)))
    expected = [h.text for h in await PgVectorStore(PluginContext("pgvector", pool=pool)).search(tenant.id, unit(7), 5)]
    # through the index, however small the tenant
    store = PgVectorStore(
        PluginContext("pgvector", config={"index": index, "exact_below": 0, "tenant_indexes": False}, pool=pool)
    )
    try:
        await store.check(384)
        names = {r["indexname"] for r in await pool.fetch(INDEXES)}
        assert names == (
            {"chunks_embedding"} if index == "hnsw" else {"chunks_embedding_bits"} if index == "hnsw_bits" else set()
        )
        hits = await store.search(tenant.id, unit(7), 5)
        assert hits[0].text == expected[0] == "text 7"
        assert len(hits) == 5 and {h.document_id for h in hits} == {hits[0].document_id}, "one tenant's only"
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    finally:  # back to the default index for the other tests
        await PgVectorStore(PluginContext("pgvector", pool=pool)).check(384)
    assert {r["indexname"] for r in await pool.fetch(INDEXES)} == {"chunks_embedding_halfvec"}


def test_an_unknown_index_setting_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"\[plugins.pgvector\].*index"):
        PgVectorStore(PluginContext("pgvector", config={"index": "diskann"}))


async def test_a_tenant_below_exact_below_is_searched_exactly(pool: asyncpg.Pool) -> None:
    """I.i.d. random vectors are HNSW's worst case (in 384 dimensions they are all nearly orthogonal): the index
    misses true neighbours, the exact scan that small tenants get never does."""
    await PgVectorStore(PluginContext("pgvector", pool=pool)).check(384)  # the default index exists (run alone too)
    tenant = await tenancy.create_tenant(pool, "t")
    doc = await document(pool, tenant.id, "https://t.example/")
    seeds = list(range(1000, 4000))
    await write(pool, tenant.id, doc, chunks(*seeds))
    await pool.execute("ANALYZE chunks")
    matrix = np.stack([unit(s) for s in seeds])
    recall: dict[int, list[float]] = {0: [], 20_000: []}
    for q in range(20):
        query = unit(10_000 + q)
        truth = {f"text {seeds[i]}" for i in np.argsort(-(matrix @ query))[:10]}
        for below in recall:
            hits = await PgVectorStore(
                PluginContext("pgvector", config={"exact_below": below, "tenant_indexes": False}, pool=pool)
            ).search(tenant.id, query, 10, ef_search=10)
            recall[below].append(len(truth & {h.text for h in hits}) / 10)
    assert min(recall[20_000]) == 1.0, "exact for a tenant of 3,000 chunks"
    assert np.mean(recall[0]) < 0.9, "the index alone misses neighbours here (else this test proves nothing)"


async def test_a_common_word_ranks_keyword_candidates_but_does_not_select_them(pool: asyncpg.Pool) -> None:
    tenant = await tenancy.create_tenant(pool, "words")
    other = await tenancy.create_tenant(pool, "few")
    doc = await document(pool, tenant.id, "https://w.example/")
    # Every chunk says "widget"; five also say "sprocket", and the widgets of the first of them are many.
    texts = [
        f"widget number {i}" + (" sprocket" if i < 5 else "") + (" widget widget" if i == 0 else "") for i in range(600)
    ]
    await write(pool, tenant.id, doc, [Chunk(i, t, f"w{i}", ["Guide"], unit(i)) for i, t in enumerate(texts)])
    await write(
        pool,
        other.id,
        await document(pool, other.id, "https://f.example/"),
        [
            Chunk(i, f"widget number {i}" + (" sprocket" if i < 5 else ""), f"f{i}", ["Guide"], unit(i))
            for i in range(150)
        ],
    )
    store = PgVectorStore(PluginContext("pgvector", pool=pool))
    hits = await store.keyword_search(tenant.id, "Where is the widget sprocket?", unit(1), 40)
    assert len(hits) == 5 and all("sprocket" in h.text for h in hits), "only chunks with the distinctive word"
    assert hits[0].text == texts[0], "ranked by all the words: the chunk with the most widgets first"
    assert len(await store.keyword_search(tenant.id, "widget", unit(1), 40)) == 40, "common words alone: all of them"
    assert await store.keyword_search(tenant.id, "widget cogwheel", unit(1), 40) == [], "none has the rare word"
    # Under 200 chunks no word is common; with keyword_common_rows 0 none ever is.
    assert len(await store.keyword_search(other.id, "widget sprocket", unit(1), 40)) == 40
    every = PgVectorStore(PluginContext("pgvector", config={"keyword_common_rows": 0}, pool=pool))
    hits = await every.keyword_search(tenant.id, "widget sprocket", unit(1), 40)
    assert len(hits) == 40 and all("sprocket" in h.text for h in hits[:5])


async def test_the_index_is_built_again_when_its_graph_settings_change(pool: asyncpg.Pool) -> None:
    options = "SELECT reloptions FROM pg_class WHERE relname = 'chunks_embedding_halfvec'"
    await PgVectorStore(PluginContext("pgvector", pool=pool)).check(384)
    assert sorted(await pool.fetchval(options)) == ["ef_construction=200", "m=16"]
    oid = await pool.fetchval("SELECT 'chunks_embedding_halfvec'::regclass::oid")
    await PgVectorStore(PluginContext("pgvector", pool=pool)).check(384)
    assert await pool.fetchval("SELECT 'chunks_embedding_halfvec'::regclass::oid") == oid, "unchanged: not rebuilt"
    try:
        await PgVectorStore(PluginContext("pgvector", config={"ef_construction": 64, "m": 8}, pool=pool)).check(384)
        assert sorted(await pool.fetchval(options)) == ["ef_construction=64", "m=8"]
    finally:
        await PgVectorStore(PluginContext("pgvector", pool=pool)).check(384)
    assert sorted(await pool.fetchval(options)) == ["ef_construction=200", "m=16"]


async def test_an_index_build_longer_than_the_command_timeout_completes(
    pool: asyncpg.Pool, service_settings: Settings
) -> None:
    tenant = await tenancy.create_tenant(pool, "many")
    await write(pool, tenant.id, await document(pool, tenant.id, "https://m.example/"), chunks(*range(3000)))
    quick = await open_pool(service_settings.database.model_copy(update={"command_timeout": 0.05}))
    try:
        started = time.monotonic()
        await PgVectorStore(PluginContext("pgvector", config={"ef_construction": 100}, pool=quick)).check(384)
        assert time.monotonic() - started > 0.05, "the build must outlast the timeout for this test to mean anything"
        options = await pool.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'chunks_embedding_halfvec'")
        assert "ef_construction=100" in options
    finally:
        await quick.close()
        await PgVectorStore(PluginContext("pgvector", pool=pool)).check(384)
