"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bitbd.db.migrate import latest_version
from bitbd.keys import pool_key, redis_key

CHECK_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving HTTP; says nothing about its dependencies."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """PostgreSQL reachable with the schema up to date, and Redis reachable; 503 naming what is not."""
    checks = dict(zip(("postgres", "redis"), await asyncio.gather(_postgres(request), _redis(request)), strict=True))
    ready = all(c["ok"] for c in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable", "checks": checks}
    if not ready:
        failing = ", ".join(f"{name}: {c['error']}" for name, c in checks.items() if not c["ok"])
        body["error"] = {"code": "unavailable", "message": f"not ready: {failing}"}
    return web.json_response(body, status=200 if ready else 503)


async def _postgres(request: web.Request) -> dict[str, Any]:
    want = latest_version()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            have = await request.config_dict[pool_key].fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
    except Exception as e:  # any failure means not ready; the reason is reported, not raised
        return {"ok": False, "error": _reason(e)}
    if have < want:
        return {
            "ok": False,
            "error": f"schema at version {have}, this bitbd needs {want}; run `bitbd migrate`",
            "schema_version": have,
        }
    return {"ok": True, "schema_version": have}


async def _redis(request: web.Request) -> dict[str, Any]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await request.config_dict[redis_key].ping()
    except Exception as e:  # see _postgres
        return {"ok": False, "error": _reason(e)}
    return {"ok": True}


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    return f"{type(e).__name__}: {e}"
