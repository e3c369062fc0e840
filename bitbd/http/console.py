"""Admin endpoints behind the operator's console: jobs of every tenant, recent questions, stats, live events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
from aiohttp import WSMsgType, web

from bitbd.errors import InvalidRequest
from bitbd.events import EventHub, snapshot
from bitbd.http.chat import CLOSE_TIMEOUT
from bitbd.http.middlewares import upgraded
from bitbd.http.params import query_int
from bitbd.jobs import records
from bitbd.jobs.engine import START_TASK
from bitbd.jobs.runtime import enqueue
from bitbd.keys import answerer_key, broker_key, hub_key, pool_key, redis_key, settings_key, sockets_key

routes = web.RouteTableDef()
_RECENT = """SELECT a.id, a.conversation_id, a.created_at, a.latency_ms, a.cached, a.refused,
  jsonb_array_length(a.citations) AS citations, left(a.content, 300) AS answer, f.rating,
  t.name AS tenant, (SELECT u.content FROM messages u WHERE u.conversation_id = a.conversation_id
                     AND u.role = 'user' AND u.id < a.id ORDER BY u.id DESC LIMIT 1) AS question
FROM messages a JOIN tenants t ON t.id = a.tenant_id LEFT JOIN feedback f ON f.message_id = a.id
WHERE a.role = 'assistant' ORDER BY a.created_at DESC LIMIT $1"""


async def _job(request: web.Request) -> tuple[asyncpg.Pool, uuid.UUID, uuid.UUID]:
    """The pool, and the tenant and id of the job the path names (any tenant's: this is the operator)."""
    try:
        job_id = uuid.UUID(request.match_info["job"])
    except ValueError:
        raise InvalidRequest(f"{request.match_info['job']!r} is not a job id") from None
    pool = request.config_dict[pool_key]
    return pool, await records.tenant_of_job(pool, job_id), job_id


def _limit(request: web.Request, default: int = 100) -> int:
    return query_int(request, "limit", default, 1, 1000)


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """GET /v1/admin/jobs: jobs of every tenant, newest first, with their tenant's name; ?status= filters,
    ?limit= 1-1000 (default 100)."""
    status = request.query.get("status") or None
    if status is not None and status not in ("queued", "running", *records.TERMINAL):
        raise InvalidRequest(f"status must be queued, running, succeeded, failed or cancelled, got {status!r}")
    jobs = await records.list_all_jobs(request.config_dict[pool_key], status, _limit(request))
    return web.json_response({"jobs": jobs})


@routes.get("/jobs/{job}")
async def get_job(request: web.Request) -> web.Response:
    """GET /v1/admin/jobs/{job}: any tenant's job with its progress and errors; 404 if there is none."""
    view = await records.get_job(*await _job(request))
    return web.json_response(view.to_json())


@routes.post("/jobs/{job}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    """POST /v1/admin/jobs/{job}/cancel: cancel any tenant's queued or running job; 409 if it has ended."""
    view = await records.cancel_job(*await _job(request))
    return web.json_response(view.to_json())


@routes.post("/jobs/{job}/retry")
async def retry_job(request: web.Request) -> web.Response:
    """Run a failed (or cancelled, or finished) job's source again, as a new job."""
    pool, tenant_id, job_id = await _job(request)
    new_id = await records.retry_job(pool, tenant_id, job_id)
    view = await records.get_job(pool, tenant_id, new_id)
    await enqueue(request.config_dict[broker_key], START_TASK, [str(new_id)], view.row["priority"])
    return web.json_response({**view.to_json(), "retry_of": str(job_id)}, status=202)


@routes.get("/questions")
async def recent_questions(request: web.Request) -> web.Response:
    """GET /v1/admin/questions: the latest answers of all tenants with their question, the answer's start,
    whether it refused, its rating, latency, cache hit and number of citations; ?limit= 1-1000 (default 50)."""
    rows = await request.config_dict[pool_key].fetch(_RECENT, _limit(request, 50))
    return web.json_response(
        {
            "questions": [
                {
                    "message_id": str(r["id"]),
                    "conversation_id": str(r["conversation_id"]),
                    "tenant": r["tenant"],
                    "question": r["question"],
                    "answer": r["answer"],  # its first 300 characters
                    "refused": r["refused"],
                    "rating": r["rating"],
                    "latency_ms": r["latency_ms"],
                    "cached": r["cached"],
                    "citations": r["citations"],
                    "created_at": r["created_at"].isoformat(),
                }
                for r in rows
            ]
        }
    )


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    """GET /v1/admin/stats: one snapshot, as the events feed sends every second."""
    app = request.config_dict
    return web.json_response(
        await snapshot(app[settings_key], app[pool_key], app[redis_key], app[broker_key], app[answerer_key].backlogs())
    )


@routes.get("/events")
async def events(request: web.Request) -> web.StreamResponse:
    """A WebSocket of `snapshot` (every second) and `jobs` (as they change) messages: docs/protocol.md."""
    ws = web.WebSocketResponse(heartbeat=30, timeout=CLOSE_TIMEOUT)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest("this endpoint speaks WebSocket only (GET with Upgrade: websocket)")
    await ws.prepare(request)
    upgraded(ws)
    request.config_dict[sockets_key].add(ws)
    hub: EventHub = request.config_dict[hub_key]
    queue = hub.subscribe()
    app = request.config_dict
    reader = asyncio.create_task(_drain(ws))
    try:  # from the subscription on: a first snapshot that fails (PostgreSQL down) must not leave it behind
        await ws.send_json(
            await snapshot(
                app[settings_key], app[pool_key], app[redis_key], app[broker_key], app[answerer_key].backlogs()
            )
        )
        while not reader.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, reader}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if queue not in hub.subscribers:  # it fell too far behind and was dropped
                    await ws.close(code=4429, message=b"too slow")
                    break
                continue
            await ws.send_json(getter.result())
    except ConnectionResetError:
        pass
    finally:
        hub.unsubscribe(queue)
        request.config_dict[sockets_key].discard(ws)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return ws


async def _drain(ws: web.WebSocketResponse) -> Any:
    """Read (and ignore) what the client sends, so that pings are answered and a close is noticed."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
