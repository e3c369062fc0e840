"""/widget.js and /demo: headers set deliberately (CORS, CSP, caching), the key escaped, mistakes explained."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]


async def test_widget_js_is_public_cacheable_javascript(client: Client) -> None:
    resp = await client.get("/widget.js")
    assert resp.status == 200 and resp.content_type == "application/javascript"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    body = await resp.read()
    assert b"attachShadow" in body and len(body) < 30_000
    again = await client.get("/widget.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_demo_page_embeds_the_widget_under_a_strict_policy(client: Client) -> None:
    resp = await client.get("/demo", params={"key": "pk_abcdefghijklmnop"})
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    page = await resp.text()
    assert '<script src="/widget.js" data-key="pk_abcdefghijklmnop"' in page
    hostile = await client.get("/demo", params={"key": 'pk_x"><script>alert(1)</script>'})
    assert hostile.status == 400 and "<script>alert" not in await hostile.text()
    missing = await client.get("/demo")
    assert missing.status == 400 and "bitbd key create --tenant NAME --public --origin" in await missing.text()
