"""Content gaps: `GET /v1/gaps` (a tenant's secret key) and `GET /v1/admin/gaps?tenant=` (the operator's console)."""

from __future__ import annotations

import uuid

from aiohttp import web

from bitbd import tenancy
from bitbd.answer.gaps import content_gaps
from bitbd.errors import InvalidRequest
from bitbd.http.auth import caller_of
from bitbd.http.params import query_int
from bitbd.keys import answerer_key, pool_key

routes = web.RouteTableDef()  # mounted at /
admin_routes = web.RouteTableDef()  # mounted in the /v1/admin sub-app


def _days(request: web.Request) -> int:
    return query_int(request, "days", 30, 1, 3650)


async def _gaps(request: web.Request, tenant_id: uuid.UUID, days: int) -> web.Response:
    answerer = request.config_dict[answerer_key]
    low = min(1.0, answerer.settings.answer.min_support + 0.1)
    topics = await content_gaps(request.config_dict[pool_key], answerer.retriever, tenant_id, days, low)
    return web.json_response({"days": days, "low_support": round(low, 3), "topics": topics})


@routes.get("/v1/gaps")
async def gaps(request: web.Request) -> web.Response:
    """GET /v1/gaps?days=30: what the tenant's visitors asked that bitbd could not answer well (refused, rated
    down, or answered on support under `answer.min_support` + 0.1), grouped into topics, the largest first."""
    caller = await caller_of(request)
    return await _gaps(request, caller.tenant_id, _days(request))


@admin_routes.get("/gaps")
async def admin_gaps(request: web.Request) -> web.Response:
    """GET /v1/admin/gaps?tenant=NAME&days=30: a tenant's content gaps, as GET /v1/gaps shows them."""
    days = _days(request)  # checked first: a wrong ?days= is named whatever else is missing
    ref = request.query.get("tenant", "")
    if not ref:
        raise InvalidRequest("name the tenant: /v1/admin/gaps?tenant=NAME")
    tenant = await tenancy.get_tenant(request.config_dict[pool_key], ref)
    return await _gaps(request, tenant.id, days)
