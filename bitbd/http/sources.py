"""Sources: create, list, re-crawl now, schedule re-crawls, delete (secret keys, scoped to the key's tenant)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from bitbd.db.sources import list_sources
from bitbd.errors import InvalidRequest, NotFound
from bitbd.http.auth import require_key
from bitbd.http.body import read_json
from bitbd.http.ingest import parse_id, started
from bitbd.jobs import records, schedule
from bitbd.jobs.broker import Priority
from bitbd.keys import plugins_key, pool_key, settings_key

routes = web.RouteTableDef()
_LIST_HINT = "list sources with GET /v1/sources"


class SourceBody(BaseModel):
    """The body of POST /v1/sources: `type`, `priority`, `refresh` (a duration, or null for never), and the source
    type's own configuration as extra fields."""

    model_config = ConfigDict(extra="allow")
    type: str
    priority: Priority = "normal"
    refresh: Any = None  # a duration string or null: checked by schedule.refresh_seconds, which says what is wrong


class SourcePatch(BaseModel):
    """The body of PATCH /v1/sources/{source}: what can change without a new source."""

    model_config = ConfigDict(extra="forbid")
    refresh: Any = None  # a duration string or null: checked by schedule.refresh_seconds, which says what is wrong


@routes.post("/v1/sources")
async def create_source(request: web.Request) -> web.Response:
    """POST /v1/sources: create a source of a type other than uploads and queue its first job; 202 with
    the job and source ids. The configuration is checked by the source type; `refresh` schedules re-crawls."""
    key = await require_key(request)
    body = await read_json(request, SourceBody)
    settings = request.config_dict[settings_key]
    sources = request.config_dict[plugins_key].sources()
    cls = sources.get(body.type)
    if cls is None or cls.uploads:
        known = ", ".join(sorted(t for t, c in sources.items() if not c.uploads))
        raise InvalidRequest(f"unknown source type {body.type!r}; use one of: {known} (files go to POST /v1/uploads)")
    refresh = schedule.refresh_seconds(body.refresh, settings)
    config = cls.validate(body.model_extra or {}, settings)
    job_id, source_id = await records.create_job(
        request.config_dict[pool_key], key.tenant_id, body.type, config, body.priority, refresh
    )
    return await started(request, job_id, source_id, body.priority)


@routes.get("/v1/sources")
async def get_sources(request: web.Request) -> web.Response:
    """GET /v1/sources: the tenant's sources, oldest first, with their URLs, refresh, last and next crawl, last
    job, documents and chunks."""
    key = await require_key(request)
    return web.json_response({"sources": await list_sources(request.config_dict[pool_key], key.tenant_id)})


async def _one(request: web.Request, tenant_id: Any) -> dict[str, Any]:
    source_id = parse_id(request.match_info["source"], "source")
    found = await list_sources(request.config_dict[pool_key], tenant_id, source_id)
    if not found:
        raise NotFound(f"source {source_id} not found; {_LIST_HINT}")
    return found[0]


@routes.get("/v1/sources/{source}")
async def get_source(request: web.Request) -> web.Response:
    """GET /v1/sources/{source}: one of the tenant's sources, as GET /v1/sources shows it."""
    key = await require_key(request)
    return web.json_response(await _one(request, key.tenant_id))


@routes.patch("/v1/sources/{source}")
async def patch_source(request: web.Request) -> web.Response:
    """PATCH /v1/sources/{source}: change its `refresh` (null: no more scheduled crawls); the next crawl is due a
    refresh after the last one started. Returns the source."""
    key = await require_key(request)
    body = await read_json(request, SourcePatch)
    if "refresh" not in body.model_fields_set:
        raise InvalidRequest('nothing to change: send {"refresh": "6h"}, or {"refresh": null} to stop re-crawls')
    current = await _one(request, key.tenant_id)
    cls = request.config_dict[plugins_key].sources().get(current["type"])
    if body.refresh is not None and (cls is None or cls.uploads):
        raise InvalidRequest(
            f"a {current['type']} source has nothing to re-fetch; upload changed files again with POST /v1/uploads"
        )
    seconds = schedule.refresh_seconds(body.refresh, request.config_dict[settings_key])
    await schedule.set_refresh(request.config_dict[pool_key], key.tenant_id, parse_id(current["id"], "source"), seconds)
    return web.json_response(await _one(request, key.tenant_id))


@routes.post("/v1/sources/{source}/crawl")
async def recrawl(request: web.Request) -> web.Response:
    """POST /v1/sources/{source}/crawl: run one of the tenant's sources again (?priority=high|normal); 202 with
    the new job."""
    key = await require_key(request)
    source_id = parse_id(request.match_info["source"], "source")
    row = await request.config_dict[pool_key].fetchrow(
        "SELECT id FROM sources WHERE tenant_id = $1 AND id = $2", key.tenant_id, source_id
    )
    if row is None:
        raise NotFound(f"source {source_id} not found; {_LIST_HINT}")
    raw = request.query.get("priority", "normal")
    if raw not in ("high", "normal"):
        raise InvalidRequest("priority must be high or normal")
    priority: Priority = "high" if raw == "high" else "normal"
    job_id = await request.config_dict[pool_key].fetchval(
        records.INSERT_JOB, key.tenant_id, source_id, "ingest", priority, "{}"
    )
    return await started(request, job_id, source_id, priority)


@routes.delete("/v1/sources/{source}")
async def delete_source(request: web.Request) -> web.Response:
    """DELETE /v1/sources/{source}: cancel its queued and running jobs and delete it with its
    documents; 204, or 404 if the tenant has no such source."""
    key = await require_key(request)
    source_id = parse_id(request.match_info["source"], "source")
    pool = request.config_dict[pool_key]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE tenant_id = $1 "
            "AND source_id = $2 AND status IN ('queued', 'running')",
            key.tenant_id,
            source_id,
        )
        deleted = await conn.fetchval(
            "DELETE FROM sources WHERE tenant_id = $1 AND id = $2 RETURNING id", key.tenant_id, source_id
        )
    if deleted is None:
        raise NotFound(f"source {source_id} not found; {_LIST_HINT}")
    return web.Response(status=204)
