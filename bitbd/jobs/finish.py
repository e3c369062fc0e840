"""The end of a job: finished when no item is left open, pages the site no longer has pruned, metrics counted."""

from __future__ import annotations

import json
import logging
import uuid

import asyncpg

from bitbd.jobs.records import SET_RUNNING
from bitbd.jobs.runtime import WorkerDeps
from bitbd.metrics import METRICS

log = logging.getLogger(__name__)

_ENDING = "SELECT j.progress, s.type FROM jobs j JOIN sources s ON s.id = j.source_id WHERE j.id = $1"
_OPEN_ITEMS = "SELECT count(*) FROM job_items WHERE job_id = $1 AND status IN ('queued', 'running')"
_FINISH = """UPDATE jobs SET status = $2, error = $3, finished_at = now(), updated_at = now()
WHERE id = $1 AND status = 'running' RETURNING tenant_id, source_id"""
# Gone: not reached by this crawl at all, or answered 404/410. A page that failed otherwise (timeout, 500) stays.
_GONE = """DELETE FROM documents d WHERE d.tenant_id = $1 AND d.source_id = $2
AND d.last_job_id IS DISTINCT FROM $3
AND NOT EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = $3 AND i.item = d.url
                AND coalesce(i.error, '') !~ '^HTTP 4(04|10) ')
RETURNING d.url"""
_JOB_STATS = """SELECT count(*) FILTER (WHERE i.status IN ('done', 'unchanged')) AS pages,
coalesce(sum(i.chunks), 0) AS chunks,
extract(epoch FROM max(j.finished_at) - max(coalesce(j.started_at, j.created_at))) AS seconds
FROM jobs j LEFT JOIN job_items i ON i.job_id = j.id WHERE j.id = $1 GROUP BY j.id"""


async def finish_if_done(deps: WorkerDeps, job_id: uuid.UUID) -> None:
    """End the job if no item is queued or running any more: failed when every item failed (with the first
    error), else succeeded. Safe to call after every item; only the call that ends the job counts it."""
    if await deps.pool.fetchval(_OPEN_ITEMS, job_id):
        return
    counts = {
        r["status"]: r["n"]
        for r in await deps.pool.fetch(
            "SELECT status, count(*) AS n FROM job_items WHERE job_id = $1 GROUP BY status", job_id
        )
    }
    total = sum(counts.values())
    ok = counts.get("done", 0) + counts.get("unchanged", 0)
    if total and not ok:
        first = await deps.pool.fetchval(
            "SELECT error FROM job_items WHERE job_id = $1 AND error IS NOT NULL ORDER BY id LIMIT 1", job_id
        )
        await finish_job(deps, job_id, "failed", f"all {total} item(s) failed; first: {first}")
    else:
        await finish_job(deps, job_id, "succeeded", None)


async def finish_job(deps: WorkerDeps, job_id: uuid.UUID, status: str, error: str | None) -> None:
    """Mark a running job ended with `status`; a complete, successful crawl of a pruning source also deletes the
    documents it no longer reached (recorded as `progress.removed`)."""
    job = await deps.pool.fetchrow(_ENDING, job_id)
    truncated = bool(job and json.loads(job["progress"]).get("truncated"))
    async with deps.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_FINISH, job_id, status, error)
        if row is not None and status == "succeeded" and not truncated and job is not None and _prunes(deps, job):
            # A complete crawl saw every page the site still links to; what it did not see is gone from the site.
            gone = await conn.fetch(_GONE, row["tenant_id"], row["source_id"], job_id)
            if gone:
                await conn.execute(
                    "UPDATE jobs SET progress = progress || $2::jsonb WHERE id = $1",
                    job_id,
                    json.dumps({"removed": len(gone)}),
                )
    if row is not None:  # this call ended the job (a redelivered task finds it ended already)
        await count_finished(deps, job_id, status)
    log.debug("job finished", extra={"job": str(job_id), "status": status})


def _prunes(deps: WorkerDeps, job: asyncpg.Record) -> bool:
    cls = deps.sources.get(job["type"])
    return cls is not None and cls.prunes


async def count_finished(deps: WorkerDeps, job_id: uuid.UUID, status: str) -> None:
    """Metrics (and the trace's closing span) of a job that just ended: its status, pages, chunks, wall time."""
    stats = await deps.pool.fetchrow(_JOB_STATS, job_id)
    METRICS.ingestion_jobs.inc({"status": status})
    with deps.tracer.span(
        "job finished",
        trace_seed=str(job_id),
        metadata={"job": str(job_id), "status": status, **(dict(stats) if stats else {})},
    ):
        pass
    if stats is not None:
        METRICS.ingestion_pages.observe({}, stats["pages"])
        METRICS.ingestion_chunks.observe({}, stats["chunks"])
        METRICS.ingestion_job_duration.observe({}, float(stats["seconds"] or 0))


async def fail_job(deps: WorkerDeps, job_id: uuid.UUID, error: str) -> None:
    """End a job whose start raised unexpectedly as failed with `error`, whatever state it was left in."""
    await deps.pool.execute(SET_RUNNING, job_id)
    await finish_job(deps, job_id, "failed", error)


async def fail_item(deps: WorkerDeps, item_id: int, error: str) -> None:
    """Mark an item whose ingestion raised unexpectedly as failed, then end its job if it was the last open one."""
    job_id = await deps.pool.fetchval(
        "UPDATE job_items SET status = 'failed', error = $2, updated_at = now() WHERE id = $1 RETURNING job_id",
        item_id,
        error,
    )
    if job_id is not None:
        await finish_if_done(deps, job_id)
