"""`/v1/admin`: tenants, keys and plugins, for the operator (admin token)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from bitbd import tenancy
from bitbd.http.auth import admin_middleware
from bitbd.http.body import read_json
from bitbd.http.console import routes as console_routes
from bitbd.keys import plugins_key, pool_key

routes = web.RouteTableDef()


class CreateTenant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=63)


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["secret", "public"]
    origins: list[str] = Field(default_factory=list, max_length=50)
    name: str = Field("", max_length=100)
    trial: bool = False
    expires_at: AwareDatetime | None = None
    quota: int | None = Field(None, le=tenancy.MAX_QUOTA)  # positive: KeySpec.validated() says so

    def spec(self) -> tenancy.KeySpec:
        expires: datetime | None = self.expires_at
        return tenancy.KeySpec(self.kind, self.origins, self.name, self.trial, expires, self.quota)


@routes.post("/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    body = await read_json(request, CreateTenant)
    tenant = await tenancy.create_tenant(request.config_dict[pool_key], body.name)
    return web.json_response(tenant.to_json(), status=201)


@routes.get("/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    tenants = await tenancy.list_tenants(request.config_dict[pool_key])
    return web.json_response({"tenants": [t.to_json() for t in tenants]})


@routes.get("/tenants/{tenant}")
async def get_tenant(request: web.Request) -> web.Response:
    tenant = await tenancy.get_tenant(request.config_dict[pool_key], request.match_info["tenant"])
    return web.json_response(tenant.to_json())


@routes.delete("/tenants/{tenant}")
async def delete_tenant(request: web.Request) -> web.Response:
    await tenancy.delete_tenant(request.config_dict[pool_key], request.match_info["tenant"])
    return web.Response(status=204)


@routes.post("/tenants/{tenant}/keys")
async def create_key(request: web.Request) -> web.Response:
    body = await read_json(request, CreateKey)
    key, raw = await tenancy.create_key(request.config_dict[pool_key], request.match_info["tenant"], body.spec())
    return web.json_response({**key.to_json(), "key": raw}, status=201)


@routes.get("/tenants/{tenant}/keys")
async def list_keys(request: web.Request) -> web.Response:
    keys = await tenancy.list_keys(request.config_dict[pool_key], request.match_info["tenant"])
    return web.json_response({"keys": [k.to_json() for k in keys]})


@routes.delete("/tenants/{tenant}/keys/{key}")
async def revoke_key(request: web.Request) -> web.Response:
    key = await tenancy.revoke_key(
        request.config_dict[pool_key], request.match_info["tenant"], request.match_info["key"]
    )
    return web.json_response(key.to_json())


@routes.get("/plugins")
async def list_plugins(request: web.Request) -> web.Response:
    plugins = request.config_dict[plugins_key]
    return web.json_response(
        {
            "plugins": [vars(info) for info in plugins.loaded()],
            "skipped": [{"name": n, "reason": r} for n, r in sorted(plugins.skipped.items())],
        }
    )


def admin_app() -> web.Application:
    app = web.Application(middlewares=[admin_middleware])
    app.add_routes(routes)
    app.add_routes(console_routes)
    return app
