"""The `pgvector` vector store: searches bitbd's `chunks` table by cosine distance, through the index
`[plugins.pgvector]` names (the core writes the table; this store builds and uses its index).

Measured side by side in `python -m perf.bench_vectors` (perf/RESULTS.md): an HNSW graph over the float vectors,
over half-precision copies, or over one bit per dimension with the best candidates re-ranked by the full vectors;
or no vector index at all, an exact scan of the tenant's own rows.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from bitbd.plugin_api import Hit, PluginContext, PluginError, Vector, VectorStore, hookimpl
from bitbd_plugins.stores.keywords import KEYWORD, CommonWords
from bitbd_plugins.stores.tenant_indexes import TenantIndexes, tenant_literal

log = logging.getLogger(__name__)
Index = Literal["hnsw", "hnsw_halfvec", "hnsw_bits", "exact"]


class PgVectorConfig(BaseModel):
    """`[plugins.pgvector]`."""

    model_config = ConfigDict(extra="forbid")
    index: Index = "hnsw_halfvec"
    """hnsw (float vectors), hnsw_halfvec (half the size), hnsw_bits (1 bit per dimension, re-ranked), exact."""
    m: int = Field(16, ge=2, le=100)
    """HNSW: links per node of the graph (pgvector's `m`)."""
    ef_construction: int = Field(200, ge=4, le=1000)
    """HNSW: candidates kept while the graph is built. 200 (pgvector's default is 64) took recall@10 at
    ef_search 400 from 0.94-0.95 to 0.99-1.00 on tenants of 20,000 and 100,000 chunks at the same query time,
    for a build about 2.5 times as long (perf/RESULTS.md). A change rebuilds the index at the next start."""
    rerank_candidates: int = Field(200, ge=10, le=2000)
    """hnsw_bits: candidates the bit index proposes for re-ranking by the full vectors."""
    keyword_common_rows: int = Field(500, ge=0)
    """Keyword search: a word in more of a tenant's chunks than this, or than `keyword_common_share` of them,
    ranks candidates but does not select them (a common word's matches cost a scoring each). 0: words of every
    frequency select."""
    keyword_common_share: float = Field(0.05, gt=0, le=1)
    """Keyword search: the share of a tenant's chunks beyond which a word is common (see keyword_common_rows)."""
    exact_below: int = Field(5_000, ge=0)
    """Tenants with fewer chunks are searched exactly, whatever the index (every chunk compared: recall 1, ~0.6 ms
    per 1,000 chunks in PostgreSQL); larger ones through an index: their own (see tenant_indexes), or the shared
    one. 0: always an index."""
    tenant_indexes: bool = True
    """A tenant of exact_below chunks or more gets a vector index of its own (a partial index, built in the
    background at its first search; the shared index answers meanwhile): the shared index walks every tenant's
    graph and keeps one tenant's rows, slow for a tenant holding a small share of the table (a 10,000-chunk tenant
    among 130,000: 36 ms p50 through HTTP, perf/RESULTS.md). false: big tenants use the shared index, and own
    indexes are dropped at the next start."""


# Every vector index this store may create ({name}: the shared index's name, or a tenant's; {where}: a tenant's).
_INDEXES: dict[str, str] = {
    "hnsw": "CREATE INDEX {c} {name} ON chunks USING hnsw (embedding vector_cosine_ops) {w} {where}",
    "hnsw_halfvec": "CREATE INDEX {c} {name} ON chunks USING hnsw "
    "((embedding::halfvec({d})) halfvec_cosine_ops) {w} {where}",
    "hnsw_bits": "CREATE INDEX {c} {name} ON chunks USING hnsw "
    "((binary_quantize(embedding)::bit({d})) bit_hamming_ops) {w} {where}",
}
_INDEX_NAMES = {
    "hnsw": "chunks_embedding",
    "hnsw_halfvec": "chunks_embedding_halfvec",
    "hnsw_bits": "chunks_embedding_bits",
}
_BUILD_TIMEOUT = 24 * 3600.0  # seconds an index build may take
_INDEX_LOCK = 0x62697462  # pg_advisory_lock key: one process at a time changes the vector index

_COLUMN_TYPE = """
SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
WHERE a.attrelid = 'chunks'::regclass AND a.attname = 'embedding'"""
# The nearest ids first (only the embedding is read per row), then the k rows' text and documents: joining
# documents and carrying every row's text through the sort made an exact scan several times slower.
_SEARCH = """
WITH top AS (SELECT c.id FROM chunks c WHERE c.tenant_id = {tenant} AND c.embedding IS NOT NULL ORDER BY {order}
             LIMIT $3)
SELECT c.id, c.document_id, d.url, d.title, c.heading_path, c.text, 1 - (c.embedding <=> $2) AS similarity,
       1 - (c.embedding <=> $2) AS score
FROM top JOIN chunks c ON c.id = top.id AND c.tenant_id = $1
JOIN documents d ON d.id = c.document_id AND d.tenant_id = c.tenant_id"""
# "+ 0" keeps the planner off the vector index: the tenant's rows by their btree, every distance computed.
_ORDER = {
    "hnsw": "c.embedding <=> $2",
    "exact": "(c.embedding <=> $2) + 0",
    "hnsw_halfvec": "c.embedding::halfvec({d}) <=> $2::halfvec({d})",
}
# Bits: the bit index proposes candidates by Hamming distance, the full vectors rank them. {tenant}: $1, or the
# tenant as a literal where its own index is searched (the planner matches a partial index only to a literal).
_SEARCH_BITS = """
WITH candidates AS (
    SELECT c.id FROM chunks c WHERE c.tenant_id = {tenant} AND c.embedding IS NOT NULL
    ORDER BY binary_quantize(c.embedding)::bit({d}) <~> binary_quantize($2::vector) LIMIT $4)
SELECT c.id, c.document_id, d.url, d.title, c.heading_path, c.text, 1 - (c.embedding <=> $2) AS similarity,
       1 - (c.embedding <=> $2) AS score
FROM candidates JOIN chunks c ON c.id = candidates.id AND c.tenant_id = $1
JOIN documents d ON d.id = c.document_id AND d.tenant_id = c.tenant_id
ORDER BY c.embedding <=> $2 LIMIT $3"""


class PgVectorStore(VectorStore):
    """Vector search with pgvector, and keyword search with PostgreSQL's full text, both within one tenant."""

    name = "pgvector"

    def __init__(self, ctx: PluginContext) -> None:
        super().__init__(ctx)
        self.config = ctx.options(PgVectorConfig)
        self.pool = ctx.need_pool()
        self._dimension = 0
        self._sizes: dict[uuid.UUID, tuple[int, float]] = {}  # tenant -> (chunks, when counted)
        self._common = CommonWords(self.pool, self.config.keyword_common_share, self.config.keyword_common_rows)
        self._own: TenantIndexes | None = None

    async def dimension(self) -> int:
        """The dimension the schema's `chunks.embedding` column holds."""
        column = await self.pool.fetchval(_COLUMN_TYPE)  # e.g. "vector(384)"
        return int(str(column).removeprefix("vector(").rstrip(")"))

    async def check(self, dimension: int) -> None:
        """Refuse an embedder whose dimension is not the `chunks.embedding` column's, then build
        the configured vector index if it is missing (dropping the others)."""
        stored = await self.dimension()
        if stored != dimension:
            raise PluginError(
                f"the embedder makes {dimension}-dimensional vectors but chunks.embedding holds {stored}; "
                f"choose an embedder of dimension {stored}, or add a migration that changes the column to "
                f"vector({dimension}) and re-embed every tenant's documents"
            )
        self._dimension = stored
        await self._ensure_index()
        kind = self.config.index
        own = TenantIndexes(self.pool, kind, self._create, self._options())
        # Own indexes are kept for tenants above half the threshold: a tenant shrinking a little keeps its index.
        on = self.config.tenant_indexes and kind in _INDEX_NAMES
        await own.prune(self.config.exact_below // 2 if on else None)
        self._own = own if on else None

    def _create(self, how: str, name: str, where: str = "") -> str:
        """The CREATE INDEX of the configured kind (`how`: CONCURRENTLY, IF NOT EXISTS) named `name`."""
        kind = self.config.index
        return _INDEXES[kind].format(c=how, name=name, d=self._dimension, w=self._with(), where=where)

    def _with(self) -> str:
        return f"WITH (m = {self.config.m}, ef_construction = {self.config.ef_construction})"

    def _options(self) -> list[str]:
        return sorted([f"m={self.config.m}", f"ef_construction={self.config.ef_construction}"])

    async def close(self) -> None:
        """Stop the tenants' index builds under way."""
        if self._own is not None:
            await self._own.close()

    async def _ensure_index(self) -> None:
        """The vector index the setting names exists and no other does. Built once, at the first start after the
        setting changes (seconds for thousands of chunks, minutes for millions); every process checks, one builds."""
        want = self.config.index
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _INDEX_LOCK, timeout=_BUILD_TIMEOUT)  # one builds
            try:
                present = {
                    r["relname"]: sorted(r["reloptions"] or [])
                    for r in await conn.fetch(
                        "SELECT relname, reloptions FROM pg_class WHERE relkind = 'i' AND relname = ANY($1::text[])",
                        list(_INDEX_NAMES.values()),
                    )
                }
                options = self._options()
                # On an empty table (a new database: the migrations' default index swapped for the configured
                # one) this is instant and nothing the operator did: said at debug level only.
                level = logging.INFO if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM chunks)") else logging.DEBUG
                for kind, name in _INDEX_NAMES.items():
                    if name in present and (kind != want or present[name] != options):  # another, or built otherwise
                        await conn.execute(f"DROP INDEX IF EXISTS {name}")
                        log.log(level, "dropped vector index", extra={"index": name})
                if want in _INDEX_NAMES and present.get(_INDEX_NAMES[want]) != options:
                    started = time.monotonic()
                    log.log(level, "building vector index", extra={"index": _INDEX_NAMES[want]})
                    # Minutes for millions of chunks: not bound by database.command_timeout (30 s), which made a
                    # server whose index needed rebuilding over ~100,000 chunks exit at start.
                    await conn.execute(self._create("IF NOT EXISTS", _INDEX_NAMES[want]), timeout=_BUILD_TIMEOUT)
                    log.log(
                        level,
                        "built vector index",
                        extra={"index": _INDEX_NAMES[want], "seconds": round(time.monotonic() - started, 1)},
                    )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _INDEX_LOCK)

    async def search(self, tenant_id: uuid.UUID, vector: Vector, k: int, ef_search: int | None = None) -> list[Hit]:
        """Cosine search exactly for a tenant under `exact_below` chunks, else through the tenant's own HNSW index
        or the shared one (iterative scan); `hnsw_bits` re-ranks the bit index's candidates by the full vectors."""
        index, d = self.config.index, self._dimension or await self.dimension()
        if index != "exact" and await self._chunks(self.pool, tenant_id) < self.config.exact_below:
            index = "exact"
        if index == "exact":  # one round trip: no index, so no setting of its
            sql = _SEARCH.format(order=_ORDER[index].format(d=d), tenant="$1")
            return sorted(_hits(await self.pool.fetch(sql, tenant_id, vector, k)), key=lambda h: -h.score)
        own = self._own is not None and await self._own.ready(tenant_id)
        tenant = tenant_literal(tenant_id) if own else "$1"
        candidates = max(self.config.rerank_candidates, k) if index == "hnsw_bits" else k
        ef = max(int(ef_search or 0), candidates) if index == "hnsw_bits" or ef_search is not None else None
        # The HNSW scan filters by tenant after the graph walk; without iterative scans (pgvector 0.8) a small tenant
        # among big ones would get fewer than k hits. Relaxed order: sorted again below. Session settings, set again
        # before every index search in one round trip (pool connections come back without RESET ALL, db/pool.py).
        settings = "SET hnsw.iterative_scan = relaxed_order; " + (
            f"SET hnsw.ef_search = {ef}" if ef is not None else "RESET hnsw.ef_search"
        )
        async with self.pool.acquire() as conn:
            await conn.execute(settings)
            if index == "hnsw_bits":
                rows = await conn.fetch(_SEARCH_BITS.format(d=d, tenant=tenant), tenant_id, vector, k, candidates)
            else:
                sql = _SEARCH.format(order=_ORDER[index].format(d=d), tenant=tenant)
                rows = await conn.fetch(sql, tenant_id, vector, k)
        return sorted(_hits(rows), key=lambda h: -h.score)

    async def _chunks(self, conn: asyncpg.Connection | asyncpg.Pool, tenant_id: uuid.UUID) -> int:
        """The tenant's chunk count, counted at most once a minute (it decides exact or index search, and which
        words are common)."""
        known = self._sizes.get(tenant_id)
        if known is not None and time.monotonic() - known[1] < 60:
            return known[0]
        count = int(await conn.fetchval("SELECT count(*) FROM chunks WHERE tenant_id = $1", tenant_id))
        if len(self._sizes) > 10_000:
            self._sizes.clear()
        self._sizes[tenant_id] = (count, time.monotonic())
        return count

    async def keyword_search(self, tenant_id: uuid.UUID, query: str, vector: Vector, k: int) -> list[Hit]:
        """Full-text search of the chunks' `tsv`: candidates hold one of the query's distinctive words (see
        keywords.py), ranked by ts_rank over all of its words, each hit with its cosine similarity to `vector`."""
        common: list[str] = []
        if self.config.keyword_common_rows:
            common = await self._common.of(tenant_id, await self._chunks(self.pool, tenant_id))
        return _hits(await self.pool.fetch(KEYWORD, tenant_id, query, vector, k, common))


def _hits(rows: list[asyncpg.Record]) -> list[Hit]:
    return [
        Hit(
            r["id"],
            r["document_id"],
            r["url"],
            r["title"],
            " > ".join(r["heading_path"]),
            r["text"],
            float(r["score"]),
            None if r["similarity"] is None else float(r["similarity"]),
        )
        for r in rows
    ]


@hookimpl
def register_stores() -> list[type[VectorStore]]:
    """Hook: the `pgvector` store."""
    return [PgVectorStore]
