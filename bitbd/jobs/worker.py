"""Running workers (in `bitbd serve` or as `bitbd worker`) and the queue's upkeep loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from taskiq.receiver import Receiver

from bitbd import prepared
from bitbd.answer import conversations
from bitbd.ingest import offload
from bitbd.jobs import schedule
from bitbd.jobs.broker import PriorityStreamBroker, build_broker
from bitbd.jobs.engine import ITEM_TASK, START_TASK
from bitbd.jobs.finish import finish_if_done
from bitbd.jobs.runtime import WorkerDeps, enqueue
from bitbd.jobs.tasks import register_tasks
from bitbd.plugins import Plugins
from bitbd.settings import Settings

log = logging.getLogger(__name__)
EXPIRE_EVERY = 600  # upkeep ticks (seconds) between deletions of conversations past their retention
UPKEEP_SECONDS = 1.0
HEARTBEAT_TTL = 10
PREPARE_IDLE = 300.0  # seconds between looks for chunks without prepared vectors, once there are none
STARTUP_GRACE = 5.0
_STUCK = """SELECT i.id, j.priority FROM job_items i JOIN jobs j ON j.id = i.job_id
WHERE i.status IN ('queued', 'running') AND j.status IN ('queued', 'running')
AND i.updated_at < now() - make_interval(secs => $1) ORDER BY i.id LIMIT 1000"""
_STUCK_JOBS = """SELECT id, priority FROM jobs WHERE status IN ('queued', 'running')
AND updated_at < now() - make_interval(secs => $1)
AND NOT EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = jobs.id AND i.status IN ('queued', 'running'))"""


@contextlib.asynccontextmanager
async def running_broker(
    settings: Settings, pool: asyncpg.Pool, plugins: Plugins, workers: int, role: str = "serve"
) -> AsyncIterator[PriorityStreamBroker]:
    """A started broker with tasks registered; with `workers` > 0 this process also executes tasks."""
    broker = build_broker(settings)
    register_tasks(broker)
    deps = await WorkerDeps.create(settings, pool, plugins, broker)
    broker.state.deps = deps
    # '' is a document whose first embedding was interrupted (a crash mid-page): redone by its job, not stale.
    stale = await pool.fetchval(
        "SELECT count(*) FROM documents WHERE embedding_model NOT IN ('', $1)", deps.embedder.model_name
    )
    if stale:
        log.warning(
            "documents embedded by another model; search quality suffers until they are re-embedded with "
            "`bitbd reembed --tenant T` or POST /v1/reembed",
            extra={"documents": stale, "model": deps.embedder.model_name},
        )
    if workers > 0:
        broker.is_worker_process = True
    stop = asyncio.Event()
    # Loops are asked to stop, not cancelled: redis-py can turn a cancellation that lands inside a command into
    # an ordinary error, which a retrying loop would swallow and carry on.
    # The model loads on first use (about 0.6 s): an idle daemon does not hold it in memory.
    loops = [asyncio.create_task(_serve_queue(broker, deps, workers, stop, role))]
    try:
        yield broker
    finally:
        stop.set()
        _, late = await asyncio.wait(loops, timeout=30)
        for task in late:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        offload.shutdown()  # an extraction still running (a parser stuck for good) must not hold up the exit
        await deps.close()
        await broker.shutdown()


async def _serve_queue(
    broker: PriorityStreamBroker, deps: WorkerDeps, workers: int, stop: asyncio.Event, role: str
) -> None:
    """Start the broker once Redis answers (the daemon serves HTTP meanwhile), then work until `stop`."""
    delay = 0.5
    while not stop.is_set():
        try:
            await broker.startup()
            break
        except Exception as e:
            log.warning("Redis unreachable, jobs wait for it", extra={"error": f"{type(e).__name__}: {e}"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
    loops = [asyncio.create_task(upkeep(deps, stop))]
    if workers > 0:
        loops.append(asyncio.create_task(heartbeat(deps, workers, role, stop)))
        loops.append(asyncio.create_task(prepare_old_chunks(deps, stop)))
        receiver = Receiver(broker, run_startup=False, max_async_tasks=workers, max_prefetch=0)
        loops.append(asyncio.create_task(receiver.listen(stop)))  # lets running tasks finish, then returns
    await asyncio.gather(*loops)


async def heartbeat(deps: WorkerDeps, workers: int, role: str, stop: asyncio.Event) -> None:
    """Say in Redis that this process runs tasks (the console's workers list); gone 10 s after it stops."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    key = f"{deps.settings.jobs.queue_prefix}:workers:{me}"
    value = json.dumps({"id": me, "role": role, "concurrency": workers, "started": datetime.now(UTC).isoformat()})
    redis = aioredis.Redis(connection_pool=deps.broker.connection_pool)
    try:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # Redis away: the entry expires, and comes back with Redis
                await redis.set(key, value, ex=HEARTBEAT_TTL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_TTL / 3)
        with contextlib.suppress(Exception):
            await redis.delete(key)
    finally:
        await redis.aclose(close_connection_pool=False)


async def prepare_old_chunks(deps: WorkerDeps, stop: asyncio.Event) -> None:
    """Make the prepared vectors (bitbd/prepared.py) of chunks stored without them (before sql/0017), a batch at
    a time beside the queue's work, until none is left; then look again every `PREPARE_IDLE` seconds."""
    while not stop.is_set():
        done = 0
        try:
            left = await deps.pool.fetchval("SELECT count(*) FROM chunks WHERE prepared IS NULL")
            if left and deps.preparers:
                log.info("preparing answer vectors of chunks stored without them", extra={"chunks": left})
                while not stop.is_set() and (n := await prepared.backfill(deps.pool, deps.preparers, deps.embedder)):
                    done += n
                log.info("prepared answer vectors", extra={"chunks": done})
        except Exception:  # PostgreSQL away, or the model failed: the answers embed what they need meanwhile
            log.warning("preparing answer vectors failed, retrying", exc_info=log.isEnabledFor(logging.DEBUG))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PREPARE_IDLE)


