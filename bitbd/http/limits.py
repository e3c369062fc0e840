"""Limits against abuse that no single request shows: failed authentications per client address (brute force),
and open WebSockets per key."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web

from bitbd.errors import AuthThrottled, TooManyConnections
from bitbd.settings import AuthSettings

_MAX_ADDRESSES = 50_000  # addresses remembered at once; the least recently failing are forgotten first

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def presents_credentials(request: web.Request) -> bool:
    """The request tries to authenticate: an Authorization header or a `?key=`."""
    return bool(request.headers.get("Authorization") or request.query.get("key"))


class AuthThrottle:
    """Failed authentications per client address in a sliding window; past `max_failures`, the address is
    refused (429) until its oldest counted failure leaves the window. A success does not wipe the count, so one
    valid key cannot be used to keep guessing another."""

    def __init__(self, cfg: AuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.proxies: list[Network] = [ipaddress.ip_network(p, strict=False) for p in cfg.trusted_proxies]
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

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
        if not self.cfg.max_failures:
            return
        who = self.client(request)
        seen = self._failures.get(who)
        if seen is None or len(seen) < self.cfg.max_failures:
            return
        wait = seen[0] + self.cfg.failure_window - self.clock()
        if wait <= 0:
            return
        seconds = math.ceil(wait)
        raise AuthThrottled(f"too many failed authentications from this address ({len(seen)} in "
                            f"{self.cfg.failure_window:g} s, auth.max_failures); wait {seconds} s (Retry-After) and "
                            "check the key or token you send", retry_after=seconds)

    def failed(self, request: web.Request) -> None:
        if not self.cfg.max_failures:
            return
        who = self.client(request)
        seen = self._failures.pop(who, None) or deque(maxlen=self.cfg.max_failures)
        seen.append(self.clock())
        self._failures[who] = seen  # most recent last
        while len(self._failures) > _MAX_ADDRESSES:
            self._failures.popitem(last=False)

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
    """Open WebSockets per key: a slot is taken before the upgrade and given back when the socket ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def take(self, who: str, shown: str) -> None:
        """Take a slot for `who` (a key id), or refuse with 429 naming the key by `shown` (its prefix)."""
        count = self._open.get(who, 0)
        if self.limit and count >= self.limit:
            raise TooManyConnections(f"key {shown} already holds {count} open chat connections, the most allowed "
                                     "(chat.max_connections_per_key); close one, or ask several questions over one "
                                     "connection (they may run at once)", retry_after=5)
        self._open[who] = count + 1

    def give_back(self, who: str) -> None:
        count = self._open.get(who, 0) - 1
        if count > 0:
            self._open[who] = count
        else:
            self._open.pop(who, None)
