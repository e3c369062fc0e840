"""`/v1/admin`: tenants, keys and plugins, for the operator (admin token)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from bitbd import tenancy
from bitbd.db.sources import list_sources
from bitbd.http.auth import admin_middleware
from bitbd.http.body import read_json
from bitbd.http.console import routes as console_routes
from bitbd.http.gaps import admin_routes as gap_admin_routes
from bitbd.keys import plugins_key, pool_key

routes = web.RouteTableDef()


class CreateTenant(BaseModel):
    """The body of POST /v1/admin/tenants."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=63)


class CreateKey(BaseModel):
    """The body of POST /v1/admin/tenants/{tenant}/keys; `KeySpec.validated()` checks how its fields combine."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["secret", "public"]
    origins: list[str] = Field(default_factory=list, max_length=50)
    name: str = Field("", max_length=100)
    trial: bool = False
    expires_at: AwareDatetime | None = None
    quota: int | None = Field(None, le=tenancy.MAX_QUOTA)  # positive: KeySpec.validated() says so

    def spec(self) -> tenancy.KeySpec:
        """The body as the `KeySpec` that `tenancy.create_key` validates."""
        expires: datetime | None = self.expires_at
        return tenancy.KeySpec(self.kind, self.origins, self.name, self.trial, expires, self.quota)


@routes.post("/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    """POST /v1/admin/tenants: create a tenant; 201 with it, 409 if the name is taken."""
    body = await read_json(request, CreateTenant)
    tenant = await tenancy.create_tenant(request.config_dict[pool_key], body.name)
    return web.json_response(tenant.to_json(), status=201)


@routes.get("/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    """GET /v1/admin/tenants: every tenant with its counts (active keys, documents, chunks, questions)
    and last crawl."""
    tenants = await tenancy.list_tenants(request.config_dict[pool_key])
    return web.json_response({"tenants": [t.to_json() for t in tenants]})


@routes.get("/tenants/{tenant}")
async def get_tenant(request: web.Request) -> web.Response:
    """GET /v1/admin/tenants/{tenant}: one tenant, by id or name; 404 if there is none."""
    tenant = await tenancy.get_tenant(request.config_dict[pool_key], request.match_info["tenant"])
    return web.json_response(tenant.to_json())


@routes.delete("/tenants/{tenant}")
async def delete_tenant(request: web.Request) -> web.Response:
    """DELETE /v1/admin/tenants/{tenant}: delete the tenant and all its data; 204."""
    await tenancy.delete_tenant(request.config_dict[pool_key], request.match_info["tenant"])
    return web.Response(status=204)


@routes.get("/tenants/{tenant}/sources")
async def list_tenant_sources(request: web.Request) -> web.Response:
    """GET /v1/admin/tenants/{tenant}/sources: the tenant's sources as GET /v1/sources shows them."""
    pool = request.config_dict[pool_key]
    tenant = await tenancy.get_tenant(pool, request.match_info["tenant"])
    return web.json_response({"sources": await list_sources(pool, tenant.id)})


@routes.post("/tenants/{tenant}/keys")
async def create_key(request: web.Request) -> web.Response:
    """POST /v1/admin/tenants/{tenant}/keys: create a key; 201 with it and its secret `key`, shown only this once."""
    body = await read_json(request, CreateKey)
    key, raw = await tenancy.create_key(request.config_dict[pool_key], request.match_info["tenant"], body.spec())
    return web.json_response({**key.to_json(), "key": raw}, status=201)


@routes.get("/tenants/{tenant}/keys")
async def list_keys(request: web.Request) -> web.Response:
    """GET /v1/admin/tenants/{tenant}/keys: the tenant's keys with their status; never their secrets."""
    keys = await tenancy.list_keys(request.config_dict[pool_key], request.match_info["tenant"])
    return web.json_response({"keys": [k.to_json() for k in keys]})


@routes.delete("/tenants/{tenant}/keys/{key}")
async def revoke_key(request: web.Request) -> web.Response:
    """DELETE /v1/admin/tenants/{tenant}/keys/{key}: revoke a key by id or prefix; 200 with the revoked key."""
    key = await tenancy.revoke_key(
        request.config_dict[pool_key], request.match_info["tenant"], request.match_info["key"]
    )
    return web.json_response(key.to_json())


@routes.get("/plugins")
async def list_plugins(request: web.Request) -> web.Response:
    """GET /v1/admin/plugins: the loaded plugins (name, version, module, hooks), and the skipped ones with why."""
    plugins = request.config_dict[plugins_key]
    return web.json_response(
        {
            "plugins": [vars(info) for info in plugins.loaded()],
            "skipped": [{"name": n, "reason": r} for n, r in sorted(plugins.skipped.items())],
        }
    )


def admin_app() -> web.Application:
    """The sub-app mounted at /v1/admin: these routes and the console's, all behind the admin token."""
    app = web.Application(middlewares=[admin_middleware])
    app.add_routes(routes)
    app.add_routes(console_routes)
    app.add_routes(gap_admin_routes)
    return app
