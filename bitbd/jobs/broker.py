"""The Taskiq broker: Redis streams read high-priority first, with keep-alive and reclaim of dead workers' tasks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage
from taskiq_redis import RedisStreamBroker

from bitbd.settings import Settings

log = logging.getLogger(__name__)
Priority = Literal["high", "normal"]
_KEEPALIVE_LIMIT = 3600.0  # seconds; a task never acked (bug, cancellation) stops being kept alive after this


class PriorityStreamBroker(RedisStreamBroker):
    """Two streams, `<prefix>:high` and `<prefix>:normal`; a worker takes from the high one whenever it can.

    taskiq-redis reclaims a dead worker's messages only right after reading a new one, so an idle queue never
    recovers them (`if not fetched: continue` in taskiq_redis' `listen()`: a dead worker's task stays pending
    until some other task is sent). This broker reclaims on a timer instead. While a task runs its message is kept
    alive (XCLAIM by its own consumer resets the idle time), so only tasks of workers that really vanished are
    reclaimed, however long a task runs.
    """

    def __init__(self, url: str, prefix: str, redelivery_seconds: float) -> None:
        self.high = f"{prefix}:high"
        super().__init__(
            url,
            queue_name=f"{prefix}:normal",
            consumer_group_name=f"{prefix}-workers",
            consumer_name=f"worker-{uuid.uuid4().hex[:12]}",
            # "0", not "$": a message queued before any worker created the group must not be skipped.
            consumer_id="0",
            xread_block=1000,
            xread_count=1,
            maxlen=100_000,
            idle_timeout=int(redelivery_seconds * 1000),
            additional_streams={self.high: "0"},
        )
        self.redelivery_seconds = redelivery_seconds

    def stream(self, priority: Priority) -> str:
        """The stream a task of this priority is queued on."""
        return self.high if priority == "high" else self.queue_name

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Messages until the worker stops. Redis going away (restart, failover, network) does not end it: it waits
        for Redis, re-creates the consumer group if Redis came back without it, and goes on. Tasks that were
        running meanwhile are acked late or, if their ack was lost, redelivered (tasks are idempotent)."""
        delay, down = 0.5, False
        while True:
            try:
                async for message in self._listen():
                    if down:
                        log.warning("Redis is back, worker takes tasks again")
                        delay, down = 0.5, False
                    yield message
            except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError) as e:
                if _being_cancelled():  # a cancellation redis-py turned into a connection error: not retried
                    raise asyncio.CancelledError from e
                if not down:
                    log.warning("Redis unreachable, worker waits for it", extra={"error": type(e).__name__})
                    down = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                log.warning("Redis lost the consumer group (restarted without its data?); re-creating it")
                await self._declare_consumer_group()

    async def _listen(self) -> AsyncGenerator[AckableMessage, None]:
        async with Redis(connection_pool=self.connection_pool) as redis:
            next_reclaim = 0.0
            while True:
                if _being_cancelled():
                    # redis-py can swallow a cancellation that lands inside a command (seen: the task stays
                    # `cancelling` and the loop blocks in the next XREADGROUP). The receiver cancels this read
                    # when a worker stops and waits for it shielded, so a swallowed one hung the stop forever.
                    raise asyncio.CancelledError
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + max(self.redelivery_seconds / 4, 1.0)
                    for stream in (self.high, self.queue_name):
                        reply: Any = await redis.xautoclaim(
                            stream,
                            self.consumer_group_name,
                            self.consumer_name,
                            min_idle_time=self.idle_timeout,
                            start_id="0-0",
                            count=10,
                        )
                        for msg_id, fields in reply[1]:
                            if fields:  # None when the message was trimmed away
                                log.info("task redelivered", extra={"stream": stream, "message_id": str(msg_id)})
                                yield self._message(redis, stream, msg_id, fields)
                fetched: Any = await redis.xreadgroup(
                    self.consumer_group_name, self.consumer_name, {self.high: ">"}, count=1
                )
                if not fetched and not _being_cancelled():
                    fetched = await redis.xreadgroup(
                        self.consumer_group_name,
                        self.consumer_name,
                        {self.high: ">", self.queue_name: ">"},
                        count=1,
                        block=self.block,
                    )
                for stream, messages in fetched or []:
                    for msg_id, fields in messages:
                        yield self._message(
                            redis, stream.decode() if isinstance(stream, bytes) else stream, msg_id, fields
                        )

    def _message(self, redis: Redis, stream: str, msg_id: Any, fields: dict[bytes, bytes]) -> AckableMessage:
        keepalive = asyncio.create_task(self._keep_alive(stream, msg_id))

        async def ack() -> None:
            keepalive.cancel()
            try:
                async with Redis(connection_pool=self.connection_pool) as conn:
                    await conn.xack(stream, self.consumer_group_name, msg_id)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                # The task is done; its message stays pending and is redelivered, and the task (idempotent)
                # finds its work done.
                log.warning("could not acknowledge a finished task, Redis unreachable; it will be redelivered")

        return AckableMessage(data=fields[b"data"], ack=ack)

    async def _keep_alive(self, stream: str, msg_id: Any) -> None:
        interval = max(self.redelivery_seconds / 3, 1.0)
        deadline = time.monotonic() + _KEEPALIVE_LIMIT
        with contextlib.suppress(asyncio.CancelledError):
            while time.monotonic() < deadline:
                await asyncio.sleep(interval)
                try:
                    async with Redis(connection_pool=self.connection_pool) as conn:
                        await conn.xclaim(
                            stream, self.consumer_group_name, self.consumer_name, 0, [msg_id], justid=True
                        )
                except Exception:  # Redis away for a moment: the next beat tries again
                    log.debug("keep-alive failed", exc_info=True)

    async def queue_depths(self) -> dict[str, int]:
        """Messages not yet delivered plus delivered but unacknowledged, per priority."""
        depths: dict[str, int] = {}
        async with Redis(connection_pool=self.connection_pool) as redis:
            for name, stream in (("high", self.high), ("normal", self.queue_name)):
                groups = await redis.xinfo_groups(stream) if await redis.exists(stream) else []
                group = next(
                    (g for g in groups if g["name"] in (self.consumer_group_name.encode(), self.consumer_group_name)),
                    None,
                )
                if group is None:
                    depths[name] = int(await redis.xlen(stream)) if groups else 0
                    continue
                lag = group.get("lag")
                if lag is None:  # Redis < 7 does not report lag: count what lies past the last delivery
                    last = group["last-delivered-id"]
                    last = last.decode() if isinstance(last, bytes) else str(last)
                    lag = len(await redis.xrange(stream, min=f"({last}", count=10_000) or [])
                depths[name] = int(lag) + int(group.get("pending") or 0)
        return depths


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def build_broker(settings: Settings) -> PriorityStreamBroker:
    """The broker on the settings' Redis URL, with their queue prefix and redelivery time."""
    return PriorityStreamBroker(
        settings.redis.url.get_secret_value(), settings.jobs.queue_prefix, settings.jobs.redelivery_seconds
    )


