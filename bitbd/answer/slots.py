"""A limit on the requests in flight toward a model's server, with the questions over it waiting in turn.

A local llama.cpp server answers one request at a time (one slot): a second request interrupts the first, or
waits in the server's own queue while bitbd's first-token timeout runs. A generator holds a `Slots` and sends a
request only once it has one, so the server never gets more than it can serve, and the timeout starts when the
request is sent. Waiters are served first come, first served (`asyncio.Semaphore` is FIFO); one that waits longer
than `max_wait` gives up (the generator then answers with `extractive`). Its figures go to the metrics as they
change, and `snapshot()` gives them to the console (through `AnswerGenerator.backlog()`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bitbd.metrics import METRICS

_WAITS_KEPT = 200  # recent waits remembered for the console's percentile


class SlotTimeout(Exception):
    """No slot came free within `max_wait`."""


class Slots:
    """At most `limit` requests in flight toward one generator's backend; more wait their turn, each for up
    to `max_wait` seconds."""

    def __init__(self, generator: str, limit: int, max_wait: float) -> None:
        self.generator, self.limit, self.max_wait = generator, limit, max_wait
        self._semaphore = asyncio.Semaphore(limit)
        self.in_flight = 0
        self.waiting = 0
        self.waits: deque[float] = deque(maxlen=_WAITS_KEPT)  # seconds each recent request waited
        self._publish()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one slot for the body; yields the seconds waited for it. Raises `SlotTimeout` after `max_wait`."""
        started = time.monotonic()
        self.waiting += 1
        self._publish()
        try:
            async with asyncio.timeout(self.max_wait):
                await self._semaphore.acquire()
        except TimeoutError:
            raise SlotTimeout(
                f"{self.limit} request(s) in flight and {self.waiting - 1} waiting ahead for {self.max_wait:g} s"
            ) from None
        finally:
            self.waiting -= 1
            waited = time.monotonic() - started
            self.waits.append(waited)
            METRICS.llm_wait.observe({"generator": self.generator}, waited)
            self._publish()
        self.in_flight += 1
        self._publish()
        try:
            yield waited
        finally:
            self.in_flight -= 1
            self._semaphore.release()
            self._publish()

    def snapshot(self) -> dict[str, Any]:
        """What the console shows: the limit, requests in flight and waiting, the recent waits' p50 and p95."""
        waits = sorted(self.waits)

        def pct(q: float) -> int | None:
            return round(waits[min(len(waits) - 1, int(q * len(waits)))] * 1000) if waits else None

        return {
            "generator": self.generator,
            "limit": self.limit,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "wait_p50_ms": pct(0.5),
            "wait_p95_ms": pct(0.95),
        }

    def _publish(self) -> None:
        labels = {"generator": self.generator}
        METRICS.llm_in_flight.set(labels, self.in_flight)
        METRICS.llm_waiting.set(labels, self.waiting)
