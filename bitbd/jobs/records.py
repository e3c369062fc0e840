"""Job rows in PostgreSQL: the truth about every job, its items and its progress. All queries are per tenant."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bitbd.errors import Conflict, NotFound
from bitbd.metrics import METRICS

TERMINAL = ("succeeded", "failed", "cancelled")
_JOB_COLUMNS = (
    "j.id, j.tenant_id, j.source_id, j.kind, j.status, j.priority, j.params, j.progress, j.error, "
    "j.attempts, j.created_at, j.started_at, j.finished_at, j.updated_at, s.type AS source_type, "
    "s.config->'urls'->>0 AS source_url"
)

INSERT_SOURCE = """INSERT INTO sources (tenant_id, type, config, refresh_seconds) VALUES ($1, $2, $3, $4)
RETURNING id"""
INSERT_JOB = """INSERT INTO jobs (tenant_id, source_id, kind, priority, params) VALUES ($1, $2, $3, $4, $5)
RETURNING id"""
JOB = f"""SELECT {_JOB_COLUMNS} FROM jobs j LEFT JOIN sources s ON s.id = j.source_id
WHERE j.tenant_id = $1 AND j.id = $2"""
JOBS = f"""SELECT {_JOB_COLUMNS} FROM jobs j LEFT JOIN sources s ON s.id = j.source_id
WHERE j.tenant_id = $1 AND ($2::text IS NULL OR j.status = $2) ORDER BY j.created_at DESC LIMIT $3"""
ITEM_COUNTS = """SELECT status, count(*) AS n, coalesce(sum(chunks), 0) AS chunks FROM job_items
WHERE tenant_id = $1 AND job_id = $2 GROUP BY status"""
LIST_COUNTS = """SELECT job_id, status, count(*) AS n, coalesce(sum(chunks), 0) AS chunks FROM job_items
WHERE tenant_id = $1 AND job_id = ANY($2::uuid[]) GROUP BY job_id, status"""
ITEM_ERRORS = """SELECT item, status, error, attempts FROM job_items
WHERE tenant_id = $1 AND job_id = $2 AND error IS NOT NULL ORDER BY id LIMIT $3"""
# The job's store lock (two-key advisory locks: a key space of their own). Every write of a job's pages holds it
# shared, in the transaction of the writes (bitbd.jobs.engine.storing); a cancel takes it exclusively first, so it
# waits for the stores in progress and later ones wait for it and then find the job cancelled. Advisory locks queue
# fairly: a shared request waits behind a waiting exclusive one, so storing tasks cannot starve a cancel.
_STORE_LOCK = 0x62737472  # "bstr"
HOLD_STORES = f"SELECT pg_advisory_xact_lock_shared({_STORE_LOCK}, hashtext($1::uuid::text))"
STOP_STORES = f"""SELECT pg_advisory_xact_lock({_STORE_LOCK}, hashtext(id::text)) FROM jobs
WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')"""
SET_RUNNING = """UPDATE jobs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now()
WHERE id = $1 AND status = 'queued'"""
CANCEL_JOB = """UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running') RETURNING id"""
CANCEL_ITEMS = """UPDATE job_items SET status = 'cancelled', updated_at = now()
WHERE tenant_id = $1 AND job_id = $2 AND status IN ('queued', 'running')"""


