"""The aiohttp application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import WSCloseCode, web

from bitbd.answer.service import Answerer
from bitbd.db.pool import migrate_database, open_pool
from bitbd.errors import ConfigError
from bitbd.events import EventHub
from bitbd.http.limits import AuthThrottle, ConnectionCap
from bitbd.http.metrics import metrics_middleware
from bitbd.http.middlewares import error_middleware
from bitbd.http.routes import setup_routes
from bitbd.http.uploads import UploadBudget, tenant_share
from bitbd.jobs.runtime import deps_of
from bitbd.jobs.worker import running_broker
from bitbd.keys import (
    answerer_key,
    broker_key,
    connections_key,
    deps_key,
    hub_key,
    plugins_key,
    pool_key,
    redis_key,
    settings_key,
    sockets_key,
    throttle_key,
    upload_budget_key,
)
from bitbd.plugins import Plugins, load_plugins
from bitbd.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, plugins: Plugins | None = None) -> web.Application:
    """Build the daemon's app; resources open on start-up, in order, and close in reverse."""
    if not settings.admin_token.get_secret_value():
        raise ConfigError("no admin token: set admin_token (BITBD_ADMIN_TOKEN), or start with `bitbd serve`")
    if settings.embedded_postgres or settings.embedded_redis:
        raise ConfigError("create_app() needs a database DSN and a Redis URL; `bitbd serve` starts embedded ones")
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware], client_max_size=settings.server.max_body_bytes
    )
    app[settings_key] = settings
    app[plugins_key] = plugins if plugins is not None else load_plugins(settings.plugins.disabled)
    app.cleanup_ctx.extend([db_ctx, redis_ctx, jobs_ctx, answer_ctx])
    app[sockets_key] = set()
    app[upload_budget_key] = UploadBudget(
        settings.ingest.upload_budget_bytes,
        tenant_share(settings.ingest.upload_budget_bytes, settings.ingest.max_request_bytes),
    )
    app[throttle_key] = AuthThrottle(settings.auth)
    app[connections_key] = ConnectionCap(settings.chat)
    app.on_shutdown.append(close_sockets)
    setup_routes(app)
    app[plugins_key].register_routes(app)
    return app


async def close_sockets(app: web.Application) -> None:
    """Tell every open WebSocket that the server is going away (1001), so that shutdown does not wait for them."""
    sockets: set[web.WebSocketResponse] = app[sockets_key]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


async def db_ctx(app: web.Application) -> AsyncIterator[None]:
    """Migrate the schema, then open the PostgreSQL pool (`pool_key`); the pool is closed on shutdown."""
    db = app[settings_key].database
    applied = await migrate_database(db)  # before the pool: 0001 creates the vector type its codec needs
    if applied:
        log.debug("schema migrated", extra={"migrations": applied})
    app[pool_key] = await open_pool(db)
    yield
    await app[pool_key].close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis client (`redis_key`), with the configured timeouts; closed on shutdown."""
    cfg = app[settings_key].redis
    app[redis_key] = aioredis.Redis.from_url(
        cfg.url.get_secret_value(),
        socket_timeout=cfg.timeout,
        socket_connect_timeout=cfg.timeout,
        health_check_interval=30,
    )
    yield
    await app[redis_key].aclose()


async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """The job queue; with jobs.workers > 0 this process also runs ingestion tasks."""
    settings = app[settings_key]
    async with running_broker(settings, app[pool_key], app[plugins_key], settings.jobs.workers) as broker:
        app[broker_key] = broker
        app[deps_key] = deps_of(broker)
        yield


async def answer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Answering shares the workers' embedder (one model in memory) and vector store."""
    deps = app[deps_key]
    answerer = Answerer.create(
        app[settings_key], app[pool_key], app[redis_key], app[plugins_key], deps.embedder, deps.store
    )
    app[answerer_key] = answerer
    app[hub_key] = EventHub(app[settings_key], app[pool_key], app[redis_key], app[broker_key], answerer.backlogs)
    yield
    await app[hub_key].close()
    await answerer.close()
    # Spans still buffered go out now (in a thread: the exporter blocks for at most tracing.timeout).
    await asyncio.to_thread(answerer.tracer.flush)
