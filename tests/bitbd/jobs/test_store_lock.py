"""The lock between a job's stores and its cancel, on the real PostgreSQL: one connection per store, a cancel that
is neither starved nor deadlocked by stores in progress, and no store committed after the cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bitbd import tenancy
from bitbd.db.chunks import replace_chunks
from bitbd.db.pool import open_pool
from bitbd.errors import Conflict
from bitbd.jobs import records
from bitbd.jobs.engine import JobEnded, storing
from bitbd.settings import Settings
from tests.support.waiting import wait_until_async

_STORE = "INSERT INTO documents (tenant_id, url, title) VALUES ($1, $2, 'stored') RETURNING id"


@pytest.fixture
async def running_job(pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    tenant = await tenancy.create_tenant(pool, "acme")
    job_id, _ = await records.create_job(pool, tenant.id, "web", {"urls": ["https://a.example/"]}, "normal")
    await pool.execute("UPDATE jobs SET status = 'running' WHERE id = $1", job_id)
    return tenant.id, job_id


@pytest.fixture
async def worker_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The workers' own pool, so the cancel below never waits for a connection: only for the lock."""
    pool = await open_pool(settings.database.model_copy(update={"pool_min": 0, "pool_max": 8}))
    yield pool
    await pool.close()


async def test_a_cancel_is_not_starved_by_stores_and_nothing_commits_after_it(
    pool: asyncpg.Pool, worker_pool: asyncpg.Pool, running_job: tuple[uuid.UUID, uuid.UUID]
) -> None:
    """Six tasks store back to back (each store 80 ms, staggered, so some store is always in progress). With the
    job's row held FOR SHARE by each store the cancel's UPDATE waited as long as shares kept overlapping (new FOR
    SHARE lockers are let in past a waiting UPDATE); now it returns within one store's time."""
    tenant, job_id = running_job
    committed: list[tuple[float, uuid.UUID]] = []  # (when, document) of every store that committed
    ended: list[float] = []
    stop = asyncio.Event()

    async def task(n: int) -> None:
        await asyncio.sleep(n * 0.013)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                async with storing(worker_pool, job_id) as conn:
                    doc = await conn.fetchval(_STORE, tenant, f"https://a.example/{n}/{i}")
                    await conn.execute("SELECT pg_sleep(0.08)")
            except JobEnded:
                ended.append(time.monotonic())
                return
            committed.append((time.monotonic(), doc))
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(task(n)) for n in range(6)]
    try:
        await wait_until_async(lambda: len(committed) > 10, "the stores run", 30, every=0.05)
        started = time.monotonic()
        view = await asyncio.wait_for(records.cancel_job(pool, tenant, job_id), 10)
        waited = time.monotonic() - started
        assert view.row["status"] == "cancelled"
        assert waited < 2, f"the cancel waited {waited:.2f}s behind the stores"
        counted = await pool.fetchval("SELECT count(*) FROM documents WHERE tenant_id = $1", tenant)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)  # every task finds the job cancelled and stops
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert len(ended) == 6
    # Every store the cancel let through committed before the cancel returned; none came after.
    assert (
        await pool.fetchval("SELECT count(*) FROM documents WHERE tenant_id = $1", tenant) == counted == len(committed)
    )
    print(f"cancel waited {waited * 1000:.0f} ms behind {len(committed)} stores")


async def test_a_task_stores_on_one_connection(
    pool: asyncpg.Pool, running_job: tuple[uuid.UUID, uuid.UUID], settings: Settings
) -> None:
    """With a pool of one connection a store still completes: the live check, the lock and the writes (document
    and chunks) share it, in one transaction."""
    from tests.bitbd_plugins.stores.test_pgvector import chunks

    tenant, job_id = running_job
    single = await open_pool(settings.database.model_copy(update={"pool_min": 0, "pool_max": 1}))
    try:
        async with storing(single, job_id) as conn:
            doc = await conn.fetchval(_STORE, tenant, "https://a.example/one")
            assert await asyncio.wait_for(replace_chunks(conn, tenant, doc, chunks(1, 2, 3)), 5) == 3
        assert await pool.fetchval("SELECT count(*) FROM chunks WHERE document_id = $1", doc) == 3
        # Rolled back with the transaction it joined: a failed store leaves no chunks without their document.
        with pytest.raises(RuntimeError):
            async with storing(single, job_id) as conn:
                other = await conn.fetchval(_STORE, tenant, "https://a.example/two")
                await replace_chunks(conn, tenant, other, chunks(4))
                raise RuntimeError("the store fails after the chunks")
        assert await pool.fetchval("SELECT count(*) FROM documents WHERE url = 'https://a.example/two'") == 0
    finally:
        await single.close()


async def test_cancel_of_an_ended_job_is_a_conflict_on_a_full_pool(
    running_job: tuple[uuid.UUID, uuid.UUID], settings: Settings
) -> None:
    """The 409's lookup happens after the cancel's transaction: a pool of one connection answers it."""
    tenant, job_id = running_job
    single = await open_pool(settings.database.model_copy(update={"pool_min": 0, "pool_max": 1}))
    try:
        await records.cancel_job(single, tenant, job_id)
        with pytest.raises(Conflict, match="already cancelled"):
            await asyncio.wait_for(records.cancel_job(single, tenant, job_id), 5)
        with pytest.raises(JobEnded):
            async with storing(single, job_id):
                pass
    finally:
        await single.close()
