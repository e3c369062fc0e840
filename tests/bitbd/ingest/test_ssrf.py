"""The SSRF guard against every spelling of a loopback or private address: Unicode digits and full stops (IDNA
maps them to ASCII), decimal/hex/octal and shortened IPv4, IPv6 and IPv4-mapped forms, userinfo, trailing dots.
A real loopback HTTP server counts requests: with crawler.allow_private off it must get none."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import socket
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitbd.errors import InvalidRequest
from bitbd.ingest import fetch as fetch_module
from bitbd.ingest import guard
from bitbd.ingest.fetch import Fetcher, FetchError
from bitbd.ingest.guard import ForbiddenAddress, GuardedConnector, peer_refusal, url_refusal
from bitbd.settings import CrawlerSettings, Settings
from bitbd_plugins.sources.web import WebSource

# Characters IDNA (UTS 46) maps onto ASCII digits, letters and the full stop.
DIGITS = {
    str(d): [
        str(d),
        chr(0xFF10 + d),
        chr(0x1D7CE + d),
        chr(0x1D7D8 + d),
        chr(0x1D7EC + d),
        chr(0x1D7F6 + d),
        chr(0x245F + d) if d else "\u24ea",
    ]  # fullwidth, mathematical, circled
    for d in range(10)
}
LETTERS = {c: [c, c.upper(), chr(0xFF41 + ord(c) - ord("a")), chr(0xFF21 + ord(c) - ord("a"))] for c in "abcdefx"}
DOTS = [".", "\u3002", "\uff0e", "\uff61"]


class Counter(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        Counter.hits += 1
        body = b"<html><body><main><p>The secret internal page nobody outside may read.</p></main></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """One port, served on 127.0.0.1 and (where there is IPv6) ::1."""
    servers: list[http.server.ThreadingHTTPServer] = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counter)]
    number = servers[0].server_address[1]
    try:
        servers.append(V6Server(("::1", number), Counter))
    except OSError:
        pass
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(number)
    for server in servers:
        server.shutdown()
        server.server_close()


def spell(text: str, draw: st.DrawFn) -> str:
    """`text` with each digit, hex letter and dot in a spelling drawn from what IDNA maps onto it."""
    out = []
    for ch in text:
        choices = DIGITS.get(ch) or LETTERS.get(ch) or (DOTS if ch == "." else [ch])
        out.append(draw(st.sampled_from(choices)))
    return "".join(out)


def _number(value: int, draw: st.DrawFn) -> str:
    form = draw(st.sampled_from(["dec", "hex", "oct"]))
    if form == "hex":
        return draw(st.sampled_from(["0x", "0X"])) + format(value, draw(st.sampled_from(["x", "X"])))
    if form == "oct":
        return "0" + format(value, "o")
    return str(value)


@st.composite
def ipv4_spelling(draw: st.DrawFn, address: str) -> str:
    """An IPv4 address in a form the system resolver turns back into it: 4, 3, 2 or 1 parts, any base."""
    a, b, c, d = (int(x) for x in address.split("."))
    parts = draw(
        st.sampled_from(
            [[a, b, c, d], [a, b, (c << 8) | d], [a, (b << 16) | (c << 8) | d], [int(ipaddress.IPv4Address(address))]]
        )
    )
    text = ".".join(_number(p, draw) for p in parts)
    return spell(text, draw) if draw(st.booleans()) else text


@st.composite
def loopback_host(draw: st.DrawFn) -> str:
    """A host that means this machine (127.0.0.1, ::1, 0.0.0.0), in any spelling; unicode only where IDNA maps it."""
    kind = draw(st.sampled_from(["v4", "v4", "v4-unicode", "v6", "name"]))
    if kind == "name":
        return spell(draw(st.sampled_from(["localhost", "LOCALHOST", "localhost.", "a.localhost"])), draw)
    if kind == "v6":
        return (
            "["
            + draw(
                st.sampled_from(
                    [
                        "::1",
                        "0:0:0:0:0:0:0:1",
                        "0::1",
                        "::ffff:127.0.0.1",
                        "::ffff:7f00:1",
                        "0:0:0:0:0:ffff:7f00:1",
                        "::FFFF:127.0.0.1",
                        "64:ff9b::7f00:1",
                    ]
                )
            )
            + "]"
        )
    address = draw(st.sampled_from(["127.0.0.1", "127.0.0.1", "127.1.2.3", "0.0.0.0"]))
    if kind == "v4-unicode":  # IDNA first turns it into plain dotted decimal (the form of the report)
        return spell(address, draw) + draw(st.sampled_from(["", "."]))
    return draw(ipv4_spelling(address))


@st.composite
def loopback_url(draw: st.DrawFn, port: int) -> str:
    userinfo = draw(st.sampled_from(["", "user@", "user:pw@", "docs.example.com@"]))
    path = draw(st.sampled_from(["/", "/secret", "/robots.txt", "/a?b=1"]))
    scheme = draw(st.sampled_from(["http", "HTTP", "http"]))
    return f"{scheme}://{userinfo}{draw(loopback_host())}:{port}{path}"


GUARDED = Settings(crawler=CrawlerSettings(allow_private=False))
PRIVATE = [
    "10.0.0.1",
    "10.255.1.2",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "198.18.0.1",
    "224.0.0.1",
    "255.255.255.255",
]


@st.composite
def private_url(draw: st.DrawFn) -> str:
    """Private, link-local and metadata addresses in any spelling (checked without sending anything)."""
    address = draw(st.sampled_from(PRIVATE))
    host = draw(
        st.one_of(
            ipv4_spelling(address),
            st.just(address).map(lambda a: spell(a, draw)),
            st.just(f"[::ffff:{address}]"),
            st.sampled_from(["[fe80::1]", "[fd00::1]", "[fc00::7]"]),
        )
    )
    return f"http://{host}/latest/meta-data/"


async def fetch(url: str) -> FetchError:
    fetcher = Fetcher(CrawlerSettings(allow_private=False, timeout=3))
    try:
        await fetcher.get(url)
    except FetchError as e:
        return e
    finally:
        await fetcher.close()
    raise AssertionError(f"{url} was fetched")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_spelling_of_loopback_is_fetched(port: int, data: st.DataObject) -> None:
    url = data.draw(loopback_url(port))
    before = Counter.hits
    error = asyncio.run(fetch(url))
    assert Counter.hits == before, f"{url} reached the loopback server"
    assert "private, loopback or link-local" in str(error) and "crawler.allow_private" in str(error), (url, error)
    assert error.forbidden and not error.transient
    # Refused when the source is created, too: a 400 naming the URL and the setting.
    with pytest.raises(InvalidRequest, match=r"crawler\.allow_private") as refused:
        WebSource.validate({"urls": [url]}, GUARDED)
    assert "urls[0]" in str(refused.value)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(url=private_url())
def test_every_spelling_of_a_private_address_is_refused_before_connecting(url: str) -> None:
    assert url_refusal(url, allow_private=False), url
    assert url_refusal(url, allow_private=True) is None
    with pytest.raises(InvalidRequest, match="private, loopback or link-local"):
        WebSource.validate({"urls": [url]}, GUARDED)


def test_the_reported_spellings() -> None:
    for host in [
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",
        "127\u30020\u30020\u30021",
        "\u2460\u2461\u2466.\u24ea.\u24ea.\u2460",
        "1\uff12\u2466\u3002\uff10.\u24ea\uff0e1",
    ]:
        assert url_refusal(f"http://{host}:8080/", allow_private=False), host


async def test_the_connector_checks_the_address_it_connects_to(port: int) -> None:
    """Below the URL checks: a session on the guarded connector alone refuses an IP literal and a name."""
    before = Counter.hits
    async with aiohttp.ClientSession(connector=GuardedConnector(allow_private=False)) as session:
        for url in [f"http://127.0.0.1:{port}/", f"http://localhost:{port}/", f"http://[::ffff:7f00:1]:{port}/"]:
            with pytest.raises(aiohttp.ClientConnectorError) as refused:
                await session.get(url)
            assert isinstance(refused.value.os_error, ForbiddenAddress), url
            assert "private, loopback or link-local" in str(refused.value.os_error)
    assert Counter.hits == before
    async with aiohttp.ClientSession(connector=GuardedConnector(allow_private=True)) as session:
        async with session.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 200
    assert Counter.hits == before + 1, "with allow_private the same request goes through"


async def fetch_unchecked(url: str) -> FetchError:
    """Fetcher.get with its URL check (url_refusal) switched off: only the resolver, connector and peer check
    stand between the URL and the loopback server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fetch_module, "url_refusal", lambda *_: None)
        return await fetch(url)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_below_the_url_check_no_spelling_of_loopback_is_connected_to(port: int, data: st.DataObject) -> None:
    url = data.draw(loopback_url(port))
    before = Counter.hits
    error = asyncio.run(fetch_unchecked(url))
    assert Counter.hits == before, f"{url} reached the loopback server"
    # A spelling the client refuses, or a name this machine's resolver does not know ("localhost."), never
    # connects either; everything else is refused by the guard below the URL check.
    if "invalid URL" not in str(error) and "Name or service not known" not in str(error):
        assert error.forbidden and "private, loopback or link-local" in str(error), (url, error)


