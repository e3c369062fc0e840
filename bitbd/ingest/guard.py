"""SSRF guard: the crawler connects only to public addresses unless crawler.allow_private is on.

Checked where it cannot be spelled around: on the host exactly as the HTTP client normalises it (yarl's IDNA, so
fullwidth digits, ideographic full stops and enclosed digits are the plain IP literal they become), on every
address DNS returns, and on the addresses the connector actually connects to (the peer of each connection).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from aiohttp import ClientConnectorError, TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

# Where the setting lives: the process that runs the crawl (a server's in-process workers or `bitbd worker`),
# not the one that queued the job.
WHERE = (
    "set crawler.allow_private = true in the settings of the process that runs the crawl workers "
    "(its bitbd.toml, or BITBD_CRAWLER__ALLOW_PRIVATE=true in the environment of `bitbd serve` / "
    "`bitbd worker`; setting it for `bitbd ingest` alone does not reach a running server's workers)"
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class ForbiddenAddress(OSError):
    """The host is, or resolves only to, addresses the crawler may not visit."""


def refusal(host: str, addresses: str = "") -> str:
    """The message for a refused host: what it is and where the setting that allows it must be set."""
    shown = f" ({addresses})" if addresses and addresses != host else ""
    return f"{host}{shown} is a private, loopback or link-local address; to crawl internal sites, {WHERE}"


def forbidden(address: str) -> bool:
    """Whether the crawler must not connect to this IP address: anything not globally routable (private,
    loopback, link-local, multicast, reserved); an IPv4 address inside an IPv6 one (mapped, 6to4, Teredo, NAT64)
    is judged by that IPv4 address. Raises ValueError for text that is not an address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:  # 64:ff9b::a.b.c.d reaches a.b.c.d through a NAT64 gateway
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def url_host(url: str | URL) -> str:
    """The host the HTTP client will connect to: IDNA-normalised (ASCII), lowercase, without a trailing dot.

    Raises ValueError for a URL the client would not accept either.
    """
    parsed = url if isinstance(url, URL) else URL(url.strip())
    host = parsed.raw_host
    if not host:
        raise ValueError(f"{str(url)!r} has no host")
    return host.lower().rstrip(".")


def numeric_address(host: str) -> str | None:
    """The IP address a host spells, in any form the system resolver accepts without DNS (127.1, 2130706433,
    0x7f.0.0.1, 0177.0.0.1, ::ffff:7f00:1); None for a name."""
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%")[0]))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None
    return str(infos[0][4][0]) if infos else None


def host_refusal(host: str, allow_private: bool) -> str | None:
    """Why the crawler refuses `host` (as url_host gives it) before any DNS, or None: an address it spells is
    private, or it is one of the loopback names every resolver answers locally."""
    if allow_private:
        return None
    address = numeric_address(host)
    if address is not None:
        return refusal(host, address) if forbidden(address) else None
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return refusal(host)
    return None


def url_refusal(url: str | URL, allow_private: bool) -> str | None:
    """host_refusal for the host of `url` as the client normalises it (an invalid URL is not refused here)."""
    try:
        return host_refusal(url_host(url), allow_private)
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then drops forbidden addresses; the connection uses only what is left.

    Checking the addresses that are actually connected to (not a separate lookup) leaves no gap for DNS
    rebinding, and aiohttp resolves again for every redirect hop.
    """

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The host's addresses without the forbidden ones (all of them with allow_private);
        raises ForbiddenAddress when none is left."""
        results = await self._inner.resolve(host, port, family)
        if self.allow_private:
            return results
        allowed = [r for r in results if not forbidden(r["host"])]
        if not allowed:
            raise ForbiddenAddress(refusal(host, ", ".join(sorted({r["host"] for r in results}))))
        return allowed

    async def close(self) -> None:
        """Close the resolver underneath."""
        await self._inner.close()


class GuardedConnector(TCPConnector):
    """A TCPConnector that connects only to allowed addresses and checks every connection's peer.

    aiohttp skips the resolver for IP-literal hosts, so the resolver alone does not see every address; this
    filters the very address list the connection is made from, then checks the connected socket's peer.
    """

    def __init__(self, *, allow_private: bool, **kwargs: Any) -> None:
        super().__init__(resolver=GuardedResolver(allow_private), **kwargs)
        self.allow_private = allow_private

    async def _wrap_create_connection(
        self, *args: Any, addr_infos: list[Any], req: Any, **kwargs: Any
    ) -> tuple[asyncio.Transport, Any]:
        if self.allow_private:
            return await super()._wrap_create_connection(*args, addr_infos=addr_infos, req=req, **kwargs)
        allowed = allowed_infos(addr_infos)
        if not allowed:
            shown = ", ".join(sorted({str(info[4][0]) for info in addr_infos}))
            raise ClientConnectorError(req.connection_key, ForbiddenAddress(refusal(req.url.raw_host or "", shown)))
        transport, proto = await super()._wrap_create_connection(*args, addr_infos=allowed, req=req, **kwargs)
        refused = peer_refusal(transport, req.url.raw_host or "")
        if refused is not None:
            transport.close()  # before a byte of the request is sent
            raise ClientConnectorError(req.connection_key, refused)
        return transport, proto


def allowed_infos(addr_infos: list[Any]) -> list[Any]:
    """The getaddrinfo entries whose address the crawler may connect to."""
    return [info for info in addr_infos if not forbidden(info[4][0])]


def peer_refusal(transport: asyncio.BaseTransport, host: str) -> ForbiddenAddress | None:
    """Why a connection made for `host` must not be used (its peer is a forbidden address, or unknown), or None."""
    peer = transport.get_extra_info("peername")
    if not peer or forbidden(str(peer[0])):
        return ForbiddenAddress(refusal(host, str(peer[0]) if peer else "no peer address"))
    return None
