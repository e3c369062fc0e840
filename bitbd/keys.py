"""Typed application state keys. The component types are imported for type checking only, so this module is a
leaf: anything may import it without pulling in the answer service, the event hub or the job queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from bitbd.http.limits import AuthThrottle, ConnectionCap
from bitbd.http.uploads import UploadBudget
from bitbd.plugins import Plugins
from bitbd.settings import Settings

if TYPE_CHECKING:
    from bitbd.answer.service import Answerer
    from bitbd.events import EventHub
    from bitbd.jobs.broker import PriorityStreamBroker
    from bitbd.jobs.runtime import WorkerDeps

settings_key = web.AppKey("settings", Settings)
plugins_key = web.AppKey("plugins", Plugins)
pool_key = web.AppKey("pool", asyncpg.Pool)
redis_key = web.AppKey("redis", aioredis.Redis)
broker_key: web.AppKey[PriorityStreamBroker] = web.AppKey("broker")
# What the job tasks of this process run with; answering shares its embedder (one model in memory) and store.
deps_key: web.AppKey[WorkerDeps] = web.AppKey("worker_deps")
answerer_key: web.AppKey[Answerer] = web.AppKey("answerer")
hub_key: web.AppKey[EventHub] = web.AppKey("events")
upload_budget_key = web.AppKey("upload_budget", UploadBudget)
# Open WebSockets (chat, events), closed with 1001 when the server stops instead of holding its shutdown.
sockets_key = web.AppKey("sockets", set)
# Failed authentications per client address, and open chat sockets per key (bitbd/http/limits.py).
throttle_key = web.AppKey("auth_throttle", AuthThrottle)
connections_key = web.AppKey("connections", ConnectionCap)
