"""Who is calling: the admin token for /v1/admin, tenant API keys everywhere else."""

from __future__ import annotations

import hmac

from aiohttp import web

from bitbd.errors import Unauthorized
from bitbd.http.middlewares import Handler
from bitbd.keys import pool_key, settings_key
from bitbd.tenancy import ApiKey, KeyKind, authenticate


def bearer(request: web.Request, what: str) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized(f"missing Authorization header; send Authorization: Bearer <{what}>")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(f"Authorization header must be 'Bearer <{what}>'")
    return token.strip()


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = bearer(request, "admin token")
    expected = request.config_dict[settings_key].admin_token.get_secret_value()
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("wrong admin token; it was printed at first start and is kept in the data dir's "
                           "admin_token file (or set BITBD_ADMIN_TOKEN)")
    return await handler(request)


async def require_key(request: web.Request, kind: KeyKind | None = "secret") -> ApiKey:
    """Authenticate the request's bearer key."""
    return await authenticate(request.config_dict[pool_key], bearer(request, "API key"), kind)