_KICK_RETRY = 5.0  # seconds before a delayed task whose kick failed is due again


class Delayed:
    """Retries with a real delay: a Redis sorted set of due times, moved to the streams when due.

    Taskiq's retry middleware re-queues at once whatever delay it computes (a `delay` label that neither the Redis
    brokers nor taskiq's Receiver honour), so backoff lives here.
    """

    def __init__(self, broker: PriorityStreamBroker, prefix: str) -> None:
        self.broker = broker
        self.key = f"{prefix}:delayed"

    async def add(self, task: str, args: list[Any], priority: Priority, delay: float) -> None:
        """Kick `task(*args)` at `priority` once `delay` seconds have passed (by move_due())."""
        member = json.dumps({"task": task, "args": args, "priority": priority, "nonce": uuid.uuid4().hex})
        async with Redis(connection_pool=self.broker.connection_pool) as redis:
            await redis.zadd(self.key, {member: time.time() + delay})

    async def move_due(self, kick: Callable[[str, list[Any], Priority], Awaitable[None]]) -> int:
        """Kick (with `kick`) up to 100 delayed tasks that are due; returns how many. Each is kicked
        only by the process that removed it from the set; one whose kick fails goes back in, due again in
        `_KICK_RETRY` seconds, and the kick's error is raised."""
        moved = 0
        async with Redis(connection_pool=self.broker.connection_pool) as redis:
            due: list[Any] = await redis.zrangebyscore(self.key, 0, time.time(), start=0, num=100)
            for member in due:
                if await redis.zrem(self.key, member):  # only the process that removed it kicks it
                    item = json.loads(member)
                    try:
                        await kick(item["task"], item["args"], item["priority"])
                    except BaseException:
                        await redis.zadd(self.key, {member: time.time() + _KICK_RETRY})
                        raise
                    moved += 1
        return moved
