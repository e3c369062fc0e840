"""`/widget.js` (the embeddable chat widget) and `/demo?key=pk_…` (a page that embeds it)."""

from __future__ import annotations

import hashlib
import html
import re
from functools import cache
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent.parent / "static"
_KEY = re.compile(r"^pk_[A-Za-z0-9_-]{10,100}$")
# The demo page runs only our own script, talks only to this server, and cannot be framed.
_DEMO_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def static_file(name: str) -> bytes:
    """A file of bitbd/static, read once: they never change while the server runs."""
    return (STATIC / name).read_bytes()


@cache
def _widget() -> tuple[bytes, str]:
    body = static_file("widget.js")
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


async def widget_js(request: web.Request) -> web.StreamResponse:
    """Public and cacheable: any site may load it (CORS *); it works only with a key bound to that site."""
    body, etag = _widget()
    headers = {
        "Cache-Control": "public, max-age=300",
        "ETag": etag,
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/javascript", charset="utf-8", headers=headers)


async def demo(request: web.Request) -> web.Response:
    """GET /demo?key=pk_…: a page that embeds the widget with that public key; 400 with how to create a key if
    it is missing or not a public key."""
    key = request.query.get("key", "")
    headers = {
        "Content-Security-Policy": _DEMO_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    if not _KEY.match(key):
        page = _page(
            "bitbd demo",
            "<p>Add a public key to the address: <code>/demo?key=pk_…</code>. Create one "
            "with <code>bitbd key create --tenant NAME --public --origin "
            + html.escape(_origin(request))
            + "</code> (the demo page needs this server's own origin among the key's origins).</p>",
            "",
        )
        return web.Response(text=page, content_type="text/html", status=400, headers=headers)
    script = f'<script src="/widget.js" data-key="{html.escape(key)}" data-title="bitbd demo" async></script>'
    page = _page(
        "bitbd demo",
        "<p>This page embeds the chat widget with the key you gave. Open the bubble at "
        "the bottom right and ask a question about the tenant's documents.</p>",
        script,
    )
    return web.Response(text=page, content_type="text/html", headers=headers)


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _page(title: str, body: str, script: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        "</head>"
        f"<body><h1>{html.escape(title)}</h1>{body}{script}</body></html>"
    )
