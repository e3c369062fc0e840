"""Sitemap XML parsed safely (no entities, no DTD, no network, libxml2's size limits) and off the event loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import lxml.etree  # type: ignore[import-untyped]

MAX_LOCS = 50_000  # the sitemap protocol's own limit per file


@dataclass(frozen=True)
class Sitemap:
    """A parsed sitemap: its `<loc>` URLs (at most MAX_LOCS), whether it is an index of further sitemaps, and
    the `<lastmod>` of the locs that give one (as the latest moment it can mean)."""

    index: bool  # a sitemap index: `locs` are further sitemaps
    locs: list[str]
    lastmod: dict[str, datetime] = field(default_factory=dict)


def last_modified(text: str) -> datetime | None:
    """A `<lastmod>` (W3C datetime) as the latest moment it can mean: a date alone is the end of that day in UTC
    plus 14 hours (which covers every time zone), a time to the minute or to the second the end of that minute or
    second; a time without a zone, or a year or a month alone, say too little and give None."""
    text = text.strip()
    try:
        if len(text) == 10:  # YYYY-MM-DD
            return datetime.fromisoformat(text + "T00:00:00+00:00") + timedelta(days=1, hours=14)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    clock = text[11:19]
    if "." in text[19:20]:
        return moment
    return moment + (timedelta(seconds=1) if clock.count(":") == 2 else timedelta(minutes=1))


def parse(body: bytes) -> Sitemap | None:
    """The <loc>s (and <lastmod>s) of a sitemap or sitemap index; None for something that is not XML. CPU work:
    run in a thread."""
    parser = lxml.etree.XMLParser(
        resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False, remove_comments=True, remove_pis=True
    )
    try:
        root = lxml.etree.fromstring(body, parser=parser)
    except (lxml.etree.XMLSyntaxError, ValueError):
        return None
    if root is None or not isinstance(root.tag, str):
        return None
    locs: list[str] = []
    lastmod: dict[str, datetime] = {}
    for el in root.iter("{*}loc", "loc"):
        text = (el.text or "").strip()
        if not text:
            continue
        locs.append(text)
        stamp = el.getparent().find("{*}lastmod") if el.getparent() is not None else None
        if stamp is not None and stamp.text:
            moment = last_modified(stamp.text)
            if moment is not None:
                lastmod[text] = moment
        if len(locs) >= MAX_LOCS:
            break
    return Sitemap(root.tag.endswith("sitemapindex"), locs, lastmod)
