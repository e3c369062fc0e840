"""Documents' chunks in bitbd's own table: written and deleted by the core, one tenant at a time."""

from __future__ import annotations

import asyncpg
import pytest

from bitbd import tenancy
from bitbd.db.chunks import delete_document, has_chunks
from bitbd.errors import NotFound
from bitbd.plugin_api import PluginContext
from bitbd_plugins.stores.pgvector import PgVectorStore
from tests.bitbd_plugins.stores.test_pgvector import chunks, document, unit, write


async def test_writes_searches_and_deletes_are_scoped_by_tenant(pool: asyncpg.Pool) -> None:
    store = PgVectorStore(PluginContext("pgvector", pool=pool))
    a = await tenancy.create_tenant(pool, "a")
    b = await tenancy.create_tenant(pool, "b")
    doc_a = await document(pool, a.id, "https://a.example/guide")
    doc_b = await document(pool, b.id, "https://b.example/guide")
    assert await write(pool, a.id, doc_a, chunks(1, 2, 3)) == 3
    await write(pool, b.id, doc_b, chunks(1, 2, 3))

    hits = await store.search(a.id, unit(2), 10)
    assert hits[0].text == "text 2"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].heading == "Guide > Part 2"
    assert {h.document_id for h in hits} == {doc_a}, "search must never return another tenant's chunks"

    # A new version keeps unchanged chunks (same ids), drops removed ones, adds new ones.
    before = {
        r["content_hash"]: r["id"]
        for r in await pool.fetch("SELECT id, content_hash FROM chunks WHERE document_id = $1", doc_a)
    }
    await write(pool, a.id, doc_a, chunks(2, 4))
    after = {
        r["content_hash"]: r["id"]
        for r in await pool.fetch("SELECT id, content_hash FROM chunks WHERE document_id = $1", doc_a)
    }
    assert set(after) == {"h2", "h4"} and after["h2"] == before["h2"]

    with pytest.raises(NotFound, match=r"not found"):
        await write(pool, b.id, doc_a, chunks(9))  # b cannot write into a's document
    assert await delete_document(pool, b.id, doc_a) is False  # nor delete it
    assert await delete_document(pool, a.id, doc_a) is True
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE document_id = $1", doc_a) == 0
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE document_id = $1", doc_b) == 3
    assert await has_chunks(pool, b.id) and not await has_chunks(pool, (await tenancy.create_tenant(pool, "c")).id)
