"""The `web` source: crawl sites from start URLs, within their origins, honouring robots.txt and sitemaps."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import urljoin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from yarl import URL

from bitbd.plugin_api import (
    ExtractError,
    Fetched,
    FetchError,
    InvalidRequest,
    Previous,
    Settings,
    Source,
    SourceError,
    describe,
    extract_off_loop,
    hookimpl,
    normalize_url,
    origin,
    robots_for,
    storable,
    url_host,
    url_refusal,
)
from bitbd_plugins.sources import patterns, sitemap

_SITEMAP_TYPES = ("application/xml", "text/xml", "application/x-xml")
_MAX_SITEMAPS = 20
_DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host as the client connects to it, port


class WebConfig(BaseModel):
    """A `web` source's configuration: start URLs (normalised, absolute http(s)), page and depth limits,
    include and exclude patterns (checked as RE2), and whether the sites' sitemaps are read."""

    model_config = ConfigDict(extra="forbid")
    urls: list[str] = Field(min_length=1, max_length=100)
    max_pages: int | None = Field(None, ge=1, le=2_147_483_647)  # PostgreSQL integer range
    max_depth: int | None = Field(None, ge=0, le=2_147_483_647)
    include: list[str] = []
    exclude: list[str] = []
    sitemap: bool = True

    @field_validator("urls")
    @classmethod
    def _http(cls, urls: list[str]) -> list[str]:
        out = []
        for url in urls:
            try:
                normal = normalize_url(url)
                ok = site_of(normal) is not None
            except ValueError as e:
                raise ValueError(f"{url!r} is not a URL an HTTP client accepts: {e}") from None
            if not ok:
                raise ValueError(f"{url!r} is not an absolute http(s) URL")
            out.append(normal)
        return out

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: list[str], info: ValidationInfo) -> list[str]:
        try:
            patterns.check(value, info.field_name or "pattern")
        except patterns.PatternError as e:
            raise ValueError(str(e)) from None
        return value


def site_of(url: str) -> Origin | None:
    """The origin a URL is fetched from, exactly as the client normalises it; None if it is not http(s)."""
    try:
        parsed = URL(url)
        if parsed.scheme not in _DEFAULT_PORTS or not parsed.raw_host:
            return None
        return parsed.scheme, url_host(parsed), parsed.port or _DEFAULT_PORTS[parsed.scheme]
    except ValueError:
        return None


