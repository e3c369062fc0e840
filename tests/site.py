"""A small website served on loopback for crawler tests: good pages, broken ones, and hostile ones."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pypdf
from aiohttp import web
from aiohttp.test_utils import TestServer


def make_pdf(lines: list[str]) -> bytes:
    """A real one-page PDF with text, built by hand (no PDF writer with text is installed)."""
    ops = ["BT /F1 12 Tf 72 720 Td"] + [f"({line}) Tj 0 -16 Td" for line in lines] + ["ET"]
    stream = "\n".join(ops).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def encrypt_pdf(pdf: bytes, password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.encrypt(password)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def page(title: str, body: str, links: list[str] = ()) -> str:  # type: ignore[assignment]
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<html><head><title>{title}</title></head><body><nav><ul>{anchors}</ul></nav>"
        f"<main><h1>{title}</h1>{body}</main><footer>Example Corp footer</footer></body></html>"
    )


VOLCANO = (
    "<h2>Eruptions</h2><p>Volcanoes erupt when magma rises through the crust and escapes as lava, ash and gas. "
    "Basaltic lava flows are runny and travel far, while rhyolitic eruptions are explosive.</p>"
    "<h2>Monitoring</h2><p>Seismometers and gas sensors warn of eruptions days in advance, "
    "and satellites measure how the ground swells above a magma chamber.</p>"
)
BREAD = (
    "<h2>Starter</h2><p>Sourdough bread rises because a starter of wild yeast and lactic bacteria "
    "ferments the dough. Feed the starter flour and water every day.</p>"
    "<h2>Baking</h2><p>Bake the loaf in a hot covered pot at 250 degrees for twenty minutes, then uncover "
    "it so the crust can brown.</p>"
)


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` served on a free loopback port while the block runs; its base URL, without a trailing slash."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@dataclass
class Site:
    """Pages by path; `hits` counts requests, `fail_first` makes a path answer 500 that many times first."""

    pages: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    fail_first: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    unreachable: str = ""  # a URL on another port of loopback where nothing listens (another site: a start URL)

    def html(self, path: str, text: str) -> None:
        self.pages[path] = ("text/html; charset=utf-8", text.encode())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        if self.fail_first[path] > 0:
            self.fail_first[path] -= 1
            return web.Response(status=500, text="temporarily broken")
        if path in self.redirects:
            raise web.HTTPFound(self.redirects[path])
        if path not in self.pages:
            return web.Response(status=404, text="not found")
        ctype, body = self.pages[path]
        etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, headers={"Content-Type": ctype, "ETag": etag})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        return app


def standard_site(unreachable: str) -> Site:
    """Every case the issue lists, beside three good pages and a PDF."""
    site = Site(unreachable=unreachable)
    site.html(
        "/",
        page(
            "Example Corp",
            "<p>Welcome to Example Corp, the home of many guides and notes.</p>",
            [
                "/volcanoes",
                "/bread",
                "/private/secret",
                "/missing",
                "/flaky",
                "/loop1",
                "/binary",
                "/big",
                "/latin",
                "/guide.pdf",
                "/broken.pdf",
                "/locked.pdf",
                "/empty",
                "/image.png",
                unreachable,
                "https://other.example/x",
            ],
        ),
    )
    site.html("/volcanoes", page("Volcanoes", VOLCANO, ["/"]))
    site.html("/bread", page("Bread", BREAD, ["/", "/volcanoes#top"]))
    site.html("/private/secret", page("Secret", "<p>Robots may not read this page at all, ever.</p>"))
    site.html("/flaky", page("Flaky", "<p>This page fails twice and then works, as servers under load do.</p>"))
    site.html(
        "/from-sitemap",
        page(
            "Orchards",
            "<p>Apple orchards are pruned in late winter before the buds "
            "open, so the trees put their energy into fruit.</p>",
        ),
    )
    site.fail_first["/flaky"] = 2
    site.redirects.update({"/loop1": "/loop2", "/loop2": "/loop1"})
    site.pages["/binary"] = ("text/html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    site.pages["/big"] = ("text/html", b"<html><body><p>" + b"big page " * 40_000 + b"</p></body></html>")
    site.pages["/latin"] = (
        "text/html; charset=utf-8",
        "<html><head><title>Caf\u00e9</title></head><body><main>"
        "<h1>Caf\u00e9 cr\u00e8me</h1><p>Le caf\u00e9 cr\u00e8me est servi tr\u00e8s chaud "
        "avec du lait mousseux, comme \u00e0 Paris.</p></main></body></html>".encode("latin-1"),
    )
    pdf = make_pdf(["Glaciers carve U-shaped valleys as they move.", "Moraines mark where the ice stopped."])
    site.pages["/guide.pdf"] = ("application/pdf", pdf)
    site.pages["/broken.pdf"] = ("application/pdf", b"%PDF-1.4\nthis is not really a PDF at all\n%%EOF")
    site.pages["/locked.pdf"] = ("application/pdf", encrypt_pdf(pdf, "s3cret"))
    site.pages["/empty"] = ("text/html", b"")
    site.pages["/image.png"] = ("image/png", b"\x89PNG\r\n")
    site.pages["/robots.txt"] = ("text/plain", b"User-agent: *\nDisallow: /private/\n")
    site.pages["/sitemap.xml"] = (
        "application/xml",
        b'<?xml version="1.0"?><urlset '
        b'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>/from-sitemap'
        b"</loc></url></urlset>",
    )
    return site


def write_static_site(root: Path, pages: int, parts: int) -> None:
    """`index.html` linking `p0.html` … on disk, each page with `parts` sections of text."""
    root.mkdir(parents=True, exist_ok=True)
    paths = [f"p{i}.html" for i in range(pages)]
    (root / "index.html").write_text(page("Index", "<p>Every page of the archive is linked from here.</p>", paths))
    for i, name in enumerate(paths):
        body = "".join(
            f"<h2>Part {j}</h2><p>Page {i} part {j} covers record {i * 9 + j}: where it was found, "
            f"who kept it, and what it says about the harbour trade of its year.</p>"
            for j in range(parts)
        )
        (root / name).write_text(page(f"Record {i}", body, ["index.html"]))


def serve_static(root: Path, port: int) -> subprocess.Popen[bytes]:
    """A separate `python -m http.server` process on loopback (so blocking test code cannot stall it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc
