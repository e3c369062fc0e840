"""CPU work on what a site or a tenant sent runs in a separate process, bounded in time: it never stalls the loop.

A thread is not enough: parsers hold the GIL inside single C calls (trafilatura held it 150-185 ms on a 4 MB page
of long links, Protego's parse of a 500 KiB robots.txt stalled the loop 93-119 ms), and a thread cannot be stopped.
A child process can be killed.

At most one call per child is submitted at a time (a semaphore), so a call's time limit counts only its running
time, never its wait in the queue. A call over its limit kills the children (ProcessPoolExecutor cannot stop one
task); the others that were running then are run again in the new pool, once per kill.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import multiprocessing
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from bitbd.ingest.extract import Extracted, ExtractError, extract

log = logging.getLogger(__name__)
TIMEOUT = 60.0  # seconds one document's extraction may take
_TASKS_PER_CHILD = 500  # a fresh child now and then: parsers' memory does not pile up
_ATTEMPTS = 3  # a call whose pool was broken under it (another call's timeout or crash) runs again
CHILDREN = min(2, os.cpu_count() or 1)
T = TypeVar("T")
_pool: ProcessPoolExecutor | None = None
_creating = threading.Lock()
_shutdowns = 0  # calls running when shutdown() is called are not run again
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


class Overrun(Exception):
    """A call ran longer than its time limit (its children were killed)."""


class Crashed(Exception):
    """The child running a call died under it on every attempt."""


class Stopped(Exception):
    """shutdown() stopped the children while the call ran."""


def _die_with(server: int) -> None:
    """In each child: exit once the server that started the pool is gone. Its parent is the forkserver, which
    every child keeps alive (they hold its "alive" pipe), so a server killed outright (`kill -9`) would otherwise
    leave the forkserver and its children behind for good."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(server, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass  # exists (as another user's process: the PID was reused; rare, and harmless to keep)

    threading.Thread(target=watch, name="bitbd-parent-watch", daemon=True).start()


def _executor() -> ProcessPoolExecutor:
    global _pool
    with _creating:
        if _pool is None:
            _pool = _new_pool()
        return _pool


def _started() -> ProcessPoolExecutor:
    """The pool, its children running: the first submission starts them, synchronously (starting the forkserver
    and preloading the parsers took 0.5 s), so this runs in a thread, never on the loop."""
    pool = _executor()
    with contextlib.suppress(BrokenProcessPool, RuntimeError):  # stopped meanwhile: the submission says so
        pool.submit(int).result()
    return pool


def _new_pool() -> ProcessPoolExecutor:
    # forkserver: forking a process that runs threads (the event loop's executor) is unsafe; the server preloads
    # the parsers once, so a new child starts in milliseconds.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bitbd.ingest.extract", "bitbd.ingest.robots"])
    return ProcessPoolExecutor(
        max_workers=CHILDREN,
        mp_context=context,
        max_tasks_per_child=_TASKS_PER_CHILD,
        initializer=_die_with,
        initargs=(os.getpid(),),
    )


def _discard(pool: ProcessPoolExecutor | None = None) -> None:
    """Kill the children of the pool (`pool`, if it is still the current one) at once; the next call starts a new
    pool. Calls running in it end with BrokenProcessPool, calls still queued are cancelled."""
    global _pool
    if pool is not None and pool is not _pool:
        return
    pool, _pool = _pool, None
    if pool is None:
        return
    # ProcessPoolExecutor has no public way to stop a running task; its processes are killed directly.
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Stop every child now, whatever it is doing (worker and server teardown; process exit). Calls running end
    with Stopped; a later call starts a new pool."""
    global _shutdowns
    _shutdowns += 1
    _discard()


# concurrent.futures joins its pools' manager threads at exit before atexit handlers run (threading's own exit
# hooks), and that join waits for the running calls: a parser stuck for good would hang the process's exit. A
# threading exit hook registered after concurrent.futures' runs before it (they run in reverse).
getattr(threading, "_register_atexit", atexit.register)(shutdown)


def _slot() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slot = _slots.get(loop)
    if slot is None:
        slot = _slots[loop] = asyncio.Semaphore(CHILDREN)
    return slot


def _release_when_done(future: Future[Any], slot: asyncio.Semaphore, loop: asyncio.AbstractEventLoop) -> None:
    def release(_: Future[Any]) -> None:
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(slot.release)
            except RuntimeError:  # the loop closed in between
                pass

    future.add_done_callback(release)


async def run_off_loop(call: Callable[[], T], seconds: float) -> T:
    """`call()` (picklable) in a child process, at most `seconds` of running time.

    Raises Overrun past the limit, Crashed if the child dies under it on every attempt; the call's own
    exceptions come through as they are.
    """
    loop = asyncio.get_running_loop()
    slot = _slot()
    shutdowns = _shutdowns
    for _ in range(_ATTEMPTS):
        await slot.acquire()
        try:
            pool = _pool if _pool is not None else await asyncio.to_thread(_started)
            future = pool.submit(call)
        except (BrokenProcessPool, RuntimeError):  # discarded since: a new pool next time round, unless stopping
            slot.release()
            if _shutdowns != shutdowns:  # shut down while its pool was starting: do not start another for it
                raise Stopped("the extraction processes were stopped (the server or worker is stopping)") from None
            continue
        except BaseException:
            slot.release()
            raise
        # The slot is free when the child is: a call whose waiter was cancelled still holds it while it runs.
        _release_when_done(future, slot, loop)
        deadline = loop.time() + seconds
        try:
            result: T = await asyncio.wait_for(asyncio.wrap_future(future), seconds)
            return result
        except TimeoutError:
            _discard(pool)
            raise Overrun(f"took more than {seconds:.0f}s") from None
        except BrokenProcessPool:
            if _shutdowns != shutdowns:
                raise Stopped("the extraction processes were stopped (the server or worker is stopping)") from None
            _discard(pool)  # a no-op when another call's timeout killed the pool: it is already replaced
            continue
        except asyncio.CancelledError:
            if not future.done():  # still running in its child: the limit still applies
                loop.call_at(deadline, _expire, future, pool)
            raise
    raise Crashed(f"the child process died under it {_ATTEMPTS} times")


def _expire(future: Future[Any], pool: ProcessPoolExecutor) -> None:
    """At a call's deadline, when its waiter has gone: stop its child if it is still running."""
    if not future.done():
        _discard(pool)


async def extract_off_loop(
    body: bytes, content_type: str, url: str, charset: str | None = None, name: str = "", seconds: float = TIMEOUT
) -> Extracted:
    """`extract()` in a child process, at most `seconds`; raises ExtractError with the reason."""
    call: Any = functools.partial(extract, body, content_type, url, charset, name)
    try:
        result: Extracted = await run_off_loop(call, seconds)
        return result
    except Overrun:
        raise ExtractError(f"extracting the text took more than {seconds:.0f}s; not indexed") from None
    except Crashed:
        log.warning("extraction process died", extra={"url": url})
        raise ExtractError("the content crashed the text extractor; not indexed") from None
    except Stopped as e:
        raise ExtractError(f"{e}; not indexed") from None
