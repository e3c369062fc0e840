"""The one place exceptions become JSON error responses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from redis.exceptions import RedisError

from bitbd.errors import BitbdError, InternalError, InvalidRequest, Unavailable, error_body

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _refuse_nul(request)
        return await handler(request)
    except BitbdError as e:
        return web.json_response(error_body(e), status=e.status)
    except web.HTTPException as e:
        if e.status < 400:  # redirects and the like pass through
            raise
        # Keep what the client needs from aiohttp's own answer: Allow (405, RFC 9110).
        kept = {k: v for k, v in e.headers.items() if k.lower() == "allow"}
        return web.json_response(error_body(BitbdError.from_http(e)), status=e.status, headers=kept)
    except (RedisError, OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
            asyncpg.AdminShutdownError, asyncpg.InterfaceError) as e:
        # A dependency is down: say which, without details that could hold a DSN, and that it is temporary.
        what = "Redis" if isinstance(e, RedisError) else "PostgreSQL"
        log.warning("dependency unavailable", extra={"dependency": what, "path": request.path,
                                                     "error": type(e).__name__})
        error = Unavailable(f"{what} is unreachable right now; try again shortly (GET /readyz shows what is down)")
        return web.json_response(error_body(error), status=503)
    except asyncpg.CharacterNotInRepertoireError:
        # A NUL (or a byte sequence PostgreSQL refuses) that reached a query by a way _refuse_nul() does not see.
        refused = InvalidRequest("the request holds a character PostgreSQL cannot store (a NUL, \\u0000); remove it")
        return web.json_response(error_body(refused), status=400)
    except Exception:
        # Never echo str(exc) to the client: it may hold a DSN or a document.
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return web.json_response(error_body(InternalError()), status=500)


def _refuse_nul(request: web.Request) -> None:
    """A NUL in the path or the query (`%00`): no name, id or filter can hold one, and PostgreSQL refuses it."""
    if "\x00" in request.path:
        raise InvalidRequest("the URL path holds a NUL character (%00); no name or id contains one")
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest(f"the query parameter {name.replace(chr(0), '%00')!r} holds a NUL character "
                                 "(%00); remove it")
