"""The broker's listen loop on real Redis: it outlives Redis outages, but never a cancellation."""

from __future__ import annotations

import asyncio
import random
import uuid

from bitbd.jobs.broker import PriorityStreamBroker
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
