"""The broker on real Redis: its listen loop outlives Redis outages, but never a cancellation; delayed retries."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from bitbd.jobs.broker import Delayed, PriorityStreamBroker
from bitbd.settings import Settings


async def test_a_cancelled_listen_always_ends(settings: Settings) -> None:
    # The receiver cancels the pending read when a worker stops, and waits for it shielded: a cancellation that
    # redis-py swallows (or turns into a connection error) inside a command must still end the loop. Before the
    # fix, one of the first ten cancels here left the read blocked forever, and a full test run hung in an app's
    # teardown with its in-process workers stopping.
    broker = PriorityStreamBroker(settings.redis.url.get_secret_value(), f"t-{uuid.uuid4().hex[:8]}", 30)
    await broker.startup()
    rng = random.Random(7)
    try:
        for _ in range(40):
            listen = broker.listen()
            read = asyncio.create_task(anext(listen))  # an empty queue: it blocks in XREADGROUP
            await asyncio.sleep(rng.uniform(0, 0.05))
            read.cancel()
            async with asyncio.timeout(5):
                done = await asyncio.gather(read, return_exceptions=True)
            assert isinstance(done[0], asyncio.CancelledError), done
            async with asyncio.timeout(5):
                await listen.aclose()
    finally:
        await broker.shutdown()


async def test_a_delayed_retry_whose_kick_fails_is_kept_and_kicked_later(settings: Settings) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    broker = PriorityStreamBroker(settings.redis.url.get_secret_value(), prefix, 30)
    await broker.startup()
    delayed = Delayed(broker, prefix)
    kicked: list[tuple[str, list[Any], str]] = []

    async def failing(task: str, args: list[Any], priority: Any) -> None:
        raise ConnectionError("the stream is away")

    async def kick(task: str, args: list[Any], priority: Any) -> None:
        kicked.append((task, args, priority))

    try:
        await delayed.add("bitbd.crawl_page", ["job", 1], "normal", 0)
        with pytest.raises(ConnectionError):
            await delayed.move_due(failing)
        assert await delayed.move_due(kick) == 0, "put back with a delay, not due at once"
        async with broker_redis(broker) as redis:  # due now: as if the delay had passed
            members = cast(list[bytes], await redis.zrange(delayed.key, 0, -1))
            (member,) = members
            await redis.zadd(delayed.key, {member: time.time() - 1})
        assert await delayed.move_due(kick) == 1
        assert kicked == [("bitbd.crawl_page", ["job", 1], "normal")]
        assert await delayed.move_due(kick) == 0
    finally:
        async with broker_redis(broker) as redis:
            await redis.delete(delayed.key)
        await broker.shutdown()


def broker_redis(broker: PriorityStreamBroker) -> Redis:
    return Redis(connection_pool=broker.connection_pool)
