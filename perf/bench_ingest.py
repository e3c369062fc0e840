"""Ingestion end to end: a 1,000-page site crawled by `bitbd serve`, against the embedder alone on the same chunks.

    python -m perf.bench_ingest [--pages 1000] [--profile] [--set KEY=VALUE] [--quick]

Builds the site (perf/site.py: pages cut from Debian's python3.11-doc, `apt-get install python3.11-doc`), serves
it with `python -m http.server` on loopback, starts a real `bitbd serve` (zero-setup: embedded PostgreSQL and
Redis, in-process workers) in a temporary data dir, and crawls the site through the HTTP API. Measures pages/s,
chunks/s, the time each phase took (from the server's own `bitbd_ingest_phase_seconds`), CPU use of the server and
its embedded services, and their memory; then the re-crawl of the unchanged site. Then, with the server stopped,
embeds the very same chunk texts with the embedder alone, and last runs one `bitbd worker` (the server with no
in-process workers) on part of the site to measure a worker's memory while it embeds. `--profile` records the
server with py-spy during the crawl and prints where its time went. Appends the tables to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bitbd.db.pool import open_pool
from bitbd.embedded.services import services
from bitbd.ingest.chunking import embedding_text
from bitbd.interfaces import Chunk
from bitbd.plugin_api import PluginContext
from bitbd.plugins import load_plugins
from bitbd.prepared import preparers_of, texts_of
from bitbd.settings import Settings
from bitbd_plugins.embedders.fastembed import FastEmbedder
from perf import report, site
from perf.corpus import free_port, served
from perf.server import (
    PeakMemory,
    add_set_option,
    call,
    cpu_seconds,
    pss_mib,
    settings_of,
    start,
    stop,
    tenant_key,
    wait_job,
    wait_ready,
)

PHASES = ("fetch", "chunk", "embed", "store")
_PHASE = re.compile(r'^bitbd_ingest_phase_seconds_sum\{phase="(\w+)"\} ([0-9.e+-]+)', re.MULTILINE)


async def phase_seconds(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with session.get(base + "/metrics") as r:
        text = await r.text()
    return {m[1]: float(m[2]) for m in _PHASE.finditer(text)}


async def crawl(base: str, token: str, url: str, pid: int, data_dir: Path, pages: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        key = await tenant_key(session, base, token, "site")
        before, cpu = await phase_seconds(session, base), cpu_seconds(pid, data_dir)
        started = time.perf_counter()
        with PeakMemory(pid, data_dir) as peak:
            reply = await call(
                session,
                base,
                key,
                "POST",
                "/v1/sources",
                {"type": "web", "urls": [f"{url}/index.html"], "max_pages": pages},
            )
            view = await wait_job(session, base, key, reply["job_id"])
        out["seconds"] = time.perf_counter() - started
        out["cpu"] = cpu_seconds(pid, data_dir) - cpu
        after = await phase_seconds(session, base)
        out["phases"] = {p: after.get(p, 0.0) - before.get(p, 0.0) for p in PHASES}
        out["peak_mib"], out["view"] = peak.mib, view
        started = time.perf_counter()
        again = await call(session, base, key, "POST", f"/v1/sources/{reply['source_id']}/crawl")
        out["again"] = await wait_job(session, base, key, again["job_id"])
        out["again_seconds"] = time.perf_counter() - started
    return out


async def chunk_texts(settings: Settings) -> list[str]:
    pool = await open_pool(settings.database)
    try:
        rows = await pool.fetch(
            "SELECT d.title, c.text, c.heading_path FROM chunks c JOIN documents d "
            "ON d.id = c.document_id ORDER BY d.id, c.position"
        )
    finally:
        await pool.close()
    return [embedding_text(r["title"], Chunk(0, r["text"], "", list(r["heading_path"]))) for r in rows]


async def prepared_texts(settings: Settings) -> list[list[str]]:
    """What ingestion embedded of each chunk for the answer generator (bitbd/prepared.py), in `chunk_texts` order:
    none when the server ran with `answer.prepare` off."""
    pool = await open_pool(settings.database)
    try:
        rows = await pool.fetch(
            "SELECT c.text, c.prepared IS NOT NULL AS made FROM chunks c JOIN documents d "
            "ON d.id = c.document_id ORDER BY d.id, c.position"
        )
    finally:
        await pool.close()
    preparers = preparers_of(Settings(), load_plugins())
    return [texts_of(preparers, r["text"]) if r["made"] else [] for r in rows]


def embed_alone(texts: list[str], batches: list[list[str]] | None = None) -> float:
    """The default embedder, in this process, on the same texts in page-sized batches as the workers embed
    (`batches`: already grouped, as the prepared texts are, 32 chunks' worth per call)."""
    embedder = FastEmbedder(PluginContext("fastembed"))
    embedder.embed_sync(texts[:16])  # loaded and warm, as the server's is after its first page
    groups = batches if batches is not None else [texts[i : i + 32] for i in range(0, len(texts), 32)]
    started = time.perf_counter()
    for group in groups:
        if group:
            embedder.embed_sync(group)
    return time.perf_counter() - started


async def worker_crawl(base: str, token: str, url: str, pages: int, worker_pid: int) -> tuple[float, int]:
    async with aiohttp.ClientSession() as session:
        key = await tenant_key(session, base, token, "worker")
        with PeakMemory(worker_pid) as peak:
            reply = await call(
                session,
                base,
                key,
                "POST",
                "/v1/sources",
                {"type": "web", "urls": [f"{url}/index.html"], "max_pages": pages},
            )
            view = await wait_job(session, base, key, reply["job_id"])
    return peak.mib, int(view["progress"]["chunks_embedded"])


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "50",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_frames(raw: Path, n: int = 12) -> str:
    """Self time per function from py-spy's collapsed stacks: where the server's threads spent their samples."""
    if not raw.exists():
        return "(py-spy wrote no samples: is py-spy installed, and may it attach? pip install py-spy)"
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        own[re.sub(r" \(.*?/(site-packages|main)/", " (", frames[-1])] += int(count)
    rows = [[f"`{frame}`", f"{samples / total:.1%}"] for frame, samples in own.most_common(n)]
    return report.markdown_table(["function (self time, all threads)", "share of samples"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--worker-pages", type=int, default=150, help="pages the `bitbd worker` run crawls")
    parser.add_argument("--profile", action="store_true", help="py-spy the server during the crawl")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 pages, nothing appended")
    add_set_option(parser, "ANSWER__PREPARE=false")
    args = parser.parse_args()
    overrides = settings_of(args.set)
    prefixed = {f"BITBD_{k}": v for k, v in overrides.items()}
    if args.quick:
        args.pages, args.worker_pages = 10, 5
    directory = site.build(Path(tempfile.gettempdir()) / f"bitbd-perf-site-{args.pages}", args.pages)
    with served(directory) as url, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start("serve", data_dir, "--port", str(port), BITBD_CRAWLER__ALLOW_PRIVATE="true", **prefixed)
        spy = None
        try:
            wait_ready(base, proc)
            time.sleep(1)
            idle = pss_mib(proc.pid, data_dir)
            token = (data_dir / "admin_token").read_text().strip()
            if args.profile:
                spy = profile(proc.pid, 3600, data_dir / "profile.txt")
            r = asyncio.run(crawl(base, token, url, proc.pid, data_dir, args.pages))
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT (not on SIGTERM)
                spy.wait()
            stop(proc)
        hotspots = top_frames(data_dir / "profile.txt") if spy is not None else ""
        with services(Settings(data_dir=data_dir), "bench") as running:
            texts = asyncio.run(chunk_texts(running))
            prepared = asyncio.run(prepared_texts(running))
        alone = embed_alone(texts)
        per_call = [[t for chunk in prepared[i : i + 32] for t in chunk] for i in range(0, len(prepared), 32)]
        alone_prepared = embed_alone(texts, per_call) if any(per_call) else 0.0
        proc = start(
            "serve",
            data_dir,
            "--port",
            str(port),
            BITBD_CRAWLER__ALLOW_PRIVATE="true",
            BITBD_JOBS__WORKERS="0",
            **prefixed,
        )
        try:
            wait_ready(base, proc)
            worker = start(
                "worker", data_dir, "--metrics-port", str(free_port()), BITBD_CRAWLER__ALLOW_PRIVATE="true", **prefixed
            )
            try:
                worker_mib, worker_chunks = asyncio.run(worker_crawl(base, token, url, args.worker_pages, worker.pid))
            finally:
                stop(worker)
        finally:
            stop(proc)
    alones = (alone, alone_prepared, sum(map(len, prepared)))
    table = render(r, len(texts), alones, idle, worker_mib, worker_chunks, args.worker_pages)
    print(table + ("\n\n" + hotspots if hotspots else ""))
    if not args.quick:
        report.append(
            "Ingestion end to end",
            f"2 cores, {args.pages}-page site built by perf/site.py from "
            "python3.11-doc, `bitbd serve` with defaults (in-process workers 2)"
            + "".join(f"; {k}={v}" for k, v in overrides.items()),
            table + ("\n\n" + hotspots if hotspots else ""),
        )
    return 0


def render(
    r: dict[str, Any],
    chunks: int,
    alones: tuple[float, float, int],
    idle: float,
    worker_mib: float,
    worker_chunks: int,
    worker_pages: int,
) -> str:
    """`alones`: the embedder alone on the chunks, on what ingestion prepared of them, and how many texts that is."""
    alone, alone_prepared, prepared = alones
    progress, again = r["view"]["progress"], r["again"]["progress"]
    seconds = r["seconds"]
    phases = r["phases"]
    spent = sum(phases.values()) or 1.0
    rows = [
        ["pages crawled (failed)", f"{progress['fetched']} ({progress['failed']})"],
        ["chunks embedded", f"{progress['chunks_embedded']}"],
        ["crawl end to end", f"{seconds:.1f} s"],
        ["pages/s", f"{progress['fetched'] / seconds:.2f}"],
        ["chunks/s", f"{progress['chunks_embedded'] / seconds:.1f}"],
        ["embedder alone, same chunks", f"{alone:.1f} s ({chunks / alone:.1f} chunks/s)"],
        ["end to end / embedder alone", f"{seconds / alone:.2f}x (target <= 1.2x)"],
        [
            "embedder alone, the sentences prepared for answers (answer.prepare)",
            f"{alone_prepared:.1f} s ({prepared:,} sentences)" if prepared else "none prepared",
        ],
        [
            "end to end / embedder alone on chunks and sentences",
            f"{seconds / (alone + alone_prepared):.2f}x (target <= 1.2x)" if prepared else "-",
        ],
        [
            "phases, page-seconds summed over pages in flight",
            ", ".join(f"{p} {phases[p]:.0f} s ({phases[p] / spent:.0%})" for p in PHASES),
        ],
        ["CPU (server + PostgreSQL + Redis)", f"{r['cpu']:.0f} s = {r['cpu'] / seconds:.2f} of 2 cores"],
        [
            "server memory (PSS, with PostgreSQL and Redis) idle / peak while crawling",
            f"{idle:.0f} / {r['peak_mib']:.0f} MiB",
        ],
        [
            "re-crawl, unchanged site (target <= 10 s, 0 embedded)",
            f"{r['again_seconds']:.1f} s, {again['chunks_embedded']} chunks embedded, {again['fetched']} pages",
        ],
        [
            f"one `bitbd worker` embedding ({worker_pages} pages, {worker_chunks} chunks): peak PSS",
            f"{worker_mib:.0f} MiB",
        ],
    ]
    return report.markdown_table(["measure", "value"], rows)


if __name__ == "__main__":
    sys.exit(main())
