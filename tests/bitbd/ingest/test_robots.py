"""robots.txt against real loopback sites: parsed and matched in a child process (a hostile 500 KiB file does not
stall the event loop), sitemaps read from it, and the per-process cache bounded (LRU by origin and by size, locks
gone with their fetch)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from bitbd.ingest import robots
from bitbd.ingest.fetch import Fetcher
from bitbd.ingest.robots import robots_for
from bitbd.interfaces import SourceError
from bitbd.settings import CrawlerSettings
from tests.site import Site


def hostile(variant: int = 0) -> bytes:
    """The rules a test checks, then as many wildcard rules (whole lines) as fit in robots.MAX_BYTES, to parse and
    match against; each variant's patterns differ, so no parse reuses another's compiled patterns."""
    text = b"User-agent: *\nDisallow: /private/\nSitemap: /map.xml\n"
    for i in range(12_000):
        line = b"Disallow: /*a*a*a*a*a*a*a*a*a*a*a*a*" + f"{variant}x{i}".encode() + b"$\n"
        if len(text) + len(line) > robots.MAX_BYTES:
            break
        text += line
    return text


@pytest.fixture
async def sites() -> AsyncIterator[list[tuple[Site, str]]]:
    servers = []
    out = []
    for _ in range(5):
        site = Site()
        site.pages["/robots.txt"] = ("text/plain", b"User-agent: *\nDisallow: /private/\nSitemap: /map.xml\n")
        server = TestServer(site.app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        out.append((site, str(server.make_url("")).rstrip("/")))
    robots._cache.clear()
    yield out
    robots._cache.clear()
    for server in servers:
        await server.close()


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    fetcher = Fetcher(CrawlerSettings(allow_private=True, timeout=10))
    yield fetcher
    await fetcher.close()


async def test_a_hostile_robots_txt_is_parsed_and_matched_off_the_loop(
    sites: list[tuple[Site, str]], fetcher: Fetcher
) -> None:
    """Protego's parse in a thread stalled the loop 93-119 ms on every parse. Three sites' hostile robots.txt are
    parsed and matched in turn, and the median of their worst loop lags is what must stay small: one stall on a
    busy machine (a GC pause, CPU taken by another process) does not fail it, a parse that holds the loop does."""
    worst: list[float] = []
    for variant, (site, base) in enumerate(sites[:3], 1):
        site.pages["/robots.txt"] = ("text/plain", hostile(variant))
        lags: list[float] = []
        stop = asyncio.Event()

        async def tick(lags: list[float] = lags, stop: asyncio.Event = stop) -> None:
            while not stop.is_set():
                start = time.perf_counter()
                await asyncio.sleep(0.001)
                lags.append(time.perf_counter() - start)

        ticker = asyncio.create_task(tick())
        rules = await robots_for(fetcher, base)
        with pytest.raises(SourceError, match=r"disallowed by robots\.txt"):
            await rules.check(base + "/private/x", "bitbd")
        await rules.check(base + "/public/" + "a" * 2000, "bitbd")
        stop.set()
        await ticker
        assert rules.sitemaps == ("/map.xml",) or rules.sitemaps == (base + "/map.xml",)
        worst.append(max(lags))
    print(f"worst loop lag per site: {', '.join(f'{lag * 1000:.1f}' for lag in worst)} ms")
    assert statistics.median(worst) < 0.05, f"the parse holds the loop: worst lags {worst}"


async def test_the_cache_is_bounded_and_keeps_the_recently_used(
    sites: list[tuple[Site, str]], fetcher: Fetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(robots, "MAX_ORIGINS", 3)
    bases = [base for _, base in sites]
    for base in bases[:3]:
        await robots_for(fetcher, base)
    await robots_for(fetcher, bases[0])  # used again: now the most recent
    for base in bases[3:]:
        await asyncio.gather(*(robots_for(fetcher, base) for _ in range(5)))  # one fetch for five callers
    assert list(robots._cache) == [bases[0], bases[3], bases[4]]
    assert robots._locks == {}, "a lock lives only while its origin's robots.txt is fetched"
    assert [site.hits["/robots.txt"] for site, _ in sites] == [1, 1, 1, 1, 1]
    await robots_for(fetcher, bases[1])  # dropped: fetched again
    assert sites[1][0].hits["/robots.txt"] == 2 and len(robots._cache) == 3
    # And by size: a cache over MAX_CACHED_CHARS drops its oldest entries.
    size = len(robots._cache[bases[1]][1].text or "")
    monkeypatch.setattr(robots, "MAX_CACHED_CHARS", size * 2)
    await robots_for(fetcher, bases[2])
    assert list(robots._cache) == [bases[1], bases[2]]
