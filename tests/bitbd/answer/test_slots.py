"""The limit on requests in flight toward a model's server: first come first served, bounded waits, counted."""

from __future__ import annotations

import asyncio

import pytest

from bitbd.answer.slots import Slots, SlotTimeout
from bitbd.metrics import METRICS


async def test_waiters_are_served_in_arrival_order_and_counted() -> None:
    slots = Slots("fifo-test", 1, max_wait=5)
    order: list[int] = []
    release = asyncio.Event()

    async def ask(n: int) -> None:
        async with slots.slot():
            order.append(n)
            await release.wait()

    tasks = [asyncio.create_task(ask(n)) for n in range(5)]
    await asyncio.sleep(0.05)
    assert (slots.in_flight, slots.waiting) == (1, 4)
    assert METRICS.llm_waiting.get({"generator": "fifo-test"}) == 4
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and (slots.in_flight, slots.waiting) == (0, 0)
    assert slots.snapshot()["wait_p95_ms"] is not None


async def test_a_waiter_gives_up_after_max_wait_and_a_cancelled_one_frees_its_place() -> None:
    slots = Slots("wait-test", 1, max_wait=0.2)
    hold = asyncio.Event()

    async def busy() -> None:
        async with slots.slot():
            await hold.wait()

    holder = asyncio.create_task(busy())
    await asyncio.sleep(0.01)
    with pytest.raises(SlotTimeout, match=r"1 request\(s\) in flight and 0 waiting ahead for 0.2 s"):
        async with slots.slot():
            pass
    leaving = asyncio.create_task(busy())
    await asyncio.sleep(0.01)
    leaving.cancel()  # a visitor who left while waiting
    await asyncio.gather(leaving, return_exceptions=True)
    hold.set()
    await holder
    async with slots.slot() as waited:
        assert waited < 0.1 and slots.in_flight == 1, "the slot is free again"
