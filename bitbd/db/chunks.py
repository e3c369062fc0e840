"""Documents' chunks, with their embeddings: bitbd's own table, written only here.

The `chunks` table is part of the core, not of a store plugin: it carries tenant isolation, the content hashes
that let a re-crawl reuse embeddings, the cascade from `documents`, the corpus version the answer cache is keyed
on (sql/0006), and it is written in the same transaction as its document and the job's frontier, under the job's
store lock. A `VectorStore` plugin indexes and searches it (docs/architecture.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from bitbd.errors import NotFound
from bitbd.interfaces import Chunk

_LOCK_DOCUMENT = "SELECT id FROM documents WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
_DROP_OTHERS = """DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2
AND NOT (content_hash = ANY($3::text[]))"""
_UPSERT_CHUNK = """
INSERT INTO chunks (tenant_id, document_id, position, heading_path, text, content_hash, embedding, prepared)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (tenant_id, document_id, content_hash) DO UPDATE
SET position = excluded.position, heading_path = excluded.heading_path, embedding = excluded.embedding,
    prepared = coalesce(excluded.prepared, chunks.prepared)"""
# Chunks go with the document in the same statement (ON DELETE CASCADE), so never half of it.
_DELETE_DOCUMENT = "DELETE FROM documents WHERE tenant_id = $1 AND id = $2 RETURNING id"


async def replace_chunks(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, document_id: uuid.UUID, chunks: Sequence[Chunk]
) -> int:
    """Make ``chunks`` the document's chunks, in a savepoint of ``conn``'s transaction; returns how many.

    Chunks the new version no longer has are dropped; the others are kept (and updated), so unchanged chunks keep
    their rows. The document must be the tenant's: another tenant's document id is refused."""
    hashes = [c.content_hash for c in chunks]
    if len(set(hashes)) != len(hashes):
        raise ValueError("chunks of one document must have distinct content hashes")
    async with conn.transaction():
        if await conn.fetchval(_LOCK_DOCUMENT, tenant_id, document_id) is None:
            raise NotFound(f"document {document_id} not found for this tenant")
        await conn.execute(_DROP_OTHERS, tenant_id, document_id, hashes)
        await conn.executemany(
            _UPSERT_CHUNK,
            [
                (tenant_id, document_id, c.position, c.heading_path, c.text, c.content_hash, c.embedding, c.prepared)
                for c in chunks
            ],
        )
    return len(chunks)


async def delete_document(pool: asyncpg.Pool, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
    """Delete one of the tenant's documents and its chunks at once; False if the tenant has no such document."""
    return await pool.fetchval(_DELETE_DOCUMENT, tenant_id, document_id) is not None


async def has_chunks(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant has anything to answer from."""
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM chunks WHERE tenant_id = $1)", tenant_id))
