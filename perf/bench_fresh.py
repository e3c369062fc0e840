"""Freshness: how soon a scheduled re-crawl makes a site's changes searchable, and what an unchanged refresh costs.

    python -m perf.bench_fresh [--pages 1000] [--chars 1000] [--refresh 1m] [--rounds 3] [--quick]

Builds the generated site (perf/site.py, cut from Debian's python3.11-doc; pages of at least CHARS characters,
so that the first crawl, which is not what is measured, does not take half an hour), serves it from memory on
loopback with ETags, Last-Modified and a sitemap whose `<lastmod>` follows every edit, and counts each request and
what it got.
A real `bitbd serve` (zero-setup, in-process workers, `crawler.min_refresh` lowered to the refresh) crawls it once
through the HTTP API with `"refresh": REFRESH`. Then, with nobody asking for a crawl:

- the first scheduled crawl of the unchanged site: requests by answer (200, 304, ...) and chunks embedded;
- ROUNDS times, right after a scheduled crawl has ended (so the next is a whole interval away: the worst case), one
  page is edited, one added and one (the page added the round before) deleted, and `/v1/search` is polled every
  0.25 s until it finds the edit and the new page and no longer finds the deleted one; each time is set against the
  target, one refresh plus the crawl's own time;
- a crawl of the unchanged site when its sitemap gives no `<lastmod>`: every page costs a conditional request.

Appends the tables to perf/RESULTS.md (not with --quick: 30 pages, a 3 s refresh, one round).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bitbd.durations import format_duration, parse_duration
from perf import report, site
from perf.corpus import free_port
from perf.server import call, start, stop, tenant_key, wait_job, wait_ready

POLL = 0.25


class Site:
    """The generated pages in memory, served with ETag, Last-Modified and a sitemap with (or without) lastmod."""

    def __init__(self, directory: Path) -> None:
        self.pages: dict[str, tuple[bytes, datetime]] = {}
        stamp = datetime(2026, 1, 1, tzinfo=UTC)
        for path in sorted(directory.glob("*.html")):
            self.pages["/" + path.name] = (path.read_bytes(), stamp)
        self.lastmod = True
        self.answers: Counter[str] = Counter()  # "200", "304", "404", "sitemap", "robots"
        self.base = ""

    def put(self, path: str, html: str) -> None:
        self.pages[path] = (html.encode(), datetime.now(UTC))

    def sitemap(self) -> bytes:
        entries = "".join(
            f"<url><loc>{self.base}{path}</loc>"
            + (f"<lastmod>{stamp.isoformat(timespec='seconds')}</lastmod>" if self.lastmod else "")
            + "</url>"
            for path, (_, stamp) in self.pages.items()
        )
        return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'.encode()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/robots.txt":
            self.answers["robots"] += 1
            return web.Response(text=f"User-agent: *\nAllow: /\nSitemap: {self.base}/sitemap.xml\n")
        if request.path == "/sitemap.xml":
            self.answers["sitemap"] += 1
            return web.Response(body=self.sitemap(), content_type="application/xml")
        if request.path not in self.pages:
            self.answers["404"] += 1
            return web.Response(status=404, text="not found")
        body, stamp = self.pages[request.path]
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.answers["304"] += 1
            return web.Response(status=304, headers={"ETag": etag})
        self.answers["200"] += 1
        headers = {"ETag": etag, "Last-Modified": format_datetime(stamp, usegmt=True)}
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)


def extra_page(title: str, marker: str) -> str:
    return (
        f"<!doctype html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
        f"<p>This page is about {marker}: a word no other page has, so a search finds it or does not.</p>"
        "<p>It was written while the crawler was not looking, as a site's editors do.</p></main></body></html>"
    )


async def search_urls(session: aiohttp.ClientSession, base: str, key: str, word: str) -> set[str]:
    reply = await call(session, base, key, "POST", "/v1/search", {"query": word, "k": 10, "mode": "keyword"})
    return {hit["url"] for hit in reply["hits"] if word in hit["text"]}


async def scheduled_jobs(session: aiohttp.ClientSession, base: str, key: str) -> list[dict[str, Any]]:
    jobs = (await call(session, base, key, "GET", "/v1/jobs?limit=500"))["jobs"]
    return sorted((j for j in jobs if j["scheduled"]), key=lambda j: j["created_at"])


async def next_scheduled(session: aiohttp.ClientSession, base: str, key: str, after: int) -> dict[str, Any]:
    """The first scheduled job after the `after` already seen, once it has ended."""
    while True:
        jobs = await scheduled_jobs(session, base, key)
        if len(jobs) > after and jobs[after]["status"] not in ("queued", "running"):
            return jobs[after]
        await asyncio.sleep(POLL)


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    refresh = parse_duration(args.refresh)
    built = site.build(
        Path(tempfile.gettempdir()) / f"bitbd-perf-site-{args.pages}-{args.chars}", args.pages, args.chars
    )
    pages = Site(built)
    pages.put("/added-0.html", extra_page("Added 0", word(0)))
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", pages.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    pages.base = f"http://127.0.0.1:{port}"
    server_port = free_port()
    base = f"http://127.0.0.1:{server_port}"
    proc = start(
        "serve",
        data_dir,
        "--port",
        str(server_port),
        BITBD_CRAWLER__ALLOW_PRIVATE="true",
        BITBD_CRAWLER__MIN_REFRESH=f"{refresh}s",
        BITBD_CRAWLER__MAX_PAGES=str(args.pages * 2),
        BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0",  # the polling below searches a dozen times a second
    )
    out: dict[str, Any] = {"refresh": refresh, "rounds": []}
    try:
        await asyncio.to_thread(wait_ready, base, proc)
        token = (data_dir / "admin_token").read_text().strip()
        async with aiohttp.ClientSession() as session:
            key = await tenant_key(session, base, token, "fresh")
            started = time.perf_counter()
            reply = await call(
                session,
                base,
                key,
                "POST",
                "/v1/sources",
                {"type": "web", "urls": [pages.base + "/index.html"], "refresh": args.refresh},
            )
            first = await wait_job(session, base, key, reply["job_id"], every=POLL)
            out["first"] = {**first["progress"], "seconds": time.perf_counter() - started}
            print(f"first crawl: {first['progress']['fetched']} pages in {out['first']['seconds']:.0f} s", flush=True)
            for error in first["errors"][:5]:
                print(f"  {error['item']}: {error['error']}", flush=True)

            pages.answers.clear()
            quiet = await next_scheduled(session, base, key, 0)
            out["unchanged_lastmod"] = {
                **quiet["progress"],
                "seconds": quiet["seconds"],
                "answers": dict(pages.answers),
            }
            seen = 1
            for r in range(1, args.rounds + 1):
                edited = f"/page-{r * 7}.html"
                body, _ = pages.pages[edited]
                edit_word = f"quillwortedit{r}"
                pages.put(edited, body.decode().replace("</main>", f"<p>Now also about {edit_word}.</p></main>"))
                pages.put(f"/added-{r}.html", extra_page(f"Added {r}", word(r)))
                del pages.pages[f"/added-{r - 1}.html"]
                changed = time.perf_counter()
                waiting = {"edit": edit_word, "add": word(r), "delete": word(r - 1)}
                times: dict[str, float] = {}
                while waiting and time.perf_counter() - changed < refresh * 3 + 600:
                    for what, marker in list(waiting.items()):
                        found = bool(await search_urls(session, base, key, marker))
                        if found != (what == "delete"):  # the edit and the new page found; the deleted one not
                            times[what] = time.perf_counter() - changed
                            del waiting[what]
                    await asyncio.sleep(POLL)
                job = await next_scheduled(session, base, key, seen)
                seen += 1
                out["rounds"].append({"times": times, "job_seconds": job["seconds"], "missed": sorted(waiting)})
                print(f"round {r}: {times}, crawl {job['seconds']:.1f} s", flush=True)
                # The next round starts right after a scheduled crawl ended: a whole refresh away from the next.
                jobs = await scheduled_jobs(session, base, key)
                if jobs[-1]["status"] in ("queued", "running"):
                    await next_scheduled(session, base, key, len(jobs) - 1)
                seen = len(jobs)

            pages.lastmod = False
            pages.answers.clear()
            bare = await next_scheduled(session, base, key, seen)
            out["unchanged_etag"] = {**bare["progress"], "seconds": bare["seconds"], "answers": dict(pages.answers)}
    finally:
        stop(proc)
        await runner.cleanup()
    return out


def word(r: int) -> str:
    """The word only the page added in round r has (round 0: before the first crawl)."""
    return f"quillwortadd{r}" if r else "quillwortzero"


def tables(out: dict[str, Any], pages: int) -> tuple[str, str]:
    refresh = out["refresh"]
    rows = []
    for what in ("edit", "add", "delete"):
        got = [r["times"][what] for r in out["rounds"] if what in r["times"]]
        targets = [refresh + r["job_seconds"] + POLL for r in out["rounds"]]
        missed = sum(what in r["missed"] for r in out["rounds"])
        worst = max(got) if got else float("nan")
        rows.append(
            [
                what,
                f"{statistics.median(got):.1f} s" if got else "-",
                f"{worst:.1f} s",
                f"{min(targets):.1f} s",
                f"{sum(t <= target for t, target in zip(got, targets, strict=False))}/{len(out['rounds'])}"
                + (f" ({missed} never seen)" if missed else ""),
            ]
        )
    change = report.markdown_table(
        ["change", "median until searchable", "worst", "target (refresh + crawl)", "within target"], rows
    )
    cost_rows = []
    for label, run in (
        ("sitemap with lastmod", out["unchanged_lastmod"]),
        ("sitemap without lastmod", out["unchanged_etag"]),
    ):
        a = run["answers"]
        page_requests = sum(a.get(k, 0) for k in ("200", "304", "404"))
        cost_rows.append(
            [
                label,
                str(page_requests),
                f"{a.get('304', 0)} / {a.get('200', 0)}",
                str(a.get("robots", 0) + a.get("sitemap", 0)),
                str(run["chunks_embedded"]),
                str(run["unchanged"]),
                f"{run['seconds']:.1f} s",
            ]
        )
    cost = report.markdown_table(
        [
            "unchanged refresh",
            "page requests",
            "304 / 200",
            "robots + sitemap",
            "chunks embedded",
            "pages unchanged",
            "crawl",
        ],
        cost_rows,
    )
    return change, cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--refresh", default="1m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--chars", type=int, default=1000, help="text per page (the first crawl's embedding is most of the run)"
    )
    parser.add_argument("--quick", action="store_true", help="30 pages, a 3 s refresh, one round; nothing appended")
    args = parser.parse_args()
    if args.quick:
        args.pages, args.refresh, args.rounds = 30, "3s", 1
    with tempfile.TemporaryDirectory(prefix="bitbd-fresh-") as tmp:
        out = asyncio.run(run(args, Path(tmp)))
    change, cost = tables(out, args.pages)
    first = out["first"]
    detail = (
        f"{args.pages}-page site of pages of at least {args.chars} characters (whole sections of the docs), "
        f"refresh {format_duration(out['refresh'])}, "
        f"{args.rounds} rounds; first crawl "
        f"{first['fetched']} pages, {first['chunks_embedded']} chunks, {first['seconds']:.0f} s; 2 in-process workers"
    )
    print(f"\n{detail}\n\n{change}\n\n{cost}")
    if not args.quick:
        report.append("Freshness: scheduled re-crawls", detail, f"{change}\n\n{cost}")


if __name__ == "__main__":
    main()
