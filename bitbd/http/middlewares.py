"""The one place exceptions become JSON error responses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bitbd.errors import BitbdError, InternalError, error_body

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BitbdError as e:
        return web.json_response(error_body(e), status=e.status)
    except web.HTTPException as e:
        if e.status < 400:  # redirects and the like pass through
            raise
        return web.json_response(error_body(BitbdError.from_http(e)), status=e.status)
    except Exception:
        # Never echo str(exc) to the client: it may hold a DSN or a document.
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return web.json_response(error_body(InternalError()), status=500)