class WebSource(Source):
    """Crawls sites from start URLs, within their origins; a complete crawl deletes the pages it no longer finds."""

    type = "web"
    urls = True
    prunes = True

    @classmethod
    def validate(cls, config: dict[str, Any], settings: Settings) -> dict[str, Any]:
        """Check the configuration strictly and refuse start URLs the SSRF guard forbids; caps
        `max_pages` and fills in `max_depth` from the crawler settings. Raises InvalidRequest."""
        try:
            cfg = WebConfig.model_validate(config, strict=True)
        except ValidationError as e:
            raise InvalidRequest(describe(e)) from None
        crawler = settings.crawler
        for i, url in enumerate(cfg.urls):
            reason = url_refusal(url, crawler.allow_private)
            if reason:
                raise InvalidRequest(f"urls[{i}]: {url} refused: {reason}")
        cfg.max_pages = min(cfg.max_pages or crawler.max_pages, crawler.max_pages)
        cfg.max_depth = crawler.max_depth if cfg.max_depth is None else cfg.max_depth
        return cfg.model_dump()

    @cached_property
    def sites(self) -> set[Origin]:
        """The start URLs' origins (scheme, host, port), and the https upgrade of a plain-http one on port 80."""
        sites = {s for s in map(site_of, self.config["urls"]) if s is not None}
        return sites | {("https", host, 443) for scheme, host, port in sites if (scheme, port) == ("http", 80)}

    def in_site(self, url: str) -> bool:
        """Whether the URL is on the origin of a start URL (or the https upgrade of a plain-http one)."""
        return site_of(url) in self.sites

    @cached_property
    def _filters(self) -> tuple[Any, Any]:
        try:
            return (
                patterns.union(self.config["include"], "include"),
                patterns.union(self.config["exclude"], "exclude"),
            )
        except patterns.PatternError as e:  # a source stored before patterns were checked with RE2
            raise SourceError(f"this source's {e}; update the source") from None

    @cached_property
    def _verdicts(self) -> dict[str, bool]:
        return {}

    def follow(self, url: str) -> bool:
        """Whether a link is crawled: in the sites, matched by `include` (if any), not by `exclude`;
        the links of a fetched page were judged ahead, in a thread."""
        verdict = self._verdicts.get(url)
        return self._follow(url) if verdict is None else verdict

    def _follow(self, url: str) -> bool:
        if not self.in_site(url):
            return False
        include, exclude = self._filters
        if include is not None and not include.search(url):
            return False
        return exclude is None or not exclude.search(url)

    async def seeds(self) -> list[str]:
        """The start URLs, then the pages their sites' sitemaps list that are followed (unless
        `sitemap` is off), without repeats."""
        seeds = list(self.config["urls"])
        if self.config.get("sitemap", True):
            for site in dict.fromkeys(origin(u) for u in seeds):
                seeds += await self._sitemap_urls(site)
        return list(dict.fromkeys(seeds))

    async def fetch(self, item: str, previous: Previous | None) -> Fetched:
        """Fetch a page robots.txt allows (at the end of its redirects too) and extract it; a 304 gives
        it unchanged. Raises SourceError, transient or not, with a message fit to store."""
        try:
            return await self._fetch(item, previous)
        except SourceError as e:  # the message goes to PostgreSQL; it may quote what the site sent
            raise SourceError(storable(str(e)), e.transient) from None

    async def _fetch(self, item: str, previous: Previous | None) -> Fetched:
        await self._check_robots(item)
        # A FetchError is a SourceError: it goes to the job engine as it is, transient or not.
        page = await self.ctx.need_fetcher().get(
            item,
            in_scope=self.in_site,
            etag=previous.etag if previous else None,
            last_modified=previous.last_modified if previous else None,
        )
        if page.status == 304:
            # The engine follows the links stored with the page: judged off the loop too (they may be thousands).
            await asyncio.to_thread(self._judge, previous.links if previous else [])
            return Fetched(url=item, unchanged=True)
        final = normalize_url(page.url)
        if final != item:
            try:
                await self._check_robots(final)
            except SourceError as e:
                raise SourceError(f"redirects to {final}: {e}", e.transient) from None
        try:
            # Extraction and the link patterns are CPU work on what a site sent: off the event loop (extraction
            # in another process, as parsers hold the GIL).
            doc = await extract_off_loop(page.body, page.content_type, final, page.charset)
        except ExtractError as e:
            raise SourceError(str(e)) from None
        await asyncio.to_thread(self._judge, doc.links)
        url = doc.canonical if doc.canonical and self.in_site(doc.canonical) else final
        crawler = self.ctx.settings.crawler
        return Fetched(
            url=url,
            title=doc.title,
            text=doc.text,
            content_type=page.content_type,
            content_hash=hashlib.sha256(doc.text.encode()).hexdigest(),
            etag=page.etag,
            last_modified=page.last_modified,
            links=doc.links,
            listing=not crawler.index_link_pages and doc.link_share >= crawler.link_page_share,
        )

    def _judge(self, links: list[str]) -> None:
        """Decide (in a thread) which links are followed, so the job engine's follow() calls cost nothing."""
        self._verdicts.update((link, self._follow(link)) for link in links)

    async def _check_robots(self, url: str) -> None:
        robots = await robots_for(self.ctx.need_fetcher(), origin(url))
        await robots.check(url, self.ctx.settings.crawler.user_agent)  # in a child process

    async def _sitemap_urls(self, site: str) -> list[str]:
        robots = await robots_for(self.ctx.need_fetcher(), site)
        if robots.unreachable is not None:
            return []  # the whole site is disallowed for now; its pages say why
        todo = list(robots.sitemaps) or [site + "/sitemap.xml"]
        urls: list[str] = []
        seen: set[str] = set()
        while todo and len(seen) < _MAX_SITEMAPS and len(urls) < self.max_pages:
            address = todo.pop(0)
            if address in seen or not self.in_site(address):
                continue
            seen.add(address)
            try:
                page = await self.ctx.need_fetcher().get(address, in_scope=self.in_site, accept=_SITEMAP_TYPES)
            except FetchError:
                continue
            found = await asyncio.to_thread(self._sitemap_entries, page.body, address)
            if found is not None:
                index, entries, lastmod = found
                self._lastmod.update(lastmod)
                if index:
                    todo += entries
                else:
                    urls += entries
        return urls[: self.max_pages]

    def _sitemap_entries(self, body: bytes, address: str) -> tuple[bool, list[str], dict[str, datetime]] | None:
        """Parse a sitemap (in a thread): further sitemaps of an index, or the pages it lists that are followed;
        and the `<lastmod>` of the pages that give one."""
        parsed = sitemap.parse(body)
        if parsed is None:
            return None
        entries = []
        lastmod = {}
        for loc in parsed.locs:
            try:
                url = normalize_url(urljoin(address, loc))
            except ValueError:
                continue
            if parsed.index or self._follow(url):
                entries.append(url)
                if not parsed.index and loc in parsed.lastmod:
                    lastmod[url] = parsed.lastmod[loc]
                if len(entries) >= self.max_pages:
                    break
        return parsed.index, entries, lastmod

    @cached_property
    def _lastmod(self) -> dict[str, datetime]:
        return {}

    def last_modified(self, item: str) -> datetime | None:
        """When the site's sitemap says the page last changed (its `<lastmod>`), known once seeds() read it."""
        return self._lastmod.get(item)


@hookimpl
def register_sources() -> list[type[Source]]:
    """Hook: the `web` source."""
    return [WebSource]
