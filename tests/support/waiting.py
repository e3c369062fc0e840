"""Waiting in tests without fixed sleeps: wait until a condition holds, check that one keeps holding for a bounded
window, and a clock a test moves by hand instead of outwaiting a TTL."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _late(what: str, seconds: float, last: object) -> AssertionError:
    return AssertionError(f"{what}: not within {seconds:g}s; last seen: {last!r}")


async def _value(check: Callable[[], Any]) -> Any:
    value = check()
    return await value if inspect.isawaitable(value) else value


def wait_until(
    check: Callable[[], T | None],
    what: str,
    seconds: float = 30,
    every: float = 0.1,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `check` until it returns something truthy and return that; an exception in `ignoring` (a server not
    listening yet: OSError) counts as not yet. After `seconds`, fail naming `what` and the last value seen."""
    deadline = time.monotonic() + seconds
    last: object = None
    while True:
        try:
            last = value = check()
            if value:
                return value
        except ignoring as e:
            last = e
        if time.monotonic() > deadline:
            raise _late(what, seconds, last)
        time.sleep(every)


async def wait_until_async(
    check: Callable[[], Any],
    what: str,
    seconds: float = 30,
    every: float = 0.1,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """wait_until() on the event loop: `check` may be a coroutine function or a plain one."""
    deadline = time.monotonic() + seconds
    last: object = None
    while True:
        try:
            last = value = await _value(check)
            if value:
                return value
        except ignoring as e:
            last = e
        if time.monotonic() > deadline:
            raise _late(what, seconds, last)
        await asyncio.sleep(every)


async def holds_for(check: Callable[[], Any], what: str, seconds: float, every: float = 0.1) -> Any:
    """Check that `check` stays truthy for the whole window (nothing written after a cancel, say), failing at the
    first try that is not; returns the last value. This is for what must NOT happen, which no readiness condition
    can show: the window is the time the unwanted thing would take to happen."""
    deadline = time.monotonic() + seconds
    while True:
        value = await _value(check)
        if not value:
            raise AssertionError(f"{what}: stopped holding after {seconds - (deadline - time.monotonic()):.2f}s")
        if time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


class Clock:
    """A wall clock (seconds since the epoch, like time.time) that moves only when the test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        self.now += seconds
