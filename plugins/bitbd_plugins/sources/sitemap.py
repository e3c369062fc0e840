"""Sitemap XML parsed safely (no entities, no DTD, no network, libxml2's size limits) and off the event loop."""

from __future__ import annotations

from dataclasses import dataclass

import lxml.etree  # type: ignore[import-untyped]

MAX_LOCS = 50_000  # the sitemap protocol's own limit per file


@dataclass(frozen=True)
class Sitemap:
    """A parsed sitemap: its `<loc>` URLs (at most MAX_LOCS), and whether it is an index of further
    sitemaps."""

    index: bool  # a sitemap index: `locs` are further sitemaps
    locs: list[str]


def parse(body: bytes) -> Sitemap | None:
    """The <loc>s of a sitemap or sitemap index; None for something that is not XML. CPU work: run in a thread."""
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
    for el in root.iter("{*}loc", "loc"):
        text = (el.text or "").strip()
        if text:
            locs.append(text)
            if len(locs) >= MAX_LOCS:
                break
    return Sitemap(root.tag.endswith("sitemapindex"), locs)
