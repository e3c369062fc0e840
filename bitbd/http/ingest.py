"""Uploads, jobs and documents: the ingestion API (secret keys, always scoped to the key's tenant). Sources:
bitbd.http.sources."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from redis.exceptions import RedisError
from taskiq.exceptions import SendTaskError

from bitbd.db import chunks
from bitbd.errors import InvalidRequest, NotFound, Unavailable, UnsupportedMediaType
from bitbd.http import uploads
from bitbd.http.auth import require_key
from bitbd.http.body import body_deadline
from bitbd.http.params import query_int
from bitbd.jobs import records
from bitbd.jobs.broker import Priority
from bitbd.jobs.engine import START_TASK
from bitbd.jobs.runtime import enqueue
from bitbd.keys import broker_key, plugins_key, pool_key, settings_key, upload_budget_key

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def parse_id(value: str, what: str) -> uuid.UUID:
    """A path's id as a UUID; anything else is a 404 that says ids are UUIDs."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value!r} not found (ids are UUIDs)") from None


async def started(
    request: web.Request, job_id: uuid.UUID, source_id: uuid.UUID, priority: Priority = "normal", **extra: Any
) -> web.Response:
    """Queue the job's first task; 202 with its ids (and a note if Redis is unreachable)."""
    note = await enqueue_start(request, [job_id], priority)
    body = {"job_id": str(job_id), "source_id": str(source_id), **extra, **({"note": note} if note else {})}
    return web.json_response(body, status=202)


async def enqueue_start(request: web.Request, job_ids: list[uuid.UUID], priority: Priority) -> str | None:
    """Queue each job's first task; with Redis down, a note instead of an error (the jobs are stored)."""
    try:
        for job_id in job_ids:
            await enqueue(request.config_dict[broker_key], START_TASK, [str(job_id)], priority)
    except (RedisError, SendTaskError):
        # The jobs are in PostgreSQL; the upkeep loop queues them once Redis answers again. Nothing is lost.
        log.warning("job stored, Redis unreachable: it starts when Redis is back", extra={"jobs": len(job_ids)})
        return "Redis is unreachable right now; the job is saved and starts when Redis is back"
    return None


@routes.post("/v1/reembed")
async def reembed(request: web.Request) -> web.Response:
    """Re-run every source of the tenant: documents embedded by another model are fetched and embedded again."""
    key = await require_key(request)
    jobs = await records.create_rerun_jobs(request.config_dict[pool_key], key.tenant_id)
    note = await enqueue_start(request, [job_id for job_id, _ in jobs], "normal")
    body = {"jobs": [{"job_id": str(j), "source_id": str(s)} for j, s in jobs], **({"note": note} if note else {})}
    return web.json_response(body, status=202)


@routes.post("/v1/uploads")
async def upload(request: web.Request) -> web.Response:
    """POST /v1/uploads: receive the multipart files (within the upload budget), store them and queue a job
    that ingests them; 202 with the ids and the file names."""
    key = await require_key(request)
    if not request.content_type.startswith("multipart/"):
        raise UnsupportedMediaType("send files as multipart/form-data (curl -F file=@guide.pdf)")
    settings = request.config_dict[settings_key]
    taker = request.config_dict[plugins_key].source_with("uploads")
    if taker is None:
        raise Unavailable("no installed source type takes uploads; enable one (plugins.disabled) or install one")
    try:
        # Only receiving the body is under server.body_timeout; storing it (a COPY into PostgreSQL) is not.
        async with uploads.received(
            request,
            key.tenant_id,
            settings.ingest,
            request.config_dict[upload_budget_key],
            settings.data_dir / "uploads",
            body_deadline(request),
        ) as files:
            if not files:
                raise InvalidRequest("no files in the upload; send them as multipart form fields with a filename")
            job_id, source_id = await uploads.store(request.config_dict[pool_key], key.tenant_id, taker.type, files)
    except (ValueError, HttpProcessingError) as e:  # no boundary, a broken part header, ...
        raise InvalidRequest(
            f"malformed multipart body ({str(e).strip()[:200]}); let your HTTP client build it "
            "(curl -F file=@guide.pdf)"
        ) from None
    return await started(request, job_id, source_id, files=[f.name for f in files])


@routes.get("/v1/jobs/{job}")
async def get_job(request: web.Request) -> web.Response:
    """GET /v1/jobs/{job}: one job of the caller's tenant with its progress and errors; 404 if it is another
    tenant's."""
    key = await require_key(request)
    view = await records.get_job(
        request.config_dict[pool_key], key.tenant_id, parse_id(request.match_info["job"], "job")
    )
    return web.json_response(view.to_json())


@routes.get("/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """GET /v1/jobs: the tenant's jobs, newest first, without their errors; ?status= filters, ?limit= 1-500
    (default 50); an empty ?status= is no filter."""
    key = await require_key(request)
    status = request.query.get("status") or None
    if status is not None and status not in ("queued", "running", *records.TERMINAL):
        raise InvalidRequest(f"status must be one of queued, running, {', '.join(records.TERMINAL)}")
    limit = query_int(request, "limit", 50, 1, 500)
    views = await records.list_jobs(request.config_dict[pool_key], key.tenant_id, status, limit)
    return web.json_response({"jobs": [v.to_json() for v in views]})


@routes.post("/v1/jobs/{job}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    """POST /v1/jobs/{job}/cancel: cancel one of the tenant's queued or running jobs; 409 if it has ended."""
    key = await require_key(request)
    view = await records.cancel_job(
        request.config_dict[pool_key], key.tenant_id, parse_id(request.match_info["job"], "job")
    )
    return web.json_response(view.to_json())


@routes.get("/v1/documents")
async def list_documents(request: web.Request) -> web.Response:
    """GET /v1/documents: the tenant's documents, by URL, with their numbers of chunks; ?limit= 1-1000
    (default 100) and ?offset= page through them."""
    key = await require_key(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "offset", 0, 0, 10**9)
    rows = await request.config_dict[pool_key].fetch(
        """SELECT d.id, d.source_id, d.url, d.title, d.content_type, d.bytes, d.fetched_at,
           (SELECT count(*) FROM chunks c WHERE c.tenant_id = $1 AND c.document_id = d.id) AS chunks
           FROM documents d WHERE d.tenant_id = $1 ORDER BY d.url LIMIT $2 OFFSET $3""",
        key.tenant_id,
        limit,
        offset,
    )
    return web.json_response(
        {
            "documents": [
                {
                    "id": str(r["id"]),
                    "source_id": str(r["source_id"]) if r["source_id"] else None,
                    "url": r["url"],
                    "title": r["title"],
                    "content_type": r["content_type"],
                    "bytes": r["bytes"],
                    "chunks": r["chunks"],
                    "fetched_at": r["fetched_at"].isoformat() if r["fetched_at"] else None,
                }
                for r in rows
            ]
        }
    )


@routes.delete("/v1/documents/{document}")
async def delete_document(request: web.Request) -> web.Response:
    """DELETE /v1/documents/{document}: delete one of the tenant's documents and its chunks; 204."""
    key = await require_key(request)
    doc = parse_id(request.match_info["document"], "document")
    if not await chunks.delete_document(request.config_dict[pool_key], key.tenant_id, doc):
        raise NotFound(f"document {doc} not found; list documents with GET /v1/documents")
    return web.Response(status=204)
