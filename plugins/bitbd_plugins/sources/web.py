"""The `web` source: crawl sites from start URLs, within their hosts, honouring robots.txt and sitemaps."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urljoin, urlsplit

from protego import Protego
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bitbd.errors import InvalidRequest
from bitbd.hookspecs import hookimpl
from bitbd.http.body import describe
from bitbd.ingest.extract import ExtractError, extract, normalize_url
from bitbd.ingest.fetch import FetchError
from bitbd.interfaces import Fetched, Previous, Source, SourceError

_ROBOTS_TTL = 600.0
_SITEMAP_TYPES = ("application/xml", "text/xml", "application/x-xml")
_MAX_SITEMAPS = 20
# Robots rules per origin, per worker process: fetched once, not once per page.
_robots: dict[str, tuple[float, Protego | None]] = {}
_robots_locks: dict[str, asyncio.Lock] = {}


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    urls: list[str] = Field(min_length=1, max_length=100)
    max_pages: int | None = Field(None, ge=1)
    max_depth: int | None = Field(None, ge=0)
    include: list[str] = []
    exclude: list[str] = []
    sitemap: bool = True

    @field_validator("urls")
    @classmethod
    def _http(cls, urls: list[str]) -> list[str]:
        out = []
        for url in urls:
            parts = urlsplit(url.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an absolute http(s) URL")
            out.append(normalize_url(url))
        return out

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"{p!r} is not a valid regular expression: {e}") from None
        return patterns


class WebSource(Source):
    type = "web"

    @classmethod
    def validate(cls, config: dict[str, Any], settings: Any) -> dict[str, Any]:
        try:
            cfg = WebConfig.model_validate(config, strict=True)
        except ValidationError as e:
            raise InvalidRequest(describe(e)) from None
        crawler = settings.crawler
        cfg.max_pages = min(cfg.max_pages or crawler.max_pages, crawler.max_pages)
        cfg.max_depth = crawler.max_depth if cfg.max_depth is None else cfg.max_depth
        return cfg.model_dump()

    @property
    def hosts(self) -> set[str]:
        return {urlsplit(u).hostname or "" for u in self.config["urls"]}

    def in_site(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and (parts.hostname or "") in self.hosts

    def follow(self, url: str) -> bool:
        if not self.in_site(url):
            return False
        if self.config["include"] and not any(re.search(p, url) for p in self.config["include"]):
            return False
        return not any(re.search(p, url) for p in self.config["exclude"])

    async def seeds(self) -> list[str]:
        seeds = list(self.config["urls"])
        if self.config.get("sitemap", True):
            for origin in dict.fromkeys(_origin(u) for u in seeds):
                seeds += [u for u in await self._sitemap_urls(origin) if self.follow(u)]
        return list(dict.fromkeys(seeds))

    async def fetch(self, item: str, previous: Previous | None) -> Fetched:
        if not await self._allowed(item):
            raise SourceError("disallowed by robots.txt")
        # A FetchError is a SourceError: it goes to the job engine as it is, transient or not.
        page = await self.ctx.fetcher.get(item, in_scope=self.in_site, etag=previous.etag if previous else None,
                                          last_modified=previous.last_modified if previous else None)
        if page.status == 304:
            return Fetched(url=item, unchanged=True)
        final = normalize_url(page.url)
        if final != item and not await self._allowed(final):
            raise SourceError(f"redirects to {final}, which robots.txt disallows")
        try:
            doc = await asyncio.to_thread(extract, page.body, page.content_type, final, page.charset)
        except ExtractError as e:
            raise SourceError(str(e)) from None
        url = doc.canonical if doc.canonical and self.in_site(doc.canonical) else final
        return Fetched(url=url, title=doc.title, text=doc.text, content_type=page.content_type,
                       content_hash=hashlib.sha256(doc.text.encode()).hexdigest(), etag=page.etag,
                       last_modified=page.last_modified, links=doc.links)

    async def _allowed(self, url: str) -> bool:
        rules = await self._robots(_origin(url))
        return rules is None or rules.can_fetch(url, self.ctx.settings.crawler.user_agent)

    async def _robots(self, origin: str) -> Protego | None:
        cached = _robots.get(origin)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with _robots_locks.setdefault(origin, asyncio.Lock()):
            cached = _robots.get(origin)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            try:
                page = await self.ctx.fetcher.get(origin + "/robots.txt", accept=("text/plain",))
                rules: Protego | None = Protego.parse(page.body.decode("utf-8", errors="replace"))
            except FetchError:
                rules = None  # no robots.txt (or unreadable): everything is allowed
            _robots[origin] = (time.monotonic() + _ROBOTS_TTL, rules)
            return rules

    async def _sitemap_urls(self, origin: str) -> list[str]:
        rules = await self._robots(origin)
        todo = list(rules.sitemaps) if rules is not None else []
        todo = todo or [origin + "/sitemap.xml"]
        urls: list[str] = []
        seen: set[str] = set()
        while todo and len(seen) < _MAX_SITEMAPS:
            sitemap = todo.pop(0)
            if sitemap in seen or not self.in_site(sitemap):
                continue
            seen.add(sitemap)
            try:
                page = await self.ctx.fetcher.get(sitemap, in_scope=self.in_site, accept=_SITEMAP_TYPES)
                root = ET.fromstring(page.body)
            except (FetchError, ET.ParseError):
                continue
            locs = [(el.text or "").strip() for el in root.iter() if el.tag.endswith("loc")]
            if root.tag.endswith("sitemapindex"):
                todo += [urljoin(sitemap, loc) for loc in locs]
            else:
                urls += [normalize_url(urljoin(sitemap, loc)) for loc in locs if loc]
            if len(urls) >= self.max_pages:
                break
        return urls[: self.max_pages]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@hookimpl
def register_sources() -> list[type[Source]]:
    return [WebSource]
