"""SSRF guard: a resolver that refuses loopback, private, link-local and metadata addresses after DNS."""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class ForbiddenAddress(OSError):
    """The host resolves only to addresses the crawler may not visit."""


def forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then drops forbidden addresses; the connection uses only what is left.

    Checking the addresses that are actually connected to (not a separate lookup) leaves no gap for DNS
    rebinding, and aiohttp resolves again for every redirect hop.
    """

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self.allow_private = allow_private

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self.allow_private:
            return results
        allowed = [r for r in results if not forbidden(r["host"])]
        if not allowed:
            shown = ", ".join(sorted({r["host"] for r in results}))
            raise ForbiddenAddress(f"{host} resolves to a private, loopback or link-local address ({shown}); "
                                   "set crawler.allow_private = true to crawl internal sites")
        return allowed

    async def close(self) -> None:
        await self._inner.close()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"GuardedResolver(allow_private={self.allow_private})"


def literal_host_forbidden(host: str, allow_private: bool) -> bool:
    """True for an IP-literal host that is forbidden (aiohttp skips the resolver for literals)."""
    if allow_private:
        return False
    try:
        return forbidden(host.strip("[]"))
    except ValueError:
        return False


