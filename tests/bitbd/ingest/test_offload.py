"""Extraction in a child process: the result comes back, a stuck extraction is stopped, the pool recovers; the time
limit counts running time only; one call's timeout does not fail the others; shutdown is bounded."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import time

import pytest

from bitbd.ingest import offload
from bitbd.ingest.extract import ExtractError
from bitbd.ingest.offload import CHILDREN, Overrun, Stopped, extract_off_loop, run_off_loop
from tests.site import BREAD, page
from tests.support.waiting import wait_until_async

HTML = page("Bread", BREAD).encode()


async def test_extraction_runs_in_a_child_and_is_bounded_in_time() -> None:
    doc = await extract_off_loop(HTML, "text/html", "http://site.example/bread")
    assert doc.title == "Bread" and "wild yeast" in doc.text
    big = page("Big", "<p>" + "many words of text " * 400_000 + "</p>").encode()
    with pytest.raises(ExtractError, match="took more than 0s"):
        await extract_off_loop(big, "text/html", "http://site.example/big", seconds=0.01)
    # The stuck child was killed; the next documents get a new one, several at once.
    docs = await asyncio.gather(*(extract_off_loop(HTML, "text/html", f"http://site.example/{i}") for i in range(4)))
    assert all(d.title == "Bread" for d in docs)
    with pytest.raises(ExtractError, match="binary"):
        await extract_off_loop(b"\x00\x01" * 100, "text/plain", "http://site.example/x")


async def test_waiting_for_a_child_does_not_count_against_the_limit() -> None:
    """Every child busy for 1.5 s: an extraction queued behind them with a 1 s limit still succeeds."""
    busy = [asyncio.create_task(run_off_loop(functools.partial(time.sleep, 1.5), 10)) for _ in range(CHILDREN)]
    await asyncio.sleep(0.2)  # they run
    start = time.monotonic()
    doc = await extract_off_loop(HTML, "text/html", "http://site.example/queued", seconds=1.0)
    assert doc.title == "Bread" and time.monotonic() - start > 1.0, "it waited for a child"
    await asyncio.gather(*busy)


async def test_one_timeout_does_not_fail_the_others_in_flight() -> None:
    """A stuck call's timeout kills every child; the call running beside it is run again and succeeds."""
    pool = offload._executor()
    stuck = asyncio.create_task(run_off_loop(functools.partial(time.sleep, 100), 0.5))
    beside = asyncio.create_task(run_off_loop(functools.partial(time.sleep, 1.0), 10))
    start = time.monotonic()
    with pytest.raises(Overrun, match="took more than"):
        await stuck
    assert offload._pool is not pool, "the children were killed"
    await beside  # no error: run again in the new pool
    if CHILDREN > 1:
        assert time.monotonic() - start > 1.4, "the call beside it was killed too and ran again"
    doc = await extract_off_loop(HTML, "text/html", "http://site.example/after")
    assert doc.title == "Bread"


async def test_shutdown_stops_a_stuck_child_at_once() -> None:
    stuck = asyncio.create_task(run_off_loop(functools.partial(time.sleep, 100), 200))

    def submitted() -> bool:  # the pool an earlier test left may be running already: wait for this call's turn
        pool = offload._pool
        return pool is not None and bool(pool._pending_work_items)

    await wait_until_async(submitted, "the stuck call handed to a child", 10, every=0.01)
    processes = [p for p in offload._executor()._processes.values() if p.is_alive()]
    assert processes
    start = time.monotonic()
    offload.shutdown()
    with pytest.raises(Stopped, match="stopping"):
        await asyncio.wait_for(stuck, 10)
    for process in processes:
        process.join(5)
        assert not process.is_alive()
    assert time.monotonic() - start < 5
    assert (await extract_off_loop(HTML, "text/html", "http://site.example/next")).title == "Bread", "a new pool"


STUCK_EXIT = """
import asyncio, functools, time
from bitbd.ingest.offload import run_off_loop

async def main():
    task = asyncio.ensure_future(run_off_loop(functools.partial(time.sleep, 1000), 2000))
    await asyncio.sleep(1.0)
    print("running", flush=True)

asyncio.run(main())
"""


def test_a_process_with_a_stuck_child_exits_promptly() -> None:
    """concurrent.futures joins its pools at exit before atexit handlers: without the exit hook this hangs."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", STUCK_EXIT], capture_output=True, text=True, timeout=60)
    assert "running" in done.stdout, done.stderr
    assert time.monotonic() - start < 15, "exit waited for the stuck child"
