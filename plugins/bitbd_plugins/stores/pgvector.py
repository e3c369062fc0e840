"""The `pgvector` vector store: chunks in PostgreSQL, cosine distance over an HNSW index."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from bitbd.errors import PluginError
from bitbd.hookspecs import hookimpl
from bitbd.interfaces import Chunk, Hit, Vector, VectorStore

_COLUMN_TYPE = """
SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
WHERE a.attrelid = 'chunks'::regclass AND a.attname = 'embedding'"""
_LOCK_DOCUMENT = "SELECT id FROM documents WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
_DELETE_CHUNKS = "DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2"
_DELETE_DOCUMENT = "DELETE FROM documents WHERE tenant_id = $1 AND id = $2 RETURNING id"
_UPSERT_CHUNK = """
INSERT INTO chunks (tenant_id, document_id, position, heading_path, text, content_hash, embedding)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id, document_id, content_hash) DO UPDATE
SET position = excluded.position, heading_path = excluded.heading_path, embedding = excluded.embedding"""
_SEARCH = """
SELECT c.id, c.document_id, d.url, d.title, c.heading_path, c.text, 1 - (c.embedding <=> $2) AS similarity,
       1 - (c.embedding <=> $2) AS score
FROM chunks c JOIN documents d ON d.id = c.document_id AND d.tenant_id = c.tenant_id
WHERE c.tenant_id = $1 AND c.embedding IS NOT NULL
ORDER BY c.embedding <=> $2 LIMIT $3"""
# Any of the question's words (stemmed, stop words dropped; dots, underscores and slashes split identifiers as in
# the indexed text, migration 0007), ranked by how often they occur (no length normalisation: measured better):
# websearch_to_tsquery ANDs the words, which a natural-language question rarely matches in full, so its ANDs
# become ORs ("quoted phrases" stay phrases). The best ids first, then their rows: a common word matches thousands
# of chunks, and joining documents and computing similarity for only the top k was 25% faster.
_KEYWORD = """
WITH q AS (SELECT replace(websearch_to_tsquery('english', regexp_replace($2, '[._/]+', ' ', 'g'))::text,
                          ' & ', ' | ')::tsquery AS query),
top AS (SELECT c.id, ts_rank(c.tsv, q.query) AS score FROM q, chunks c
        WHERE c.tenant_id = $1 AND c.tsv @@ q.query ORDER BY score DESC, c.id LIMIT $4)
SELECT c.id, c.document_id, d.url, d.title, c.heading_path, c.text, 1 - (c.embedding <=> $3) AS similarity,
       top.score
FROM top JOIN chunks c ON c.id = top.id AND c.tenant_id = $1
JOIN documents d ON d.id = c.document_id AND d.tenant_id = c.tenant_id
ORDER BY top.score DESC, c.id"""


class PgVectorStore(VectorStore):
    name = "pgvector"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def dimension(self) -> int:
        """The dimension the schema's `chunks.embedding` column holds."""
        column = await self.pool.fetchval(_COLUMN_TYPE)  # e.g. "vector(384)"
        return int(str(column).removeprefix("vector(").rstrip(")"))

    async def check(self, dimension: int) -> None:
        stored = await self.dimension()
        if stored != dimension:
            raise PluginError(
                f"the embedder makes {dimension}-dimensional vectors but chunks.embedding holds {stored}; "
                f"choose an embedder of dimension {stored}, or add a migration that changes the column to "
                f"vector({dimension}) and re-embed every tenant's documents"
            )

    async def replace_chunks(self, tenant_id: uuid.UUID, document_id: uuid.UUID, chunks: Sequence[Chunk]) -> int:
        hashes = [c.content_hash for c in chunks]
        if len(set(hashes)) != len(hashes):
            raise ValueError("chunks of one document must have distinct content hashes")
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_LOCK_DOCUMENT, tenant_id, document_id) is None:
                raise PluginError(f"document {document_id} not found for this tenant")
            # Drop chunks the new version no longer has; the upsert keeps (and updates) the rest.
            await conn.execute(_DELETE_CHUNKS + " AND NOT (content_hash = ANY($3::text[]))",
                               tenant_id, document_id, hashes)
            await conn.executemany(_UPSERT_CHUNK, [
                (tenant_id, document_id, c.position, c.heading_path, c.text, c.content_hash, c.embedding)
                for c in chunks
            ])
        return len(chunks)

    async def delete_document(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_DELETE_CHUNKS, tenant_id, document_id)
            return await conn.fetchval(_DELETE_DOCUMENT, tenant_id, document_id) is not None

    async def search(self, tenant_id: uuid.UUID, vector: Vector, k: int, ef_search: int | None = None) -> list[Hit]:
        async with self.pool.acquire() as conn, conn.transaction():
            # The HNSW scan filters by tenant after the graph walk; without iterative scans (pgvector 0.8) a small
            # tenant among big ones would get fewer than k hits. Relaxed order: sorted again below.
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            if ef_search is not None:
                await conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), k)}")
            rows = await conn.fetch(_SEARCH, tenant_id, vector, k)
        return sorted(_hits(rows), key=lambda h: -h.score)

    async def keyword_search(self, tenant_id: uuid.UUID, query: str, vector: Vector, k: int) -> list[Hit]:
        return _hits(await self.pool.fetch(_KEYWORD, tenant_id, query, vector, k))


def _hits(rows: list[asyncpg.Record]) -> list[Hit]:
    return [Hit(r["id"], r["document_id"], r["url"], r["title"], " > ".join(r["heading_path"]), r["text"],
                float(r["score"]), None if r["similarity"] is None else float(r["similarity"])) for r in rows]


@hookimpl
def register_stores() -> list[type[VectorStore]]:
    return [PgVectorStore]