async def test_the_peer_of_a_connection_is_checked(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """peer_refusal on a real socket connected to loopback; and in the connector, with the address filter before
    connecting switched off, the connection to loopback is closed before any request is sent."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    try:
        refused = peer_refusal(transport, "docs.example.com")
        assert isinstance(refused, ForbiddenAddress) and "127.0.0.1" in str(refused)
        assert "docs.example.com" in str(refused) and "crawler.allow_private" in str(refused)
    finally:
        transport.close()
    monkeypatch.setattr(guard, "allowed_infos", lambda infos: infos)
    before = Counter.hits
    async with aiohttp.ClientSession(connector=GuardedConnector(allow_private=False)) as session:
        for url in [f"http://127.0.0.1:{port}/", f"http://[::ffff:127.0.0.1]:{port}/"]:
            with pytest.raises(aiohttp.ClientConnectorError) as error:
                await session.get(url)
            assert isinstance(error.value.os_error, ForbiddenAddress), url
            assert "private, loopback or link-local" in str(error.value.os_error)
    assert Counter.hits == before, "the peer check let a request through"


def test_the_peer_check_passes_a_public_peer() -> None:
    class Public(asyncio.BaseTransport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("93.184.215.14", 80) if name == "peername" else default

    assert peer_refusal(Public(), "example.com") is None