async def upkeep(deps: WorkerDeps, stop: asyncio.Event) -> None:
    """Start the re-crawls due, move due retries to the queue, re-queue work whose message was lost, and delete
    conversations past `retention.conversations_days`; every second until `stop`."""
    lost_after = deps.settings.jobs.redelivery_seconds * 2
    tick = 0
    while not stop.is_set():
        try:
            for job_id in await schedule.claim_due(deps.pool):  # the job is stored: queued later if Redis fails
                await enqueue(deps.broker, START_TASK, [str(job_id)], "normal")
            await deps.delayed.move_due(lambda task, args, prio: enqueue(deps.broker, task, args, prio))
            if tick % 10 == 0:  # at start-up too: work a dead process left behind is picked up at once
                # Never younger than a few seconds: a job just created may not have its message queued yet.
                await requeue_lost(deps, STARTUP_GRACE if tick == 0 else lost_after)
            if tick % EXPIRE_EVERY == 0:  # idempotent: several processes doing it at once is harmless
                gone = await conversations.expire(deps.pool, deps.settings.retention.conversations_days)
                if gone:
                    log.info("deleted conversations past retention", extra={"conversations": gone})
        except Exception:  # Redis or PostgreSQL away for a moment; keep trying
            log.warning("queue upkeep failed, retrying", exc_info=log.isEnabledFor(logging.DEBUG))
        tick += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), UPKEEP_SECONDS)


async def requeue_lost(deps: WorkerDeps, older_than: float) -> int:
    """Re-queue items (and finish jobs) the queue no longer knows about, e.g. after Redis lost its data.

    Only when both streams are empty: with messages waiting or running, old items are just queued behind them,
    and redelivery of a dead worker's tasks is the broker's job. Tasks are idempotent, so a rare double is harmless.
    """
    depths = await deps.broker.queue_depths()
    if any(depths.values()):
        return 0
    rows = await deps.pool.fetch(_STUCK, older_than)
    await deps.pool.execute(
        "UPDATE job_items SET updated_at = now() WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
    )
    for row in rows:
        await enqueue(deps.broker, ITEM_TASK, [row["id"]], row["priority"])
    for job in await deps.pool.fetch(_STUCK_JOBS, older_than):
        started = await deps.pool.fetchval("SELECT count(*) FROM job_items WHERE job_id = $1", job["id"])
        if started:
            await finish_if_done(deps, job["id"])
        else:
            await deps.pool.execute("UPDATE jobs SET updated_at = now() WHERE id = $1", job["id"])
            await enqueue(deps.broker, START_TASK, [str(job["id"])], job["priority"])
    if rows:
        log.info("re-queued lost work", extra={"items": len(rows)})
    return len(rows)
