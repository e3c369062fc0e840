"""Who is calling: the admin token for /v1/admin, tenant API keys everywhere else."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from bitbd.answer.outcome import Caller
from bitbd.errors import InvalidRequest, OriginNotAllowed, Unauthorized
from bitbd.http.middlewares import Handler
from bitbd.keys import pool_key, settings_key, throttle_key
from bitbd.tenancy import ApiKey, KeyKind, authenticate, get_tenant, normalize_origin

log = logging.getLogger(__name__)


def bearer(request: web.Request, what: str) -> str:
    """The token of the request's `Authorization: Bearer` header; Unauthorized if it is missing, malformed or
    not ASCII. `what` names the expected credential in the message."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized(f"missing Authorization header; send Authorization: Bearer <{what}>")
    if not header.isascii():
        # Bytes that are not ASCII (aiohttp hands non-UTF-8 ones over as surrogate escapes): no key or token has any.
        raise Unauthorized(
            f"the Authorization header holds non-ASCII bytes; send Authorization: Bearer <{what}> "
            "with the key exactly as it was given (keys and tokens are ASCII)"
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(f"Authorization header must be 'Bearer <{what}>'")
    return token.strip()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the configured one (non-empty)."""
    return bool(expected) and given.isascii() and hmac.compare_digest(given.encode(), expected.encode())


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin sub-app's guard: every request needs the admin token as its bearer token (throttled)."""
    async with request.config_dict[throttle_key].attempt(request):
        token = bearer(request, "admin token")
        expected = request.config_dict[settings_key].admin_token.get_secret_value()
        if not same_secret(token, expected):
            raise Unauthorized(
                "wrong admin token; it was printed at first start and is kept in the data dir's "
                "admin_token file (or set BITBD_ADMIN_TOKEN)"
            )
    return await handler(request)


# Every credential check runs inside the throttle's attempt(): attempts in flight count against
# auth.max_failures, so a burst of wrong keys cannot all pass before the first lookup has failed.


async def require_key(request: web.Request, kind: KeyKind | None = "secret") -> ApiKey:
    """Authenticate the request's bearer key."""
    async with request.config_dict[throttle_key].attempt(request):
        return await authenticate(request.config_dict[pool_key], bearer(request, "API key"), kind)


async def caller_of(request: web.Request, public: bool = False) -> Caller:
    """Who is asking: a secret key (Authorization header), a public key bound to the request's Origin (`?key=`,
    when `public`), or the admin token with `?tenant=NAME` (the operator trying a tenant out, e.g. `bitbd ask`)."""
    async with request.config_dict[throttle_key].attempt(request):
        return await _caller(request, public)


async def _caller(request: web.Request, public: bool) -> Caller:
    pool = request.config_dict[pool_key]
    in_query = request.query.get("key", "")
    if in_query:
        if not in_query.isascii():
            raise Unauthorized("the ?key= holds non-ASCII characters; public keys are ASCII (pk_…), copy it again")
        if in_query.startswith("sk_"):
            raise Unauthorized(
                "secret keys must not be put in URLs (they end up in logs); send them as "
                "Authorization: Bearer sk_…, and give browsers a public key (pk_…) instead"
            )
        if not public:
            raise Unauthorized("this endpoint needs a secret key in the Authorization header, not ?key=")
        key = await authenticate(pool, in_query, "public")
        check_origin(request, key)
        return Caller(key.tenant_id, key)
    token = bearer(request, "API key")
    admin = request.config_dict[settings_key].admin_token.get_secret_value()
    if same_secret(token, admin):
        ref = request.query.get("tenant", "")
        if not ref:
            raise InvalidRequest("with the admin token, name the tenant to act for: ?tenant=NAME")
        return Caller((await get_tenant(pool, ref)).id)
    key = await authenticate(pool, token, None if public else "secret")
    if key.kind == "public":
        check_origin(request, key)
    return Caller(key.tenant_id, key)


def check_origin(request: web.Request, key: ApiKey) -> None:
    """A public key works only from the origins it is bound to (the browser's Origin header)."""
    origin = request.headers.get("Origin", "").encode("ascii", "backslashreplace").decode()  # logged and shown
    try:
        normalized = normalize_origin(origin) if origin else ""
    except InvalidRequest:
        normalized = ""
    if normalized not in key.origins:
        log.warning("public key used from a foreign origin", extra={"key": key.prefix, "origin": origin[:200]})
        shown = origin[:200] or "none (not a browser)"
        raise OriginNotAllowed(
            f"this public key does not work on this site (origin {shown}); the site's owner "
            "must add this origin to the key's allowed origins"
        )