@dataclass(frozen=True)
class JobView:
    """A job row with its items counted by status (`counts`: status -> (items, chunks)) and its errors;
    `to_json()` gives it as the API shows it."""

    row: asyncpg.Record
    counts: dict[str, tuple[int, int]]
    errors: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """The job as the API returns it: progress from its item counts (with the stored progress
        over them), errors, ISO times, and the seconds it took (so far, while it runs)."""
        r = self.row

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        n = {status: count for status, (count, _) in self.counts.items()}
        found = sum(n.values())
        progress = {
            "found": found,
            "queued": n.get("queued", 0) + n.get("running", 0),
            "fetched": n.get("done", 0) + n.get("unchanged", 0),
            "unchanged": n.get("unchanged", 0),
            "failed": n.get("failed", 0),
            "skipped": n.get("skipped", 0) + n.get("cancelled", 0),
            "cancelled": n.get("cancelled", 0),  # of the skipped: never worked on, the job was cancelled
            "chunks_embedded": sum(chunks for _, chunks in self.counts.values()),
            **json.loads(r["progress"]),
        }
        end = r["finished_at"] or (r["updated_at"] if r["status"] in TERMINAL else None)
        return {
            "id": str(r["id"]),
            "tenant_id": str(r["tenant_id"]),
            "source_id": str(r["source_id"]) if r["source_id"] else None,
            "source_type": r["source_type"],
            "source_url": r["source_url"],
            "kind": r["kind"],
            "status": r["status"],
            "priority": r["priority"],
            "scheduled": bool(json.loads(r["params"]).get("scheduled")),  # started by the source's refresh
            "progress": progress,
            "errors": self.errors,
            "error": r["error"],
            "attempts": r["attempts"],
            "created_at": iso(r["created_at"]),
            "started_at": iso(r["started_at"]),
            "finished_at": iso(end),
            "seconds": round(
                ((end or datetime.now(r["created_at"].tzinfo)) - (r["started_at"] or r["created_at"])).total_seconds(),
                3,
            ),
        }


