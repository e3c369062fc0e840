"""Turn fetched bytes into a title, Markdown-ish text with headings, and (for HTML) the links to follow."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import pypdf
import trafilatura
from charset_normalizer import from_bytes
from selectolax.lexbor import LexborHTMLParser

log = logging.getLogger(__name__)
HTML_TYPES = ("text/html", "application/xhtml+xml")
MARKDOWN_TYPES = ("text/markdown", "text/x-markdown")
_MIN_TEXT = 20  # characters; anything shorter is not worth a chunk
_REPLACEMENT_LIMIT = 0.02


class ExtractError(Exception):
    """The content has no usable text; the message says why."""


@dataclass(frozen=True)
class Extracted:
    title: str
    text: str
    links: list[str] = field(default_factory=list)
    canonical: str | None = None


def normalize_url(url: str) -> str:
    """Drop the fragment and default port, lowercase scheme and host: one spelling per page."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port is None or port == default else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def extract(body: bytes, content_type: str, url: str, charset: str | None = None, name: str = "") -> Extracted:
    """Dispatch on content type; raises ExtractError with the reason when there is nothing to index."""
    if not body.strip():
        raise ExtractError("empty file")
    if content_type == "application/pdf":
        return _pdf(body, name or _last_segment(url))
    if b"\x00" in body[:8192]:
        raise ExtractError(f"binary content served as {content_type}")
    text = decode(body, charset)
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


def _html(html: str, url: str) -> Extracted:
    tree = LexborHTMLParser(html)
    base = url
    base_tag = tree.css_first("base[href]")
    if base_tag is not None:
        base = urljoin(url, base_tag.attributes.get("href") or "")
    links = []
    for a in tree.css("a[href]"):
        href = (a.attributes.get("href") or "").strip()
        if href and not href.startswith(("#", "mailto:", "javascript:", "tel:", "data:")):
            links.append(normalize_url(urljoin(base, href)))
    canonical = None
    link = tree.css_first('link[rel="canonical"][href]')
    if link is not None:
        canonical = normalize_url(urljoin(url, link.attributes.get("href") or ""))
    text = trafilatura.extract(html, url=url, output_format="markdown", include_comments=False,
                               include_tables=True, favor_recall=True) or ""
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node is not None else ""
    if not title:
        h1 = tree.css_first("h1")
        title = h1.text(strip=True) if h1 is not None else _last_segment(url)
    return _checked(Extracted(title, text.strip(), list(dict.fromkeys(links)), canonical))


def _pdf(body: bytes, name: str) -> Extracted:
    try:
        reader = pypdf.PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractError("the PDF is encrypted with a password; upload an unencrypted copy")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        metadata: Any = reader.metadata or {}
        title = str(metadata.get("/Title") or "").strip()
    except ExtractError:
        raise
    except Exception as e:  # pypdf raises many types for damaged files
        raise ExtractError(f"broken PDF: {type(e).__name__}: {e}") from None
    text = "\n\n".join(f"## Page {i}\n\n{p}" for i, p in enumerate(pages, 1) if p)
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
