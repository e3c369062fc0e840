"""`GET /metrics` and the middleware that counts HTTP requests."""

from __future__ import annotations

import time

from aiohttp import web

from bitbd.errors import Unauthorized
from bitbd.http.auth import bearer, same_secret
from bitbd.http.middlewares import Handler
from bitbd.keys import broker_key, settings_key
from bitbd.metrics import METRICS, route_of


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each request and its duration by route pattern and status: a raised `web.HTTPException` (a
    redirect, the router's 404 and 405) by its own status, anything else raised as 500."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = route_of(request)
        METRICS.http_requests.inc({"route": route, "status": str(status)})
        METRICS.http_duration.observe({"route": route}, time.perf_counter() - started)


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text format; with `metrics.token` set, only for `Authorization: Bearer <token>`."""
    expected = request.config_dict[settings_key].metrics.token.get_secret_value()
    if expected:
        given = bearer(request, "metrics.token")  # the scheme in any case, as for every other credential
        if not same_secret(given, expected):  # raised: counted by the failed-authentication throttle
            raise Unauthorized("GET /metrics needs Authorization: Bearer <metrics.token>")
    broker = request.config_dict.get(broker_key)
    if broker is not None:
        try:
            for queue, depth in (await broker.queue_depths()).items():
                METRICS.queue_depth.set({"queue": queue}, depth)
        except Exception:  # Redis away: the last known depths stay, /readyz says what is down
            pass
    return METRICS.response(request)