async def create_job(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    source_type: str,
    config: dict[str, Any],
    priority: str,
    refresh_seconds: int | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new source of the tenant (re-crawled every `refresh_seconds` if given) and an ingest job over it, in one
    transaction; returns (job id, source id). Queuing the job is the caller's."""
    async with pool.acquire() as conn, conn.transaction():
        source_id = await conn.fetchval(INSERT_SOURCE, tenant_id, source_type, json.dumps(config), refresh_seconds)
        job_id = await conn.fetchval(INSERT_JOB, tenant_id, source_id, "ingest", priority, "{}")
    return job_id, source_id


async def create_upload_job(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, source_type: str, files: list[tuple[str, str, bytes]]
) -> tuple[uuid.UUID, uuid.UUID]:
    """A job over uploaded files: (name, content type, bytes) each, stored until the source is deleted, for a
    source of ``source_type`` (one that takes uploads)."""
    async with pool.acquire() as conn, conn.transaction():
        config = json.dumps({"files": [f[0] for f in files]})
        source_id = await conn.fetchval(INSERT_SOURCE, tenant_id, source_type, config, None)
        job_id = await conn.fetchval(INSERT_JOB, tenant_id, source_id, "ingest", "normal", "{}")
        await conn.executemany(
            "INSERT INTO uploads (tenant_id, source_id, filename, content_type, data) VALUES ($1, $2, $3, $4, $5)",
            [(tenant_id, source_id, *f) for f in files],
        )
    return job_id, source_id


async def create_rerun_jobs(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, priority: str = "normal"
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """A new job for every source of the tenant (after switching embedding models, everything is re-embedded)."""
    async with pool.acquire() as conn, conn.transaction():
        sources = await conn.fetch("SELECT id FROM sources WHERE tenant_id = $1 ORDER BY created_at", tenant_id)
        return [
            (await conn.fetchval(INSERT_JOB, tenant_id, r["id"], "ingest", priority, "{}"), r["id"]) for r in sources
        ]


async def get_job(pool: asyncpg.Pool, tenant_id: uuid.UUID, job_id: uuid.UUID, max_errors: int = 100) -> JobView:
    """The tenant's job with its item counts and up to `max_errors` item errors (the job's own error
    first); raises NotFound if the tenant has no such job."""
    row = await pool.fetchrow(JOB, tenant_id, job_id)
    if row is None:
        raise NotFound(f"job {job_id} not found; list this tenant's jobs with GET /v1/jobs")
    counts = {r["status"]: (r["n"], r["chunks"]) for r in await pool.fetch(ITEM_COUNTS, tenant_id, job_id)}
    errors = [dict(r) for r in await pool.fetch(ITEM_ERRORS, tenant_id, job_id, max_errors)]
    if row["error"]:
        errors.insert(0, {"item": None, "status": row["status"], "error": row["error"], "attempts": row["attempts"]})
    return JobView(row, counts, errors)


async def list_jobs(pool: asyncpg.Pool, tenant_id: uuid.UUID, status: str | None, limit: int) -> list[JobView]:
    """The tenant's jobs, newest first, at most `limit`, of one status if given; with item counts but
    no errors."""
    rows = await pool.fetch(JOBS, tenant_id, status, limit)
    counts: dict[uuid.UUID, dict[str, tuple[int, int]]] = {r["id"]: {} for r in rows}
    for c in await pool.fetch(LIST_COUNTS, tenant_id, list(counts)):
        counts[c["job_id"]][c["status"]] = (c["n"], c["chunks"])
    return [JobView(r, counts[r["id"]], []) for r in rows]


async def cancel_job(pool: asyncpg.Pool, tenant_id: uuid.UUID, job_id: uuid.UUID) -> JobView:
    """Cancel a queued or running job and its unfinished items, once the stores in progress are
    written; raises Conflict if the job already ended, NotFound if there is no such job."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(STOP_STORES, tenant_id, job_id)
        cancelled = await conn.fetchval(CANCEL_JOB, tenant_id, job_id) is not None
        if cancelled:
            await conn.execute(CANCEL_ITEMS, tenant_id, job_id)
    if not cancelled:  # looked up after the transaction: never two connections of the pool at once
        view = await get_job(pool, tenant_id, job_id)
        raise Conflict(f"job {job_id} is already {view.row['status']}; only queued or running jobs can be cancelled")
    METRICS.ingestion_jobs.inc({"status": "cancelled"})
    return await get_job(pool, tenant_id, job_id)


# Across tenants: the operator's console (admin API) only.
ALL_JOBS = f"""SELECT {_JOB_COLUMNS}, t.name AS tenant FROM jobs j JOIN tenants t ON t.id = j.tenant_id
LEFT JOIN sources s ON s.id = j.source_id
WHERE ($1::text IS NULL OR j.status = $1) AND ($2::uuid[] IS NULL OR j.id = ANY($2::uuid[]))
ORDER BY j.created_at DESC LIMIT $3"""
ALL_COUNTS = """SELECT job_id, status, count(*) AS n, coalesce(sum(chunks), 0) AS chunks FROM job_items
WHERE job_id = ANY($1::uuid[]) GROUP BY job_id, status"""


async def list_all_jobs(
    pool: asyncpg.Pool, status: str | None, limit: int, ids: list[uuid.UUID] | None = None
) -> list[dict[str, Any]]:
    """Jobs of every tenant, newest first, each with its tenant's name (admin only)."""
    rows = await pool.fetch(ALL_JOBS, status, ids, limit)
    counts: dict[uuid.UUID, dict[str, tuple[int, int]]] = {r["id"]: {} for r in rows}
    for c in await pool.fetch(ALL_COUNTS, list(counts)):
        counts[c["job_id"]][c["status"]] = (c["n"], c["chunks"])
    return [{**JobView(r, counts[r["id"]], []).to_json(), "tenant": r["tenant"]} for r in rows]


async def tenant_of_job(pool: asyncpg.Pool, job_id: uuid.UUID) -> uuid.UUID:
    """The tenant a job belongs to, for the operator's API; raises NotFound."""
    tenant_id: uuid.UUID | None = await pool.fetchval("SELECT tenant_id FROM jobs WHERE id = $1", job_id)
    if tenant_id is None:
        raise NotFound(f"job {job_id} not found; list jobs with GET /v1/admin/jobs")
    return tenant_id


async def retry_job(pool: asyncpg.Pool, tenant_id: uuid.UUID, job_id: uuid.UUID) -> uuid.UUID:
    """A new job over the same source, with the same priority and parameters; the old one stays as it was."""
    old = await pool.fetchrow(
        "SELECT status, source_id, kind, priority, params FROM jobs WHERE tenant_id = $1 AND id = $2", tenant_id, job_id
    )
    if old is None:
        raise NotFound(f"job {job_id} not found")
    if old["status"] not in TERMINAL:
        raise Conflict(f"job {job_id} is still {old['status']}; cancel it first, or wait for it to end")
    if old["source_id"] is None:
        raise Conflict(f"the source of job {job_id} was deleted; there is nothing to run again")
    new_id: uuid.UUID = await pool.fetchval(
        INSERT_JOB, tenant_id, old["source_id"], old["kind"], old["priority"], old["params"]
    )
    return new_id
