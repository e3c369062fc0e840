"""HTTP fetching for the crawler: guarded addresses, manual redirects, size and time limits, conditional GET."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from bitbd.ingest.guard import ForbiddenAddress, GuardedConnector, url_refusal
from bitbd.interfaces import SourceError
from bitbd.settings import CrawlerSettings

CONTENT_TYPES = (
    "text/html",
    "application/xhtml+xml",
    "text/plain",
    "text/markdown",
    "text/x-markdown",
    "application/pdf",
)
_REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(SourceError):
    """A page could not be fetched; `transient` ones (timeouts, 5xx, 429) are worth retrying.

    `status` is the HTTP status when the server answered one, `forbidden` is set when the SSRF guard refused.
    """

    def __init__(
        self, message: str, transient: bool = False, status: int | None = None, forbidden: bool = False
    ) -> None:
        super().__init__(message, transient)
        self.status = status
        self.forbidden = forbidden


@dataclass(frozen=True)
class Fetched:
    """A fetched response: the URL after redirects, 200 with the body, or 304 (unchanged) without one,
    and the ETag and Last-Modified for the next conditional GET."""

    url: str  # after redirects
    status: int  # 200, or 304 when unchanged
    content_type: str
    charset: str | None
    body: bytes
    etag: str | None
    last_modified: str | None


class Fetcher:
    """One aiohttp session per worker process; `per_host` bounds concurrency to a host."""

    def __init__(self, settings: CrawlerSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The process's HTTP session, made on first use (and again after close()): the SSRF-guarded
        connector, the per-host limit, the crawler's user agent and timeouts."""
        if self._session is None or self._session.closed:
            connector = GuardedConnector(
                allow_private=self.settings.allow_private,
                limit=100,
                limit_per_host=self.settings.per_host,
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.settings.user_agent},
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout, sock_connect=10),
                max_line_size=16384,
                max_field_size=16384,
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP session; a later get() opens a new one."""
        if self._session is not None:
            await self._session.close()

    async def get(
        self,
        url: str,
        in_scope: Callable[[str], bool] = lambda _: True,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: tuple[str, ...] | None = CONTENT_TYPES,
        redirects: int | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        """GET `url`, following redirects that stay in scope; every refusal is a FetchError with the reason.

        `accept` None takes any content type; `max_bytes` (default crawler.max_page_bytes) set explicitly keeps
        the first `max_bytes` of a longer body instead of refusing it.
        """
        seen = {url}
        headers = {k: v for k, v in (("If-None-Match", etag), ("If-Modified-Since", last_modified)) if v}
        hops = self.settings.max_redirects if redirects is None else redirects
        status = 0
        try:
            async with asyncio.timeout(self.settings.timeout):
                for _ in range(hops + 1):
                    target_url = self._check_address(url)
                    async with self.session().get(target_url, allow_redirects=False, headers=headers) as resp:
                        status = resp.status
                        if status in _REDIRECTS:
                            target = self._redirect_target(url, resp.headers.get("Location"), seen, in_scope)
                            seen.add(target)
                            url = target
                            continue
                        return await self._read(url, resp, accept, max_bytes)
        except FetchError:
            raise
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, ForbiddenAddress):
                raise FetchError(str(e.os_error), forbidden=True) from None
            raise FetchError(
                f"cannot connect to {urlsplit(url).netloc}: {e.os_error.strerror or e}", transient=True
            ) from None
        except ForbiddenAddress as e:
            raise FetchError(str(e), forbidden=True) from None
        except TimeoutError:
            raise FetchError(f"no complete answer within {self.settings.timeout:.0f}s", transient=True) from None
        except aiohttp.InvalidURL as e:
            raise FetchError(f"invalid URL: {e}") from None
        except aiohttp.ClientResponseError as e:  # bad headers, too long lines
            raise FetchError(f"invalid HTTP response: {e.message}") from None
        except aiohttp.ClientError as e:
            raise FetchError(f"HTTP error: {type(e).__name__}: {e}", transient=True) from None
        except ValueError as e:  # yarl refuses the URL (bad port, backslash in the authority, ...)
            raise FetchError(f"invalid URL {url!r}: {e}") from None
        raise FetchError(f"more than {hops} redirects", status=status)

    def _check_address(self, url: str) -> URL:
        """The URL exactly as the client will request it, after refusing a forbidden host in any spelling."""
        parsed = URL(url)
        if parsed.scheme not in ("http", "https"):
            raise FetchError(f"only http and https URLs are fetched, not {parsed.scheme or 'a relative URL'}")
        if not parsed.raw_host:
            raise FetchError(f"invalid URL {url!r}: no host")
        reason = url_refusal(parsed, self.settings.allow_private)
        if reason:
            raise FetchError(reason, forbidden=True)
        return parsed

    @staticmethod
    def _redirect_target(url: str, location: str | None, seen: set[str], in_scope: Callable[[str], bool]) -> str:
        if not location:
            raise FetchError("redirect without a Location header")
        target = urljoin(url, location).split("#")[0]
        if target in seen:
            raise FetchError(f"redirect loop at {target}")
        if not in_scope(target):
            raise FetchError(f"redirects to {target}, outside the crawl's sites")
        return target

    async def _read(
        self, url: str, resp: aiohttp.ClientResponse, accept: tuple[str, ...] | None, max_bytes: int | None
    ) -> Fetched:
        if resp.status == 304:
            return Fetched(url, 304, "", None, b"", resp.headers.get("ETag"), resp.headers.get("Last-Modified"))
        if resp.status == 429 or resp.status >= 500:
            raise FetchError(f"HTTP {resp.status} {resp.reason}", transient=True, status=resp.status)
        if resp.status >= 400:
            raise FetchError(f"HTTP {resp.status} {resp.reason}", status=resp.status)
        if resp.status != 200:
            raise FetchError(f"unexpected HTTP status {resp.status}", status=resp.status)
        ctype = resp.content_type.lower()
        if accept is not None and ctype not in accept:
            raise FetchError(f"content type {ctype} is not indexed (only {', '.join(accept)})")
        limit = self.settings.max_page_bytes if max_bytes is None else max_bytes
        if max_bytes is None and resp.content_length is not None and resp.content_length > limit:
            raise FetchError(
                f"page is {resp.content_length} bytes, over the {limit}-byte limit (crawler.max_page_bytes)"
            )
        body = bytearray()
        # Counted after decompression, so a gzip bomb stops at the limit too.
        async for piece in resp.content.iter_chunked(65536):
            body += piece
            if len(body) > limit:
                if max_bytes is not None:
                    del body[limit:]
                    break
                raise FetchError(f"page is over the {limit}-byte limit (crawler.max_page_bytes)")
        return Fetched(
            url, 200, ctype, resp.charset, bytes(body), resp.headers.get("ETag"), resp.headers.get("Last-Modified")
        )
