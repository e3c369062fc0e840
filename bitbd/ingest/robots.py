"""robots.txt as RFC 9309 says: fetched once per origin and cached, redirects followed up to five hops, the first
500 KiB parsed; unavailable (4xx) allows everything, unreachable (5xx, network error) disallows everything for now.

Parsing and matching run in the extraction children (bitbd/ingest/offload.py): Protego's parse of a 500 KiB file
stalled the event loop 93-119 ms from a thread, and one check against 12,000 wildcard rules takes ~40 ms. Each
child keeps the last few parsed files; the server keeps only the text.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from protego import Protego
from yarl import URL

from bitbd.ingest.fetch import Fetcher, FetchError
from bitbd.ingest.offload import Crashed, Overrun, Stopped, run_off_loop
from bitbd.interfaces import SourceError

MAX_BYTES = 500 * 1024  # RFC 9309 2.5: parse at least 500 KiB
REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five consecutive redirects
MAX_ORIGINS = 1000  # origins whose robots.txt a worker process keeps (least recently used dropped first)
MAX_CACHED_CHARS = 64 * 1024 * 1024  # and at most this much robots.txt text in all
CHECK_SECONDS = 10.0  # one page's check against the rules
_TTL = 600.0
T = TypeVar("T")
_UNREACHABLE_TTL = 10.0  # short: the pages of the site are retried later and should find it readable again


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> Protego:  # in a child process
    return Protego.parse(text)


def _sitemaps(text: str) -> list[str]:  # in a child process
    return list(_parsed(text).sitemaps)


def _can_fetch(text: str, url: str, agent: str) -> bool:  # in a child process
    return bool(_parsed(text).can_fetch(url, agent))


@dataclass(frozen=True)
class Robots:
    """The rules of one origin: `text` None allows everything; `unreachable` refuses every page, transiently."""

    text: str | None = None
    sitemaps: tuple[str, ...] = ()
    unreachable: FetchError | None = None

    async def check(self, url: str, agent: str) -> None:
        """Raise SourceError unless `url` may be fetched."""
        if self.unreachable is not None:
            e = self.unreachable
            if e.forbidden:
                raise SourceError(str(e))
            raise SourceError(
                f"robots.txt could not be read ({e}); RFC 9309 treats that as disallowing the "
                "whole site until it can be",
                transient=True,
            )
        if self.text is not None and not await _off_loop(functools.partial(_can_fetch, self.text, url, agent)):
            raise SourceError("disallowed by robots.txt")


async def _off_loop(call: Callable[[], T]) -> T:
    try:
        return await run_off_loop(call, CHECK_SECONDS)
    except (Overrun, Crashed, Stopped) as e:
        raise SourceError(f"this site's robots.txt could not be evaluated ({e}); its pages are not fetched") from None


# Per worker process: fetched once per origin, not once per page; bounded (LRU).
_cache: OrderedDict[str, tuple[float, Robots]] = OrderedDict()
_locks: dict[str, asyncio.Lock] = {}  # only while an origin's robots.txt is being fetched


def origin(url: str) -> str:
    """scheme://host[:port] of `url`, as the client spells it (normalised, default port left out)."""
    return str(URL(url).origin())


def _cached(site: str) -> Robots | None:
    entry = _cache.get(site)
    if entry is None:
        return None
    if entry[0] <= time.monotonic():
        del _cache[site]
        return None
    _cache.move_to_end(site)
    return entry[1]


def _store(site: str, robots: Robots, ttl: float) -> None:
    _cache[site] = (time.monotonic() + ttl, robots)
    _cache.move_to_end(site)
    chars = sum(len(r.text or "") for _, r in _cache.values())
    while len(_cache) > MAX_ORIGINS or (chars > MAX_CACHED_CHARS and len(_cache) > 1):
        _, (_, dropped) = _cache.popitem(last=False)
        chars -= len(dropped.text or "")


async def robots_for(fetcher: Fetcher, site: str) -> Robots:
    """The (cached) robots.txt rules of origin `site`."""
    cached = _cached(site)
    if cached is not None:
        return cached
    lock = _locks.setdefault(site, asyncio.Lock())
    async with lock:
        cached = _cached(site)
        if cached is not None:
            return cached
        try:
            robots = await _fetch(fetcher, site)
            _store(site, robots, _UNREACHABLE_TTL if robots.unreachable is not None else _TTL)
        finally:
            # Whoever still waits on this lock finds the entry; later callers need no lock until it expires.
            if _locks.get(site) is lock:
                del _locks[site]
        return robots


async def _fetch(fetcher: Fetcher, site: str) -> Robots:
    try:
        # Redirects may leave the site (RFC 9309 allows it); every hop still passes the address guard.
        page = await fetcher.get(site + "/robots.txt", accept=None, redirects=REDIRECTS, max_bytes=MAX_BYTES)
    except FetchError as e:
        if e.status is not None and 200 <= e.status < 500 and e.status != 429:
            return Robots()  # unavailable (4xx), or more than five redirects: no rules; 429 asks us to wait
        return Robots(unreachable=e)
    text = page.body.decode("utf-8", errors="replace")
    if not text.strip():
        return Robots()
    sitemaps = await _off_loop(functools.partial(_sitemaps, text))
    return Robots(text=text, sitemaps=tuple(sitemaps))
