"""Extraction runs in a separate process, bounded in time: what a site or a tenant sends never stalls the loop.

A thread is not enough: parsers hold the GIL inside single C calls (trafilatura held it 150-185 ms on a 4 MB page
of long links, libxml2 and Protego tens of ms), and a thread cannot be stopped. A child process can be killed.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from bitbd.ingest.extract import Extracted, ExtractError, extract

log = logging.getLogger(__name__)
TIMEOUT = 60.0  # seconds one document's extraction may take
_TASKS_PER_CHILD = 500  # a fresh child now and then: parsers' memory does not pile up
_pool: ProcessPoolExecutor | None = None


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
    if _pool is None:
        # forkserver: forking a process that runs threads (the event loop's executor) is unsafe; the server
        # preloads the parsers once, so a new child starts in milliseconds.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["bitbd.ingest.extract"])
        _pool = ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1), mp_context=context,
                                    max_tasks_per_child=_TASKS_PER_CHILD, initializer=_die_with,
                                    initargs=(os.getpid(),))
    return _pool


def _discard() -> None:
    """Stop the pool's children at once (a stuck or crashed extraction); the next call starts a new pool."""
    global _pool
    pool, _pool = _pool, None
    if pool is None:
        return
    # ProcessPoolExecutor has no public way to stop a running task; its processes are killed directly.
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


atexit.register(_discard)


async def extract_off_loop(body: bytes, content_type: str, url: str, charset: str | None = None,
                           name: str = "", seconds: float = TIMEOUT) -> Extracted:
    """`extract()` in a child process, at most `seconds`; raises ExtractError with the reason."""
    call: Any = functools.partial(extract, body, content_type, url, charset, name)
    for _ in range(2):
        pool = _executor()
        try:
            result: Extracted = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(pool, call),
                                                       seconds)
            return result
        except TimeoutError:
            if _pool is pool:
                _discard()
            raise ExtractError(f"extracting the text took more than {seconds:.0f}s; not indexed") from None
        except BrokenProcessPool:
            if _pool is not pool:
                continue  # another document's extraction was stopped and took this one along: once more
            _discard()
            log.warning("extraction process died", extra={"url": url})
            raise ExtractError("the content crashed the text extractor; not indexed") from None
    raise ExtractError("the text extractor was restarted twice while extracting this; try again later")
