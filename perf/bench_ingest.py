"""Ingestion end to end on a real documentation site, against the embedder alone on the same chunks.

    python -m perf.bench_ingest [--pages 200] [--quick] [--site /usr/share/doc/python3.11/html]

Serves the site (Debian's python3.11-doc by default: `apt-get install python3.11-doc`) with `python -m
http.server` on loopback, crawls it from index.html with the daemon's own job code (in-process workers, embedded
PostgreSQL and Redis in a temporary data dir), then embeds the very same chunk texts with the embedder alone, and
crawls again (nothing changed). Prints a table and appends it, with this command, to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bitbd import tenancy
from bitbd.db.pool import migrate_database, open_pool
from bitbd.embedded.services import services
from bitbd.ingest.chunking import embedding_text
from bitbd.interfaces import Chunk
from bitbd.jobs import records
from bitbd.jobs.worker import running_broker
from bitbd.plugins import load_plugins
from bitbd.settings import CrawlerSettings, JobSettings, Settings
from perf import report
from perf.corpus import PYDOCS, run_job, served

RESULTS = Path(__file__).with_name("RESULTS.md")


async def crawl(settings: Settings, url: str, pages: int) -> dict[str, float]:
    await migrate_database(settings.database)
    pool = await open_pool(settings.database)
    plugins = load_plugins()
    try:
        tenant = await tenancy.create_tenant(pool, f"bench-{uuid.uuid4().hex[:8]}")
        out: dict[str, float] = {}
        async with running_broker(settings, pool, plugins, settings.jobs.workers) as broker:
            config = plugins.sources()["web"].validate({"urls": [url], "max_pages": pages}, settings)
            for run in ("first", "again"):
                if run == "first":
                    job_id, source_id = await records.create_job(pool, tenant.id, "web", config, "normal")
                else:
                    job_id = await pool.fetchval(records.INSERT_JOB, tenant.id, source_id, "ingest", "normal", "{}")
                started = time.perf_counter()
                view = await run_job(pool, broker, tenant.id, job_id)
                out[f"{run}_seconds"] = time.perf_counter() - started
                out[f"{run}_pages"] = view["progress"]["fetched"]
                out[f"{run}_failed"] = view["progress"]["failed"]
                out[f"{run}_chunks"] = view["progress"]["chunks_embedded"]
            rows = await pool.fetch("SELECT d.title, c.text, c.heading_path FROM chunks c JOIN documents d "
                                    "ON d.id = c.document_id WHERE c.tenant_id = $1", tenant.id)
            texts = [embedding_text(r["title"], Chunk(0, r["text"], "", list(r["heading_path"]))) for r in rows]
            embedder = broker.state.deps.embedder
            started = time.perf_counter()
            for start in range(0, len(texts), 16):
                await embedder.embed(texts[start:start + 16])
            out["embed_only_seconds"] = time.perf_counter() - started
            out["chunks"] = len(texts)
        return out
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--site", type=Path, default=PYDOCS)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 pages, nothing appended")
    args = parser.parse_args()
    pages = 10 if args.quick else args.pages
    with served(args.site) as url, tempfile.TemporaryDirectory() as data:
        base = Settings(data_dir=Path(data), crawler=CrawlerSettings(allow_private=True), jobs=JobSettings(workers=2))
        with services(base, "bench") as running:
            r = asyncio.run(crawl(running, f"{url}/index.html", pages))
    ratio = r["first_seconds"] / r["embed_only_seconds"]
    table = "\n".join([
        "| measure | value |", "| --- | --- |",
        f"| pages crawled (failed) | {r['first_pages']:.0f} ({r['first_failed']:.0f}) |",
        f"| chunks embedded | {r['first_chunks']:.0f} |",
        f"| crawl end to end | {r['first_seconds']:.1f} s |",
        f"| pages/s | {r['first_pages'] / r['first_seconds']:.2f} |",
        f"| chunks/s | {r['first_chunks'] / r['first_seconds']:.1f} |",
        f"| embedder alone, same {r['chunks']:.0f} chunks | {r['embed_only_seconds']:.1f} s "
        f"({r['chunks'] / r['embed_only_seconds']:.1f} chunks/s) |",
        f"| end to end / embedder alone | {ratio:.2f}x (target <= 1.2x) |",
        f"| re-crawl, unchanged site | {r['again_seconds']:.1f} s, {r['again_chunks']:.0f} chunks embedded, "
        f"{r['again_pages']:.0f} pages |",
    ])
    print(table)
    if not args.quick:
        command = report.command()
        with RESULTS.open("a") as f:
            f.write(f"\n### Ingestion end to end, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n`{command}` "
                    f"(2 cores, in-process workers 2, site {args.site})\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
