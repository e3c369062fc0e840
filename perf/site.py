"""A website of any number of pages, cut from real documentation: the ingestion benchmark's 1,000-page site.

The sections of Python's documentation (Debian's python3.11-doc: real prose, code, tables) are dealt into pages of
about `chars` characters of text each (about three chunks), as a business site's pages are: one topic under one
title, no subheadings. Every page has a navigation bar
(home, previous, next), links to two child pages (so the site is a tree of depth ~log2(pages), within the
crawler's depth limit) and a footer. Deterministic: the same arguments give the same site.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from perf.corpus import PYDOCS

_LINK = re.compile(r"</?a\b[^>]*>")


def sections(site: Path = PYDOCS) -> list[tuple[str, str]]:
    """(heading, HTML) of every section's own text (its subsections are sections of their own), links unwrapped
    (they pointed into the original site)."""
    out: list[tuple[str, str]] = []
    for page in sorted(p for p in site.rglob("*.html") if "_sources" not in p.parts):
        tree = LexborHTMLParser(page.read_text(encoding="utf-8", errors="replace"))
        found: list[tuple[str, str]] = []
        for section in reversed(tree.css("section")):  # innermost first: each is removed once recorded
            heading = section.css_first("h1, h2, h3, h4")
            if heading is not None:
                title = heading.text().replace("¶", "").strip()
                heading.decompose()
                body = _LINK.sub("", section.html or "")
                if len(LexborHTMLParser(body).text().split()) >= 40:
                    found.append((title, body))
            section.decompose()
        out.extend(reversed(found))
    return out


def build(directory: Path, pages: int, chars: int = 3000) -> Path:
    """Write `pages` pages (index.html is page 0) into `directory`; returns it."""
    marker = directory / f".built-v2-{pages}-{chars}"
    if marker.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    parts = sections()
    cursor = 0  # pages past the end of the documentation start over from its beginning
    for n in range(pages):
        title, bodies, size = "", [], 0
        while size < chars:
            heading, body = parts[cursor % len(parts)]
            cursor += 1
            # One topic per page, as on a business site: the first section's heading is the page's title, the
            # sections dealt after it continue its text (their own headings would make each a chunk of its own).
            title = title or heading
            bodies.append(body)
            size += len(LexborHTMLParser(body).text())
        links = [(0, "Home"), (n - 1, "Previous"), (n + 1, "Next"), (2 * n + 1, "More"), (2 * n + 2, "More")]
        nav = "".join(
            f'<li><a href="page-{i}.html">{label}</a></li>'.replace("page-0.html", "index.html")
            for i, label in links
            if 0 <= i < pages and i != n
        )
        name = "index.html" if n == 0 else f"page-{n}.html"
        (directory / name).write_text(
            f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)} | Example Docs"
            f"</title></head><body><nav><ul>{nav}</ul></nav><main><h1>{html.escape(title)}</h1>"
            f"{''.join(bodies)}</main><footer>Example Docs, built from the Python 3.11 documentation"
            "</footer></body></html>",
            encoding="utf-8",
        )
    marker.touch()
    return directory
