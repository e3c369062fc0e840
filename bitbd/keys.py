"""Typed application state keys."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from bitbd.answer.service import Answerer
from bitbd.events import EventHub
from bitbd.http.limits import AuthThrottle, ConnectionCap
from bitbd.http.uploads import UploadBudget
from bitbd.jobs.broker import PriorityStreamBroker
from bitbd.plugins import Plugins
from bitbd.settings import Settings

settings_key = web.AppKey("settings", Settings)
plugins_key = web.AppKey("plugins", Plugins)
pool_key = web.AppKey("pool", asyncpg.Pool)
redis_key = web.AppKey("redis", aioredis.Redis)
broker_key = web.AppKey("broker", PriorityStreamBroker)
answerer_key = web.AppKey("answerer", Answerer)
hub_key = web.AppKey("events", EventHub)
upload_budget_key = web.AppKey("upload_budget", UploadBudget)
# Open WebSockets (chat, events), closed with 1001 when the server stops instead of holding its shutdown.
sockets_key = web.AppKey("sockets", set)
# Failed authentications per client address, and open chat sockets per key (bitbd/http/limits.py).
throttle_key = web.AppKey("auth_throttle", AuthThrottle)
connections_key = web.AppKey("connections", ConnectionCap)
