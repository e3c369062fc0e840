"""robots.txt as RFC 9309 says: fetched once per origin and cached, redirects followed up to five hops, the first
500 KiB parsed; unavailable (4xx) allows everything, unreachable (5xx, network error) disallows everything for now."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from protego import Protego
from yarl import URL

from bitbd.ingest.fetch import Fetcher, FetchError
from bitbd.interfaces import SourceError

MAX_BYTES = 500 * 1024  # RFC 9309 2.5: parse at least 500 KiB
REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five consecutive redirects
_TTL = 600.0
_UNREACHABLE_TTL = 10.0  # short: the pages of the site are retried later and should find it readable again


@dataclass(frozen=True)
class Robots:
    """The rules of one origin: `rules` None allows everything; `unreachable` refuses every page, transiently."""

    rules: Protego | None = None
    unreachable: FetchError | None = None

    def check(self, url: str, agent: str) -> None:
        """Raise SourceError unless `url` may be fetched (CPU work: run it off the event loop)."""
        if self.unreachable is not None:
            e = self.unreachable
            if e.forbidden:
                raise SourceError(str(e))
            raise SourceError(f"robots.txt could not be read ({e}); RFC 9309 treats that as disallowing the "
                              "whole site until it can be", transient=True)
        if self.rules is not None and not self.rules.can_fetch(url, agent):
            raise SourceError("disallowed by robots.txt")


# Per worker process: fetched once per origin, not once per page.
_cache: dict[str, tuple[float, Robots]] = {}
_locks: dict[str, asyncio.Lock] = {}


def origin(url: str) -> str:
    """scheme://host[:port] of `url`, as the client spells it (normalised, default port left out)."""
    return str(URL(url).origin())


async def robots_for(fetcher: Fetcher, site: str) -> Robots:
    """The (cached) robots.txt rules of origin `site`."""
    cached = _cache.get(site)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    async with _locks.setdefault(site, asyncio.Lock()):
        cached = _cache.get(site)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        robots = await _fetch(fetcher, site)
        ttl = _UNREACHABLE_TTL if robots.unreachable is not None else _TTL
        _cache[site] = (time.monotonic() + ttl, robots)
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
    return Robots(rules=await asyncio.to_thread(Protego.parse, text))
