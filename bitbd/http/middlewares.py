"""The one place exceptions become JSON error responses."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

import asyncpg
from aiohttp import WSCloseCode, web
from redis.exceptions import RedisError

from bitbd.errors import (
    BitbdError,
    InternalError,
    InvalidRequest,
    InvalidText,
    Unauthorized,
    Unavailable,
    error_body,
)
from bitbd.http.limits import presents_credentials
from bitbd.keys import throttle_key

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# The WebSocket a handler upgraded this request to (set by upgraded()); handlers run in the middleware's task, so
# the middleware sees what they set.
_socket: ContextVar[web.WebSocketResponse | None] = ContextVar("bitbd_upgraded_socket", default=None)


def upgraded(ws: web.WebSocketResponse) -> None:
    """Call right after `ws.prepare()`: from then on an error closes the socket (1011) instead of being answered
    with an HTTP response, which would be written into the WebSocket stream."""
    _socket.set(ws)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into the JSON error body (or, once the request was upgraded, a 1011 close);
    NULs in the URL and throttled addresses are refused first, and a failed authentication is counted."""
    token = _socket.set(None)
    try:
        return await _answer(request, handler)
    finally:
        _socket.reset(token)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _refuse_nul(request)
        if presents_credentials(request):
            request.config_dict[throttle_key].check(request)
        return await handler(request)
    except BitbdError as e:
        if isinstance(e, Unauthorized) and presents_credentials(request):
            request.config_dict[throttle_key].failed(request)
        return await _refusal(request, e)
    except web.HTTPException as e:
        if e.status < 400:  # redirects and the like pass through
            raise
        # Keep what the client needs from aiohttp's own answer: Allow (405, RFC 9110).
        kept = {k: v for k, v in e.headers.items() if k.lower() == "allow"}
        return await _refusal(request, BitbdError.from_http(e), kept)
    except Exception as e:
        return await _refusal(request, _unexpected(request, e))


def _unexpected(request: web.Request, e: Exception) -> BitbdError:
    """What a client may learn of an exception that is not ours: a dependency outage by name, else `internal`."""
    if isinstance(
        e,
        RedisError
        | OSError
        | asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.AdminShutdownError
        | asyncpg.InterfaceError,
    ):
        # A dependency is down: say which, without details that could hold a DSN, and that it is temporary.
        what = "Redis" if isinstance(e, RedisError) else "PostgreSQL"
        log.warning(
            "dependency unavailable", extra={"dependency": what, "path": request.path, "error": type(e).__name__}
        )
        return Unavailable(f"{what} is unreachable right now; try again shortly (GET /readyz shows what is down)")
    if isinstance(e, asyncpg.CharacterNotInRepertoireError):
        # A NUL (or a byte sequence PostgreSQL refuses) that reached a query by a way the checks do not see.
        return InvalidText("the request holds a character PostgreSQL cannot store (a NUL, \\u0000); remove it")
    # Never echo str(exc) to the client: it may hold a DSN or a document.
    log.exception("unhandled error", extra={"path": request.path, "method": request.method})
    return InternalError()


async def _refusal(
    request: web.Request, error: BitbdError, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """The JSON error response, unless the request was upgraded to a WebSocket: its socket speaks WebSocket frames
    now, so it gets a close frame (1011) instead of an HTTP response written into the stream."""
    ws = _socket.get()
    if ws is not None:
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=error.code.encode())
        return ws
    headers = dict(headers or {})
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return web.json_response(error_body(error), status=error.status, headers=headers)


def _refuse_nul(request: web.Request) -> None:
    """A NUL in the path or the query (`%00`): no name, id or filter can hold one, and PostgreSQL refuses it."""
    if "\x00" in request.path:
        raise InvalidRequest("the URL path holds a NUL character (%00); no name or id contains one")
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest(
                f"the query parameter {name.replace(chr(0), '%00')!r} holds a NUL character (%00); remove it"
            )
