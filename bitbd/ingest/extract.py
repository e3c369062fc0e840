"""Turn fetched bytes into a title, Markdown-ish text with headings, and (for HTML) the links to follow."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.etree  # type: ignore[import-untyped]
import lxml.html  # type: ignore[import-untyped]
import pypdf
from charset_normalizer import from_bytes
from yarl import URL

from bitbd.ingest.html_text import main_markdown
from bitbd.text import UNSTORABLE

log = logging.getLogger(__name__)
HTML_TYPES = ("text/html", "application/xhtml+xml")
MARKDOWN_TYPES = ("text/markdown", "text/x-markdown")
_MIN_TEXT = 20  # characters; anything shorter is not worth a chunk
_REPLACEMENT_LIMIT = 0.02
_NUL_LIMIT = 0.001  # a text with more NUL bytes than this fraction is binary, wherever they are
MAX_LINKS = 5000  # links kept per page (as many as a document stores for re-crawls)
MAX_URL_CHARS = 2048
_MAX_ELEMENTS = 200_000  # HTML elements per page: more is not a document but a hostile or generated page


class ExtractError(Exception):
    """The content has no usable text; the message says why."""


@dataclass(frozen=True)
class Extracted:
    """What a document gave: its title and text (Markdown-ish, headings kept) and, for an HTML page, the
    links to follow, its canonical URL and the share of its main text that is link text."""

    title: str
    text: str
    links: list[str] = field(default_factory=list)
    canonical: str | None = None
    link_share: float = 0.0  # of an HTML page's main text, the share that is link text


def normalize_url(url: str) -> str:
    """One spelling per page, the one the HTTP client (yarl) requests: IDNA host (lowercase ASCII, so fullwidth
    or other Unicode spellings become the plain name or address), no default port, no fragment.

    Raises ValueError for a URL the client would refuse (bad port, backslash in the authority, ...).
    """
    parsed = URL(url.strip()).with_fragment(None)
    if parsed.raw_host and parsed.raw_host.endswith(".."):
        parsed = parsed.with_host(parsed.raw_host.rstrip(".") + ".")
    text = str(parsed)
    if parsed.raw_path == "/" and not parsed.raw_query_string and not text.endswith("/"):
        text += "/"  # yarl writes an empty path as nothing; one spelling for both
    return storable(text)


def storable(text: str) -> str:
    """`text` without the characters PostgreSQL refuses in text (NUL, lone surrogates)."""
    return UNSTORABLE.sub("", text) if UNSTORABLE.search(text) else text


def extract(body: bytes, content_type: str, url: str, charset: str | None = None, name: str = "") -> Extracted:
    """Dispatch on content type; raises ExtractError with the reason when there is nothing to index."""
    if not body.strip():
        raise ExtractError("empty file")
    if content_type == "application/pdf":
        return _pdf(body, name or _last_segment(url))
    if b"\x00" in body[:8192] or body.count(b"\x00") > _NUL_LIMIT * len(body):
        raise ExtractError(f"binary content served as {content_type}")
    text = storable(decode(body, charset))  # a stray NUL further in is dropped, not stored
    if content_type in HTML_TYPES:
        return _html(text, url)
    title = _markdown_title(text) if content_type in MARKDOWN_TYPES else ""
    return _checked(Extracted(title or name or _last_segment(url), text.strip()))


def decode(body: bytes, charset: str | None) -> str:
    """Text in the declared charset, else UTF-8, else the best guess; refuses what is mostly undecodable."""
    for candidate in (charset, "utf-8"):
        if candidate:
            try:
                return body.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
    best = from_bytes(body).best()
    text = str(best) if best is not None else body.decode("utf-8", errors="replace")
    if text.count("\ufffd") > _REPLACEMENT_LIMIT * max(len(text), 1):
        raise ExtractError("text is not in any recognisable character encoding")
    return text


def _parse_html(html: str) -> lxml.html.HtmlElement:
    # libxml2's HTML parser is linear and, without huge_tree, stops nesting at 256 levels (selectolax/lexbor took
    # 97 s on 200,000 nested <div>s).
    parser = lxml.html.HTMLParser(
        encoding="utf-8", no_network=True, huge_tree=False, remove_comments=True, remove_pis=True
    )
    try:
        tree = lxml.html.document_fromstring(html.encode("utf-8", "replace"), parser=parser)
    except (lxml.etree.ParserError, ValueError) as e:
        raise ExtractError(f"unreadable HTML: {e}") from None
    if sum(1 for _ in tree.iter()) > _MAX_ELEMENTS:
        raise ExtractError(f"the page has more than {_MAX_ELEMENTS} HTML elements; not indexed")
    return tree


def _html(html: str, url: str) -> Extracted:
    tree = _parse_html(html)
    base = url
    base_tag = tree.find(".//base[@href]")
    if base_tag is not None:
        base = _absolute(url, base_tag.get("href") or "") or url
    links: dict[str, None] = {}
    for a in tree.iter("a"):
        href = (a.get("href") or "").strip()
        if href and not href.startswith(("#", "mailto:", "javascript:", "tel:", "data:")):
            link = _absolute(base, href)
            if link is not None:
                links[link] = None
                if len(links) >= MAX_LINKS:
                    break
    canonical = None
    for node in tree.iterfind(".//link[@rel='canonical'][@href]"):
        canonical = _absolute(url, node.get("href") or "")
        break
    title = _text_of(tree.find(".//title")) or _text_of(tree.find(".//h1")) or _last_segment(url)
    text, link_share = main_markdown(tree)  # changes the tree: last
    return _checked(Extracted(storable(title), storable(text.strip()), list(links), canonical, link_share))


def _absolute(base: str, href: str) -> str | None:
    """`href` resolved against `base` and normalised; None for one too long or that no client would fetch."""
    if len(href) > MAX_URL_CHARS:
        return None
    try:
        return normalize_url(urljoin(base, href))
    except ValueError:
        return None


def _text_of(node: lxml.html.HtmlElement | None) -> str:
    return " ".join(node.text_content().split()) if node is not None else ""


def _pdf(body: bytes, name: str) -> Extracted:
    try:
        reader = pypdf.PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractError("the PDF is encrypted with a password; upload an unencrypted copy")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        metadata: Any = reader.metadata or {}
        title = storable(str(metadata.get("/Title") or "").strip())
    except ExtractError:
        raise
    except Exception as e:  # pypdf raises many types for damaged files
        raise ExtractError(f"broken PDF: {type(e).__name__}: {e}") from None
    text = storable("\n\n".join(f"## Page {i}\n\n{p}" for i, p in enumerate(pages, 1) if p))
    if not text:
        raise ExtractError("the PDF has no extractable text (scanned images need OCR first)")
    return Extracted(title or name, text)


def _checked(doc: Extracted) -> Extracted:
    if len(doc.text) < _MIN_TEXT:
        raise ExtractError("no readable text found")
    return doc


def _markdown_title(text: str) -> str:
    match = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return match[1].strip() if match else ""


def _last_segment(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    return path.rsplit("/", 1)[-1] or urlsplit(url).netloc
