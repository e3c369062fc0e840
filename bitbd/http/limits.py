"""Limits against abuse that no single request shows: failed authentications per client address (brute force),
and open WebSockets per (key, client address) under a ceiling per key."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import TypeVar

from aiohttp import web

from bitbd.errors import AuthThrottled, TooManyConnections, Unauthorized
from bitbd.settings import AuthSettings, ChatSettings

_MAX_REMEMBERED = 1_000_000  # failure times remembered at once (all addresses); the least recently failing go first
_COUNTED = "bitbd_auth_failure_counted"  # set on a request whose failure is counted, so it counts once

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
K = TypeVar("K", bound=Hashable)


def presents_credentials(request: web.Request) -> bool:
    """The request tries to authenticate: an Authorization header or a `?key=`."""
    return bool(request.headers.get("Authorization") or request.query.get("key"))


class AuthThrottle:
    """Failed authentications per client address in a sliding window; past `max_failures`, the address is
    refused (429) until its oldest counted failure leaves the window. A success does not wipe the count, so one
    valid key cannot be used to keep guessing another.

    A check that awaits (an API key looked up in PostgreSQL) runs inside `attempt()`: attempts still in flight
    count against the limit as if they were failures, so a burst of wrong keys sent at once cannot all pass
    before the first one has failed. An attempt over the limit waits for one in flight to end (a lookup takes a
    millisecond), then is let through or refused: legitimate concurrent clients are queued, never refused."""

    def __init__(self, cfg: AuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.proxies: list[Network] = [ipaddress.ip_network(p, strict=False) for p in cfg.trusted_proxies]
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._remembered = 0
        self._in_flight: dict[str, int] = {}
        self._settled: dict[str, asyncio.Event] = {}  # set (and dropped) whenever an attempt of the address ends

    def client(self, request: web.Request) -> str:
        """Who is asking: the peer address, or, behind a trusted proxy, the right-most X-Forwarded-For address
        that is not a trusted proxy (left of it, any client can write anything)."""
        peer = request.remote or ""
        if self.proxies and self._trusted(peer):
            hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
            for hop in reversed([h for h in hops if h]):
                if not self._trusted(hop):
                    return _address_key(hop)
        return _address_key(peer)

    def check(self, request: web.Request) -> None:
        """Refuse a request carrying credentials from an address that failed too often just now."""
        if self.cfg.max_failures:
            self._refuse(self.client(request))

    @asynccontextmanager
    async def attempt(self, request: web.Request) -> AsyncIterator[None]:
        """Around one credential check: refused (429) if the address failed too often; waits while its failures
        plus its attempts in flight reach the limit; an `Unauthorized` raised inside counts as a failure."""
        if not self.cfg.max_failures:
            yield
            return
        who = self.client(request)
        while True:
            recent = self._refuse(who)
            if recent + self._in_flight.get(who, 0) < self.cfg.max_failures:
                break
            await self._settled.setdefault(who, asyncio.Event()).wait()
        self._in_flight[who] = self._in_flight.get(who, 0) + 1
        try:
            yield
        except Unauthorized:
            self.failed(request)
            raise
        finally:
            left = self._in_flight[who] - 1
            if left:
                self._in_flight[who] = left
            else:
                del self._in_flight[who]
            settled = self._settled.pop(who, None)
            if settled is not None:
                settled.set()

    def failed(self, request: web.Request) -> None:
        """Count a failed authentication of this request (once, however often it is reported)."""
        if not self.cfg.max_failures or request.get(_COUNTED):
            return
        request[_COUNTED] = True
        who = self.client(request)
        seen = self._failures.pop(who, None)
        if seen is None:
            seen = deque(maxlen=self.cfg.max_failures)
        elif len(seen) == seen.maxlen:
            self._remembered -= 1
        seen.append(self.clock())
        self._remembered += 1
        self._failures[who] = seen  # most recent last
        while self._remembered > _MAX_REMEMBERED:
            _, dropped = self._failures.popitem(last=False)
            self._remembered -= len(dropped)

    def _refuse(self, who: str) -> int:
        """The address's failures within the window; AuthThrottled if they reach the limit."""
        seen = self._failures.get(who)
        if not seen:
            return 0
        now = self.clock()
        while seen and seen[0] <= now - self.cfg.failure_window:
            seen.popleft()
            self._remembered -= 1
        if len(seen) < self.cfg.max_failures:
            return len(seen)
        seconds = max(1, math.ceil(seen[0] + self.cfg.failure_window - now))
        raise AuthThrottled(
            f"too many failed authentications from this address ({len(seen)} in "
            f"{self.cfg.failure_window:g} s, auth.max_failures); wait {seconds} s (Retry-After) and "
            "check the key or token you send",
            retry_after=seconds,
        )

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)


def _address_key(address: str) -> str:
    """An IPv4 address as is; an IPv6 one by its /64 (one host usually holds a whole /64); anything else as is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ConnectionCap:
    """Open WebSockets per (key, client address), and in all per key: a slot is taken before the upgrade and
    given back when the socket ends. A public key is in its site's HTML, so one client holding many sockets must
    not shut out the site's other visitors; the per-key ceiling bounds what all of them hold together."""

    def __init__(self, cfg: ChatSettings) -> None:
        self.per_client = cfg.max_connections_per_client
        self.per_key = cfg.max_connections_per_key
        self._by_client: dict[tuple[str, str], int] = {}
        self._by_key: dict[str, int] = {}

    def take(self, who: str, client: str, shown: str) -> None:
        """Take a slot for `who` (a key id) from `client` (an address), or refuse with 429 naming the key by
        `shown` (its prefix)."""
        mine = self._by_client.get((who, client), 0)
        if self.per_client and mine >= self.per_client:
            raise TooManyConnections(
                f"this address already holds {mine} open chat connections with key {shown}, "
                "the most one client may (chat.max_connections_per_client); close one, or ask "
                "several questions over one connection (they may run at once)",
                retry_after=5,
            )
        total = self._by_key.get(who, 0)
        if self.per_key and total >= self.per_key:
            raise TooManyConnections(
                f"key {shown} already holds {total} open chat connections from all its "
                "clients, the most allowed (chat.max_connections_per_key); retry in a moment",
                retry_after=5,
            )
        self._by_client[(who, client)] = mine + 1
        self._by_key[who] = total + 1

    def give_back(self, who: str, client: str) -> None:
        """Give back the slot `take` took for `who` from `client`, once its socket has ended."""
        _decrement(self._by_client, (who, client))
        _decrement(self._by_key, who)


def _decrement(counts: dict[K, int], key: K) -> None:
    count = counts.get(key, 0) - 1
    if count > 0:
        counts[key] = count
    else:
        counts.pop(key, None)
