"""Chat under load: time to first delta and to done over the WebSocket at 1, 10, 50 and 200 concurrent clients,
without and with the semantic cache, against a real `bitbd serve` on loopback.

    python -m perf.bench_chat [--data-dir DIR] [--clients 1,10,50,200] [--questions 4] [--synthetic 20000] [--quick]

Uses the Python library reference tenant that perf/bench_retrieval.py crawls (crawling it first if the data dir has
none), and a second tenant of `--synthetic` chunks written as perf/bench_search.py writes them (real passages' text,
vectors drawn around their real embeddings). Each client opens its own WebSocket and asks its questions one after
another, drawn from the hand-written questions and their paraphrases (perf/questions.py). The server runs three
times: the crawled tenant with the cache off, then on (starting empty), then the synthetic tenant with the cache
off. The per-key rate limit and the per-address connection cap are lifted for the run (all clients share one key and
127.0.0.1). Before each row, three warm-up questions outside the measured window load the query model and count
the tenant's common words (one-off costs that made short runs look dearer per answer). Each row says the server's
CPU time per answer (the daemon, its PostgreSQL and Redis: user + system), a
figure that holds whatever else runs on the machine. Appends the table with this command to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np
import redis.asyncio as aioredis

from bitbd.client import exchange
from bitbd.db.pool import migrate_database, open_pool
from bitbd.embedded.services import services
from bitbd.jobs.runtime import make_embedder
from bitbd.plugins import load_plugins
from bitbd.prepared import prepare_chunks, preparers_of
from bitbd.settings import CrawlerSettings, Settings
from perf.bench_embed import passages
from perf.bench_search import builds_done, fill
from perf.bench_vectors import real_embeddings, synthetic
from perf.corpus import PYDOCS, ensure_crawled, free_port, scratch_or, served
from perf.questions import QUESTIONS
from perf.report import append, markdown_table
from perf.server import (
    PeakMemory,
    add_set_option,
    call,
    cpu_by_role,
    profiled,
    pss_mib,
    settings_of,
    start,
    stop,
    wait_ready,
)

TENANT = "pydocs-5k"


async def crawl_if_needed(settings: Settings, url: str, pages: int) -> int:
    """The chat tenant, crawled once (the first `pages` pages of the library reference); its chunk count."""
    await migrate_database(settings.database)
    pool = await open_pool(settings.database)
    try:
        config = {"urls": [f"{url}/library/index.html"], "include": ["/library/"], "max_depth": 1, "max_pages": pages}
        tenant = await ensure_crawled(settings, pool, load_plugins(), TENANT, config)
        return int(await pool.fetchval("SELECT count(*) FROM chunks WHERE tenant_id = $1", tenant.id))
    finally:
        await pool.close()


async def client(session: aiohttp.ClientSession, base: str, key: str, questions: list[str]) -> list[dict[str, Any]]:
    out = []
    async with session.ws_connect(
        base.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}
    ) as ws:
        for i, question in enumerate(questions):
            reply = await exchange(ws, str(i), question)
            cached = reply.ok and bool(reply.end.get("cached"))
            out.append({"first": reply.first, "done": reply.seconds, "ok": reply.ok, "cached": cached})
    return out


async def warm(base: str, token: str, tenant: str) -> str:
    """A key for the tenant, and the server warmed by three questions (the query model loads at the first, the
    tenant's common words are counted), outside the measured window; returns the key."""
    async with aiohttp.ClientSession() as session:
        key = (await call(session, base, token, "POST", f"/v1/admin/tenants/{tenant}/keys", {"kind": "secret"}))["key"]
        await client(session, base, key, ["warm-up question about json", "how do i warm up", "what is a warm-up"])
    return str(key)


async def load(base: str, key: str, clients: int, per_client: int) -> list[dict[str, Any]]:
    phrasings = [q for q, _, paraphrases in QUESTIONS for q in (q, *paraphrases)]
    rng = random.Random(11)
    async with aiohttp.ClientSession() as session:
        runs = await asyncio.gather(
            *(client(session, base, key, rng.sample(phrasings, per_client)) for _ in range(clients))
        )
    return [r for run in runs for r in run]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000


async def clear_cache(data_dir: Path) -> None:
    state = json.loads((data_dir / "services.json").read_text())
    redis = aioredis.Redis.from_url(state["redis_url"])
    keys = [k async for k in redis.scan_iter("bitbd:cache:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", type=Path, help="kept between runs (default /tmp/bitbd-perf-pydocs; --quick: a temporary one)"
    )
    parser.add_argument("--pages", type=int, default=160, help="pages of the chat tenant (160: about 5,000 chunks)")
    parser.add_argument("--clients", default="1,10,50,200", help="concurrency levels, comma-separated")
    parser.add_argument("--questions", type=int, default=4, help="questions per client, one after another")
    parser.add_argument("--site", type=Path, default=PYDOCS)
    parser.add_argument(
        "--synthetic",
        type=int,
        default=20_000,
        help="chunks of a second tenant written as perf/bench_search.py writes them, asked with the cache off "
        "(0: none)",
    )
    add_set_option(parser, "PLUGINS__EXTRACTIVE__COMPARE=0")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 5 pages, 1 and 3 clients, the cache off only, nothing appended",
    )
    args = parser.parse_args()
    if args.quick:
        args.pages, args.clients, args.questions, args.synthetic = 5, "1,3", 2, 500
    levels = [int(n) for n in str(args.clients).split(",")]
    with contextlib.ExitStack() as stack:
        data_dir = scratch_or(args.data_dir, args.quick, stack)
        overrides = {f"BITBD_{k}": v for k, v in settings_of(args.set).items()}
        rows, chunks = run(
            data_dir,
            args.site,
            args.pages,
            levels,
            args.questions,
            args.synthetic,
            overrides,
            with_cache=not args.quick,
        )
    head = [
        "tenant",
        "cache",
        "clients",
        "answered",
        "first delta p50 / p95",
        "done p50 / p95",
        "answers/s",
        "cache hits",
        "server CPU ms / answer (bitbd / postgres / redis)",
        "server memory (PSS) idle / peak",
    ]
    table = markdown_table(head, rows)
    print(table)
    if not args.quick:
        append(
            "Chat under load",
            f"concurrent WebSocket clients x {args.questions} questions each, one after "
            f"another, a crawled tenant of {chunks:,} chunks and a synthetic one of {args.synthetic:,}, extractive "
            "generator, `bitbd serve` on loopback, 2 cores shared by server and clients; the cache is emptied "
            "before each row; server CPU: the daemon, its PostgreSQL and Redis, user + system, over the row"
            + "".join(f"; {s}" for s in args.set),
            table,
        )
    return 0


async def synthetic_tenant(base: str, data_dir: Path, chunks: int) -> str:
    """A tenant of `chunks` chunks written straight into the database as perf/bench_search.py writes them (real
    passages' text, vectors drawn around their real embeddings), once; its name."""
    name = f"synthetic-{chunks}"
    dsn = json.loads((data_dir / "services.json").read_text())["database_dsn"]
    conn = await asyncpg.connect(dsn)
    try:
        have = await conn.fetchval(
            "SELECT count(*) FROM chunks c JOIN tenants t ON t.id = c.tenant_id WHERE t.name = $1", name
        )
    finally:
        await conn.close()
    if have == chunks:
        await prepare_by_text(dsn, name)
        return name
    token = (data_dir / "admin_token").read_text().strip()
    async with aiohttp.ClientSession() as session:
        await call(session, base, token, "POST", "/v1/admin/tenants", {"name": name})
    shapes = 2000 if chunks >= 2000 else 50  # real passages the rows are drawn from (--quick: fewer, to prepare)
    real, _ = real_embeddings(shapes)
    texts = passages(PYDOCS, shapes)[:shapes]
    vectors, _ = synthetic(real, chunks, seed=chunks)
    await fill(dsn, name, vectors, texts, np.random.default_rng(5).integers(0, len(texts), chunks))
    await prepare_by_text(dsn, name)
    return name


async def prepare_by_text(dsn: str, tenant: str) -> None:
    """What ingestion prepares for the answer generator (bitbd/prepared.py), made once per distinct text of the
    tenant's chunks: its rows repeat a few thousand passages, so the server's own backfill would embed each ~10
    times."""
    conn = await asyncpg.connect(dsn)
    try:
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", tenant)
        texts = [
            r["text"]
            for r in await conn.fetch(
                "SELECT DISTINCT text FROM chunks WHERE tenant_id = $1 AND prepared IS NULL", tenant_id
            )
        ]
        if not texts:
            return
        embedder = make_embedder(Settings(), load_plugins())
        preparers = preparers_of(Settings(), load_plugins())
        print(f"preparing the answer vectors of {len(texts):,} passages", file=sys.stderr)
        for begin in range(0, len(texts), 64):
            batch = texts[begin : begin + 64]
            blobs = await prepare_chunks(embedder, preparers, batch)
            await conn.executemany(
                "UPDATE chunks SET prepared = $3 WHERE tenant_id = $1 AND text = $2",
                [(tenant_id, t, b) for t, b in zip(batch, blobs, strict=True)],
            )
    finally:
        await conn.close()


def run(
    data_dir: Path,
    site: Path,
    pages: int,
    levels: list[int],
    questions: int,
    synthetic_chunks: int,
    overrides: dict[str, str],
    with_cache: bool = True,
) -> tuple[list[list[str]], int]:
    with served(site) as url:
        base_settings = Settings(data_dir=data_dir, crawler=CrawlerSettings(allow_private=True))
        with services(base_settings, "bench") as running:
            chunks = asyncio.run(crawl_if_needed(running, url, pages))
    rows = []
    # The crawled tenant without and with the cache, then the synthetic one without.
    plan = [(TENANT, False)] + [(TENANT, True)] * with_cache + ([("synthetic", False)] if synthetic_chunks else [])
    for tenant, cache in plan:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start(
            "serve",
            data_dir,
            "--port",
            str(port),
            BITBD_CACHE__ENABLED=str(cache).lower(),
            BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0",
            BITBD_CHAT__MAX_CONNECTIONS_PER_CLIENT="0",  # every client is 127.0.0.1
            **overrides,
        )
        try:
            wait_ready(base, proc)
            if tenant == "synthetic":
                tenant = asyncio.run(synthetic_tenant(base, data_dir, synthetic_chunks))
                label = f"{tenant} ({synthetic_chunks:,} chunks)"
            else:
                label = f"{tenant} ({chunks:,} chunks)"
            time.sleep(2)
            idle = pss_mib(proc.pid, data_dir)
            token = (data_dir / "admin_token").read_text().strip()
            dsn = json.loads((data_dir / "services.json").read_text())["database_dsn"]
            for clients in levels:
                warming = time.perf_counter()
                key = asyncio.run(warm(base, token, tenant))
                asyncio.run(builds_done(dsn, warming))  # the warm-up's first question starts the tenant's build
                asyncio.run(clear_cache(data_dir))
                started = time.perf_counter()
                cpu = cpu_by_role(proc.pid, data_dir)
                with (
                    PeakMemory(proc.pid, data_dir) as peak,
                    profiled(proc.pid, f"chat-{tenant}-cache-{str(cache).lower()}-{clients}"),
                ):
                    results = asyncio.run(load(base, key, clients, questions))
                cpu = {role: seconds - cpu[role] for role, seconds in cpu_by_role(proc.pid, data_dir).items()}
                answered = max(1, sum(r["ok"] for r in results))
                rows.append(
                    [
                        label,
                        f"{'on' if cache else 'off'}",
                        str(clients),
                        *summary(results, time.perf_counter() - started),
                        f"{sum(cpu.values()) * 1000 / answered:.1f} "
                        f"({' / '.join(f'{cpu[r] * 1000 / answered:.1f}' for r in ('daemon', 'postgres', 'redis'))})",
                        f"{idle:.0f} / {peak.mib:.0f} MiB",
                    ]
                )
        finally:
            stop(proc)
    return rows, chunks


def summary(results: list[dict[str, Any]], seconds: float) -> list[str]:
    ok = [r for r in results if r["ok"]]
    firsts = [r["first"] for r in ok if r["first"] is not None] or [0.0]
    dones = [r["done"] for r in ok] or [0.0]
    hits = sum(r["cached"] for r in ok)
    return [
        f"{len(ok)}/{len(results)}",
        f"{pct(firsts, 0.5):.0f} / {pct(firsts, 0.95):.0f} ms",
        f"{pct(dones, 0.5):.0f} / {pct(dones, 0.95):.0f} ms",
        f"{len(ok) / seconds:.1f}",
        f"{hits / max(len(ok), 1):.0%}",
    ]


if __name__ == "__main__":
    sys.exit(main())
