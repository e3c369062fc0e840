"""Keyword search over `chunks.tsv` that costs the same at 100,000 chunks as at 10,000: the question's distinctive
words select the candidates, all of its words rank them.

A question's words are ORed (websearch_to_tsquery ANDs them, which a natural-language question rarely matches in
full), and ts_rank scores every chunk that matches. A common word ("file", "use", "read" in a documentation site)
is in a tenth of the chunks, so scoring every match cost 60 ms at 20,000 chunks and 400 ms at 100,000
(perf/RESULTS.md). Here a word in more of the tenant's chunks than `common_rows`, or than `common_share` of them,
does not select candidates: a chunk is a candidate when it holds one of the question's other words, and it is still
ranked by all of them. A question made only of common words matches the chunks holding all of them.

Which words are common is counted per tenant on a sample of about 4,000 of its chunks (ts_stat, ~50-150 ms),
again after an hour or when the tenant's size changed by a tenth, in each process that searches.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import asyncpg

_SAMPLE = 4000  # chunks the word counts are taken from
_FRESH = 3600.0  # seconds a tenant's common words are kept before they are counted again
_KEPT = 10_000  # tenants remembered
_FLOOR = 200  # a word in fewer chunks is never common: scoring 200 matches costs under a millisecond

# ts_stat takes the query as text: the tenant id is a UUID rendered by Python, never text from a request. Every
# step-th chunk by id (ids are spread over the tenant's documents) stands for the tenant.
_COMMON = """
SELECT word FROM ts_stat(format('SELECT tsv FROM chunks WHERE tenant_id = %L AND id %% %s = 0', $1::text, $2::int))
WHERE ndoc > $3"""
# The question's text with dots, underscores and slashes split as in the indexed text (migration 0007); its words
# as websearch_to_tsquery reads them, ANDed (for a question of common words only) and ORed (the ranking); the
# distinctive ones (not in $5) ORed select the candidates; ts_rank without length normalisation (measured better)
# ranks them by all the words. The best ids first, then their rows: joining documents
# and computing similarity for only the top k was 25% faster. m is MATERIALIZED: inlined (PostgreSQL inlines a CTE
# used once), the ranking query was parsed again (websearch_to_tsquery, stemming) for every candidate row, 3x the
# cost of the whole search (10 of 14 ms for a question whose rarer words are in 940 chunks).
KEYWORD = """
WITH t AS (SELECT regexp_replace($2, '[._/]+', ' ', 'g') AS text),
q AS (SELECT websearch_to_tsquery('english', t.text) AS query FROM t),
m AS MATERIALIZED (SELECT coalesce(
          (SELECT string_agg(quote_literal(w), ' | ')::tsquery
           FROM t, unnest(tsvector_to_array(to_tsvector('english', t.text))) w WHERE w <> ALL($5::text[])),
          q.query) AS match,
        replace(q.query::text, ' & ', ' | ')::tsquery AS rank
      FROM q),
top AS (SELECT c.id, ts_rank(c.tsv, m.rank) AS score FROM m, chunks c
        WHERE c.tenant_id = $1 AND c.tsv @@ m.match ORDER BY score DESC, c.id LIMIT $4)
SELECT c.id, c.document_id, d.url, d.title, c.heading_path, c.text, 1 - (c.embedding <=> $3) AS similarity,
       top.score
FROM top JOIN chunks c ON c.id = top.id AND c.tenant_id = $1
JOIN documents d ON d.id = c.document_id AND d.tenant_id = c.tenant_id
ORDER BY top.score DESC, c.id"""


@dataclass(frozen=True)
class _Counted:
    words: list[str]
    chunks: int
    at: float


class CommonWords:
    """Each tenant's common words (stemmed lexemes), counted when first asked for and again when stale."""

    def __init__(self, pool: asyncpg.Pool, share: float, rows: int) -> None:
        self.pool = pool
        self.share = share
        self.rows = rows
        self._counted: dict[uuid.UUID, _Counted] = {}
        self._counting: dict[uuid.UUID, asyncio.Lock] = {}

    async def of(self, tenant_id: uuid.UUID, chunks: int) -> list[str]:
        """The tenant's words found in more than `rows` of its `chunks` (or `share` of them, if fewer; never in
        fewer than 200). Counted
        once at a time per tenant; while a stale list is counted again, other searches use the stale one."""
        known = self._counted.get(tenant_id)
        if known is not None and not self._stale(known, chunks):
            return known.words
        lock = self._counting.setdefault(tenant_id, asyncio.Lock())
        if known is not None and lock.locked():
            return known.words
        async with lock:
            known = self._counted.get(tenant_id)
            if known is None or self._stale(known, chunks):
                known = _Counted(await self._count(tenant_id, chunks), chunks, time.monotonic())
                if len(self._counted) >= _KEPT:
                    self._counted.clear()
                    self._counting = {t: lock for t, lock in self._counting.items() if lock.locked()}
                self._counted[tenant_id] = known
        return known.words

    def _stale(self, known: _Counted, chunks: int) -> bool:
        return time.monotonic() - known.at > _FRESH or abs(chunks - known.chunks) > known.chunks / 10

    async def _count(self, tenant_id: uuid.UUID, chunks: int) -> list[str]:
        limit = max(min(self.rows, self.share * chunks), _FLOOR)
        if chunks <= limit:
            return []
        step = max(1, chunks // _SAMPLE)
        rows = await self.pool.fetch(_COMMON, str(tenant_id), step, int(limit / step))
        return [r["word"] for r in rows]
