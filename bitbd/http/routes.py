"""The route table of the daemon."""

from __future__ import annotations

from aiohttp import web

from bitbd.http import health, widget
from bitbd.http.admin import admin_app
from bitbd.http.auth import require_key
from bitbd.http.chat import chat
from bitbd.http.conversations import routes as conversation_routes
from bitbd.http.gaps import routes as gap_routes
from bitbd.http.ingest import routes as ingest_routes
from bitbd.http.metrics import metrics
from bitbd.http.search import routes as search_routes
from bitbd.http.sources import routes as source_routes
from bitbd.keys import pool_key
from bitbd.tenancy import get_tenant

OPENAPI = widget.STATIC / "openapi.yaml"


async def whoami(request: web.Request) -> web.Response:
    """The caller's tenant and key: lets a client check its secret key."""
    key = await require_key(request, "secret")
    tenant = await get_tenant(request.config_dict[pool_key], str(key.tenant_id))
    return web.json_response({"tenant": tenant.to_json(), "key": key.to_json()})


async def openapi(request: web.Request) -> web.StreamResponse:
    """The OpenAPI document of this API (bitbd/static/openapi.yaml)."""
    return web.Response(
        body=widget.static_file(OPENAPI.name),
        content_type="application/yaml",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=300"},
    )


def setup_routes(app: web.Application) -> None:
    """Add the daemon's routes: health, metrics, OpenAPI, the widget and its demo, the /v1 API, and the
    /v1/admin sub-app."""
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.yaml", openapi)
    app.router.add_get("/widget.js", widget.widget_js)
    app.router.add_get("/demo", widget.demo)
    app.router.add_get("/v1/tenant", whoami)
    app.router.add_routes(source_routes)
    app.router.add_routes(ingest_routes)
    app.router.add_routes(search_routes)
    app.router.add_routes(conversation_routes)
    app.router.add_routes(gap_routes)
    app.router.add_get("/v1/chat", chat)
    app.add_subapp("/v1/admin", admin_app())
