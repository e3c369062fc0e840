"""Own vector indexes for big tenants: a partial HNSW index over one tenant's chunks (`WHERE tenant_id = '<id>'`).

The shared index holds every tenant's chunks, and a search walks its graph keeping one tenant's rows, so the walk
grows as the tenant's share of the table shrinks (a 10,000-chunk tenant among 130,000 chunks: 36 ms p50 through
the shared index, perf/RESULTS.md). A tenant's own index holds only its chunks: its graph walk never visits
another tenant's. PostgreSQL keeps it up to date as chunks are written, like any index.

A tenant of at least `exact_below` chunks gets one, built in the background (`CREATE INDEX CONCURRENTLY`: writes
go on) by the first process that searches the tenant; until it is ready the shared index answers. The planner
can use a partial index only when the query names the tenant as a literal, so searches through one carry the
tenant id in their text (a UUID formatted by Python, never text from a request). At start-up, own indexes whose
tenant is gone or has shrunk below half of `exact_below`, or that were built with other settings, are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

_BUILD_TIMEOUT = 24 * 3600.0  # seconds a build may take
# pg_advisory_lock key: one build at a time, over all processes (two CREATE INDEX CONCURRENTLY on one table wait
# for each other, and failed here with a deadlock)
_LOCK = 0x62697463
_FRESH = 60.0  # seconds the list of ready indexes is kept before it is read again, and a failed build waits
_CODES = {"hnsw": "hf", "hnsw_halfvec": "hh", "hnsw_bits": "hb"}  # index kind -> name part

# Own indexes: chunks_<kind code>_<tenant id without dashes>, e.g. chunks_hh_3f2a...; indisvalid is false for a
# build under way or one that failed.
OWN_NAMES = "^chunks_h[fhb]_[0-9a-f]{32}$"
_OWN = f"""
SELECT c.relname, i.indisvalid, c.reloptions FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.relkind = 'i' AND c.relname ~ '{OWN_NAMES}'"""
# The chunks of the tenants that have own indexes (by the tenant index), not of every tenant
_COUNTS = "SELECT tenant_id, count(*) AS n FROM chunks WHERE tenant_id = ANY($1::uuid[]) GROUP BY tenant_id"


def name_of(kind: str, tenant_id: uuid.UUID) -> str:
    """The name of `tenant_id`'s own index of `kind`."""
    return f"chunks_{_CODES[kind]}_{tenant_id.hex}"


def tenant_literal(tenant_id: uuid.UUID) -> str:
    """`tenant_id` as an SQL literal, for queries the planner must match against a partial index."""
    return f"'{uuid.UUID(str(tenant_id))}'::uuid"  # parsed again: only a canonical UUID reaches the SQL


class TenantIndexes:
    """The own indexes of one kind: `create(how, name, where)` is the CREATE INDEX of one, `options` the
    reloptions it is built with (an index built with others is dropped at start-up)."""

    def __init__(
        self, pool: asyncpg.Pool, kind: str, create: Callable[[str, str, str], str], options: list[str]
    ) -> None:
        self.pool = pool
        self.kind = kind
        self.create = create
        self.options = sorted(options)
        self._ready: set[uuid.UUID] = set()
        self._read_at = -_FRESH
        self._building: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._failed: dict[uuid.UUID, float] = {}  # tenant -> when its build last failed or had to wait
        self._one = asyncio.Lock()  # this process's builds, one after another

    async def prune(self, keep_above: int | None) -> None:
        """Drop the own indexes of other kinds or settings, of tenants gone, and of tenants under `keep_above`
        chunks; every one if None (at start-up)."""
        rows = await self.pool.fetch(_OWN)
        if not rows:
            return
        tenants = [uuid.UUID(r["relname"].split("_")[2]) for r in rows]
        counts = {r["tenant_id"].hex: r["n"] for r in await self.pool.fetch(_COUNTS, tenants)}
        for r in rows:
            code, hex_id = r["relname"].split("_")[1:]
            stale = code != _CODES.get(self.kind) or sorted(r["reloptions"] or []) != self.options
            if keep_above is None or stale or counts.get(hex_id, 0) < keep_above:
                await self.pool.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {r['relname']}", timeout=_BUILD_TIMEOUT)
                log.info("dropped a tenant's vector index", extra={"index": r["relname"]})
        self._read_at = -_FRESH

    async def ready(self, tenant_id: uuid.UUID) -> bool:
        """Whether `tenant_id` has its own index ready to search (the list read again at most once a minute);
        if it has none, one is built in the background."""
        if time.monotonic() - self._read_at > _FRESH:
            self._read_at = time.monotonic()
            self._ready = {
                uuid.UUID(r["relname"].split("_")[2])
                for r in await self.pool.fetch(_OWN)
                if r["indisvalid"] and r["relname"].startswith(f"chunks_{_CODES[self.kind]}_")
            }
        if tenant_id in self._ready:
            return True
        if len(self._failed) > 10_000:
            self._failed.clear()
        failed = self._failed.get(tenant_id)
        if tenant_id not in self._building and (failed is None or time.monotonic() - failed > _FRESH):
            task = asyncio.create_task(self._build(tenant_id), name=f"index {tenant_id}")
            self._building[tenant_id] = task
            task.add_done_callback(lambda _: self._building.pop(tenant_id, None))
        return False

    async def _build(self, tenant_id: uuid.UUID) -> None:
        name = name_of(self.kind, tenant_id)
        try:
            async with self._one, self.pool.acquire() as conn:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK):
                    self._failed[tenant_id] = time.monotonic()  # another process builds one: tried again later
                    return
                try:
                    valid = await conn.fetchval(
                        "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                        "WHERE c.relname = $1",
                        name,
                    )
                    if valid is False:  # a build that was cut off (its process stopped): start again
                        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}", timeout=_BUILD_TIMEOUT)
                    if valid is not True:
                        started = time.monotonic()
                        where = f"WHERE tenant_id = {tenant_literal(tenant_id)}"
                        sql = self.create("CONCURRENTLY IF NOT EXISTS", name, where)
                        await conn.execute(sql, timeout=_BUILD_TIMEOUT)
                        log.info(
                            "built a tenant's vector index",
                            extra={"index": name, "seconds": round(time.monotonic() - started, 1)},
                        )
                    self._ready.add(tenant_id)
                finally:
                    try:
                        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
                    except BaseException:
                        conn.terminate()  # the session ends, and its lock with it
                        raise
        except asyncio.CancelledError:
            raise
        except Exception as e:  # searched through the shared index meanwhile; tried again a minute later
            self._failed[tenant_id] = time.monotonic()
            log.warning("a tenant's vector index could not be built", extra={"index": name, "error": str(e)})

    async def close(self) -> None:
        """Stop the builds under way (an index cut off is dropped and built again later)."""
        for task in list(self._building.values()):
            task.cancel()
        await asyncio.gather(*self._building.values(), return_exceptions=True)
