"""The live events feed behind `GET /v1/admin/events`: job changes and periodic snapshots, fanned out.

One hub per server. While at least one subscriber is connected it LISTENs on PostgreSQL channel `bitbd_jobs`
(migration 0008: every change to a job or its items, by any process), fetches the changed jobs at most twice a
second in one query, and builds one snapshot a second (queue depths, workers, job counts, chat figures). Every
subscriber gets the same messages, so ten open consoles cost what one does. With no subscriber it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bitbd.db.pool import connect
from bitbd.jobs import records
from bitbd.jobs.broker import PriorityStreamBroker
from bitbd.metrics import METRICS
from bitbd.settings import Settings

log = logging.getLogger(__name__)
JOB_INTERVAL, SNAPSHOT_INTERVAL = 0.5, 1.0
_QUEUE_SIZE = 100  # messages a slow subscriber may lag behind before it is dropped
_JOB_COUNTS = """SELECT status, count(*) AS n FROM jobs
WHERE status IN ('queued', 'running') OR finished_at > now() - interval '24 hours' GROUP BY status"""
_CHAT_MINUTES = """SELECT floor(extract(epoch FROM now() - created_at) / 60)::int AS ago, count(*) AS n,
count(*) FILTER (WHERE cached) AS hits FROM messages
WHERE role = 'assistant' AND created_at > now() - interval '15 minutes' GROUP BY 1"""
_CHAT_LATENCY = """SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms) AS p
FROM messages WHERE role = 'assistant' AND created_at > now() - interval '5 minutes' AND latency_ms IS NOT NULL"""


async def snapshot(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    broker: PriorityStreamBroker,
    models: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Everything the console's overview shows, in one message; `models`: the answerer's `backlogs()`."""
    try:
        queues: dict[str, Any] = dict(await broker.queue_depths())
        queues["delayed"] = int(await redis.zcard(f"{settings.jobs.queue_prefix}:delayed"))
    except Exception:  # Redis away: the console shows the rest and says so
        queues = {"error": "Redis unreachable"}
    counts = {r["status"]: r["n"] for r in await pool.fetch(_JOB_COUNTS)}
    minutes = [0] * 15
    hits = 0
    for r in await pool.fetch(_CHAT_MINUTES):
        if 0 <= r["ago"] < 15:
            minutes[14 - r["ago"]] = r["n"]
            hits += r["hits"]
    p = await pool.fetchval(_CHAT_LATENCY)
    last = await pool.fetchval("SELECT max(id) FROM messages")  # the primary key's index: one lookup
    answered = sum(minutes)
    return {
        "type": "snapshot",
        "time": datetime.now(UTC).isoformat(),
        "queues": queues,
        "workers": await workers(settings, redis),
        "jobs": {s: counts.get(s, 0) for s in ("queued", "running", "failed", "succeeded", "cancelled")},
        "chat": {
            "per_minute": minutes,
            "answered_15m": answered,
            "p50_ms": round(p[0]) if p and p[0] is not None else None,
            "p95_ms": round(p[1]) if p and p[1] is not None else None,
            "cache_hit_rate": round(hits / answered, 3) if answered else None,
            "connections": _gauge(METRICS.ws_connections.get({})),
            "last_message": str(last) if last is not None else None,  # a new one: the console re-reads questions
        },
        "llm": list(models),
    }


def _gauge(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


async def workers(settings: Settings, redis: aioredis.Redis) -> list[dict[str, Any]]:
    """Processes running tasks, from the heartbeats they keep in Redis (bitbd.jobs.worker)."""
    found = []
    try:
        async for key in redis.scan_iter(f"{settings.jobs.queue_prefix}:workers:*", count=100):
            raw = await redis.get(key)
            if raw:
                found.append(json.loads(raw))
    except Exception:
        return []
    return sorted(found, key=lambda w: str(w.get("id")))


class EventHub:
    """The feed behind `/v1/admin/events`: it runs only while at least one subscriber is connected."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        broker: PriorityStreamBroker,
        models: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self.settings, self.pool, self.redis, self.broker = settings, pool, redis, broker
        self.models = models
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._changed: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of the feed's messages for one subscriber, started if it was not running. A
        subscriber that falls 100 messages behind is dropped from the feed."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE_SIZE)
        self.subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop feeding this queue; with no subscriber left, the feed stops by itself."""
        self.subscribers.discard(queue)

    async def close(self) -> None:
        """Stop the feed, whoever is still subscribed (on shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _publish(self, message: dict[str, Any]) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a console that stopped reading: dropped (its handler closes it)
                self.subscribers.discard(queue)

    async def _run(self) -> None:
        conn: asyncpg.Connection | None = None
        try:
            while self.subscribers:
                try:
                    if conn is None or conn.is_closed():
                        conn = await connect(self.settings.database)
                        await conn.add_listener("bitbd_jobs", lambda *args: self._changed.add(str(args[3])))
                    await self._publish_jobs()
                    await asyncio.sleep(JOB_INTERVAL)
                    await self._publish_jobs()
                    self._publish(await snapshot(self.settings, self.pool, self.redis, self.broker, self.models()))
                    await asyncio.sleep(SNAPSHOT_INTERVAL - JOB_INTERVAL)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                    self._publish(
                        {"type": "error", "message": f"PostgreSQL unreachable ({type(e).__name__}); retrying"}
                    )
                    conn = None
                    await asyncio.sleep(2)
                except Exception:  # a bug must not silence the feed for good
                    log.exception("events feed failed, retrying")
                    await asyncio.sleep(2)
        finally:
            if conn is not None and not conn.is_closed():
                await conn.close()

    async def _publish_jobs(self) -> None:
        if not self._changed:
            return
        ids, self._changed = [uuid.UUID(i) for i in self._changed], set()
        jobs = await records.list_all_jobs(self.pool, None, len(ids), ids)
        if jobs:
            self._publish({"type": "jobs", "jobs": jobs})
