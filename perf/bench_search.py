"""`POST /v1/search` at tenant scale, through HTTP, broken down by phase (the server's `Server-Timing` header).

    python -m perf.bench_search [--sizes 10000,20000,100000] [--queries 60] [--storage] [--compare KEY=VALUE]...
                                [--quick]

A real `bitbd serve` (zero-setup) in a temporary data dir. Its tenants hold `--sizes` chunks each, written straight
into its PostgreSQL (ten chunks a document): the realistic synthetic distribution of perf/bench_vectors.py (real
embeddings of Python's documentation, python3.11-doc, plus noise drawn from their own covariance), each row
carrying the text of the real passage it was drawn from, so the keyword half ranks real text. The queries are the
first phrasing of each hand-written question of perf/questions.py, cased differently in each measurement (the
same words to the uncased model and to full-text search), so every search pays for embedding its question as a
new visitor's does: the server remembers the vectors of recent questions. One client, one query at a time, for each mode
(vector, keyword, hybrid): p50/p95 over HTTP, the phases the server reports (auth, embed, vector, keyword, fuse,
serialise), and, for vector and hybrid, recall@10 of the vector half against the exact top 10 (numpy, the same
query vectors). With `--storage`, first with `chunks.embedding` and `chunks.tsv` stored as before migration 0016
(moved out of line into the TOAST table when a row is large), then as 0016 stores them (in the row), the same rows
side by side in one run. Each `--compare` setting is measured after the defaults, on a server started again with
it, over the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from bitbd.plugin_api import PluginContext
from bitbd_plugins.embedders.fastembed import FastEmbedder
from bitbd_plugins.stores.tenant_indexes import OWN_NAMES
from perf import report
from perf.bench_embed import passages
from perf.bench_vectors import real_embeddings, synthetic
from perf.corpus import PYDOCS, free_port
from perf.questions import QUESTIONS
from perf.server import call, settings_of, start, stop, tenant_key, wait_ready

MODES = ("vector", "keyword", "hybrid")
PHASES = ("auth", "embed", "vector", "keyword", "fuse", "serialise")
BEFORE, AFTER = "before 0016 (embedding EXTERNAL, tsv EXTENDED)", "0016 (embedding PLAIN, tsv MAIN)"
STORAGE = {BEFORE: ("EXTERNAL", "EXTENDED"), AFTER: ("PLAIN", "MAIN")}


async def fill(dsn: str, tenant: str, vectors: np.ndarray, texts: list[str], sources: np.ndarray) -> list[int]:
    """Write the tenant's documents and chunks (chunk i: vectors[i], the text of passage sources[i]); returns the
    chunk ids in row order."""
    conn = await asyncpg.connect(dsn)
    await register_vector(conn)
    try:
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", tenant)
        model = await conn.fetchval("SELECT embedding_model FROM documents LIMIT 1") or "bench"
        docs = (len(vectors) + 9) // 10
        ids = await conn.fetch(
            """INSERT INTO documents (tenant_id, url, title, content_hash, embedding_model, fetched_at)
            SELECT $1, 'https://docs.example/' || $2 || '/' || n, 'Page ' || n, 'h', $3, now()
            FROM generate_series(0, $4 - 1) n ORDER BY n RETURNING id""",
            tenant_id,
            tenant,
            model,
            docs,
        )
        rows = [
            (tenant_id, ids[i // 10]["id"], i, texts[int(sources[i])], f"{tenant}-{i}", vectors[i])
            for i in range(len(vectors))
        ]
        for begin in range(0, len(rows), 20_000):
            await conn.copy_records_to_table(
                "chunks",
                records=rows[begin : begin + 20_000],
                columns=["tenant_id", "document_id", "position", "text", "content_hash", "embedding"],
            )
        # Vacuumed here, as autovacuum would do soon after so many inserts, so that it does not run on one of the
        # 2 cores during the measurement (and the visibility map is set, as in a table that has settled).
        await conn.execute("VACUUM (ANALYZE) chunks")
        await conn.execute("ANALYZE documents")
        found = await conn.fetch("SELECT id, position FROM chunks WHERE tenant_id = $1", tenant_id)
        order = {r["position"]: r["id"] for r in found}
        return [order[i] for i in range(len(vectors))]
    finally:
        await conn.close()


def cased(question: str, variant: int) -> str:
    """The question with its letters' case changed in a pattern of its own: the same words to the (uncased) model
    and to full-text search, but a text the server has not embedded lately, so every measurement pays for
    embedding its questions, as a new visitor's question does."""
    return "".join(c.upper() if (i + variant) % 23 == 0 else c.lower() for i, c in enumerate(question))


async def measure(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    questions: list[str],
    exact: list[set[int]],
    mode: str,
    variant: int,
) -> dict[str, Any]:
    latencies: list[float] = []
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    recalls: list[float] = []
    for q in questions[:5]:  # warm: the query model, the connections, the caches
        await call(session, base, key, "POST", "/v1/search", {"query": q, "k": 10, "mode": mode})
    for i, q in enumerate(cased(q, variant) for q in questions):
        started = time.perf_counter()
        async with session.post(
            base + "/v1/search",
            json={"query": q, "k": 10, "mode": mode},
            headers={"Authorization": f"Bearer {key}"},
        ) as r:
            body = await r.json()
            timing = r.headers.get("Server-Timing", "")
        latencies.append((time.perf_counter() - started) * 1000)
        for part in timing.split(", "):
            name, _, dur = part.partition(";dur=")
            if name in phases:
                phases[name].append(float(dur))
        if mode == "vector":
            got = {int(h["chunk_id"]) for h in body["hits"]}
            recalls.append(len(got & exact[i]) / 10)
    return {
        "p50": statistics.median(latencies),
        "p95": sorted(latencies)[int(len(latencies) * 0.95) - 1],
        "phases": {p: statistics.median(v) if v else None for p, v in phases.items()},
        "recall": statistics.mean(recalls) if recalls else None,
    }


async def set_storage(dsn: str, embedding: str, tsv: str) -> float:
    """Store chunks.embedding and chunks.tsv as given (PLAIN: in the row; MAIN: in the row, compressed, where it
    fits; EXTERNAL, EXTENDED: out of line when the row is large) and rewrite every row so the stored rows follow;
    returns the seconds the rewrite took."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await conn.execute(f"ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE {embedding}")
        await conn.execute(f"ALTER TABLE chunks ALTER COLUMN tsv SET STORAGE {tsv}")
        await conn.execute("UPDATE chunks SET embedding = embedding::real[]::vector, text = text")
        await conn.execute("VACUUM FULL ANALYZE chunks")
        await conn.execute("ANALYZE documents")
        return time.perf_counter() - started
    finally:
        await conn.close()


async def toast_share(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        main, toast = await conn.fetchrow(
            "SELECT pg_relation_size(oid), pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'chunks'"
        )
        return f"heap {main / 2**20:.0f} MiB, TOAST {toast / 2**20:.0f} MiB"
    finally:
        await conn.close()


async def indexes_built(session: aiohttp.ClientSession, base: str, dsn: str, keys: dict[int, str]) -> None:
    """Ask each tenant once, so the server builds the own indexes of those that get one (in the background, one
    after another), and wait until no build is under way; prints how long the builds took."""
    started = time.perf_counter()
    for key in keys.values():
        await call(session, base, key, "POST", "/v1/search", {"query": "warm up", "k": 10, "mode": "vector"})
    await builds_done(dsn, started)


async def builds_done(dsn: str, started: float) -> None:
    """Wait until no index build has been under way for 3 s (30 minutes at most), then print the tenants' own
    indexes and how long since `started` (a perf_counter()) they took: a search measured while one is built pays
    for the build, and a server stopped meanwhile leaves it to start again."""
    conn = await asyncpg.connect(dsn)
    try:
        idle = 0
        while idle < 3 and time.perf_counter() - started < 1800:
            await asyncio.sleep(1)
            busy = await conn.fetchval("SELECT count(*) FROM pg_stat_progress_create_index")
            idle = 0 if busy else idle + 1
        built = await conn.fetch(
            "SELECT c.relname, pg_relation_size(c.oid) AS size FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
            " WHERE i.indisvalid AND c.relname ~ $1",
            OWN_NAMES,
        )
    finally:
        await conn.close()
    sizes = ", ".join(f"{r['size'] / 2**20:.0f} MiB" for r in built)
    print(f"tenants' own indexes: {len(built)} ({sizes}), ready {time.perf_counter() - started - 3:.0f} s", flush=True)


async def serve(data_dir: Path, settings: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {f"BITBD_{k}": v for k, v in settings.items()}
    proc = start("serve", data_dir, "--port", str(port), BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0", **env)
    await asyncio.to_thread(wait_ready, base, proc)
    return proc, base


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    real, _ = real_embeddings(args.real)
    texts = passages(PYDOCS, args.real)[: args.real]
    questions = [q for q, _, _ in QUESTIONS][: args.queries]
    asked = np.array(FastEmbedder(PluginContext("fastembed")).embed_queries_sync(questions))
    out: dict[str, Any] = {"sizes": sizes, "runs": {}}
    proc, base = await serve(data_dir, {})
    try:
        token = (data_dir / "admin_token").read_text().strip()
        dsn = json.loads((data_dir / "services.json").read_text())["database_dsn"]
        async with aiohttp.ClientSession() as session:
            keys, exact = {}, {}
            rng = np.random.default_rng(3)
            for size in sizes:
                name = f"t{size}"
                keys[size] = await tenant_key(session, base, token, name)
                vectors, _ = synthetic(real, size, seed=size)
                sources = rng.integers(0, len(texts), size)
                started = time.perf_counter()
                ids = await fill(dsn, name, vectors, texts, sources)
                print(f"tenant {name}: {size} chunks written in {time.perf_counter() - started:.0f} s", flush=True)
                sims = asked @ vectors.T
                exact[size] = [{ids[j] for j in np.argsort(-row)[:10]} for row in sims]
            # As before migration 0016 first, then as it stores them: the same rows, side by side. Then each
            # compared setting on a server started again with it.
            stored = [BEFORE, AFTER] if args.storage else ["defaults"]
            compared = [(c, settings_of(c.split(","))) for c in args.compare]
            runs: list[tuple[str, dict[str, str]]] = [(label, {}) for label in stored] + compared
            for label, settings in runs:
                if label in STORAGE:
                    seconds = await set_storage(dsn, *STORAGE[label])
                    print(f"storage {label}: rows rewritten in {seconds:.0f} s", flush=True)
                if settings:
                    stop(proc)
                    proc, base = await serve(data_dir, settings)
                await indexes_built(session, base, dsn, keys)
                layout = await toast_share(dsn)
                for size in sizes:
                    for mode in MODES:
                        variant = len(out["runs"])
                        got = await measure(session, base, keys[size], questions, exact[size], mode, variant)
                        out["runs"][(label, size, mode)] = {**got, "layout": layout}
                        print(label, size, mode, {k: v for k, v in got.items() if k != "phases"}, flush=True)
    finally:
        stop(proc)
    return out


def table(out: dict[str, Any]) -> str:
    rows = []
    for (label, size, mode), r in out["runs"].items():
        ph = r["phases"]
        rows.append(
            [
                label,
                f"{size:,}",
                mode,
                f"{r['p50']:.1f}",
                f"{r['p95']:.1f}",
                *("-" if ph[p] is None else f"{ph[p]:.1f}" for p in PHASES),
                "-" if r["recall"] is None else f"{r['recall']:.3f}",
            ]
        )
    head = ["configuration", "chunks", "mode", "p50 ms", "p95 ms", *(f"{p} p50" for p in PHASES), "recall@10"]
    return report.markdown_table(head, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,20000,100000")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--real", type=int, default=2000, help="real passages the synthetic rows are drawn from")
    parser.add_argument(
        "--storage",
        action="store_true",
        help="measure the rows stored as before migration 0016, then as it stores them",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also measure a server started with these settings (BITBD_* names without the prefix, comma-separated, "
        "e.g. PLUGINS__PGVECTOR__EXACT_BELOW=0), on the same rows",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one 2,000-chunk tenant, 10 queries, compared with the vector index always used; nothing appended",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries, args.real = "2000", 10, 300
        args.compare = args.compare or ["PLUGINS__PGVECTOR__EXACT_BELOW=0"]
    with tempfile.TemporaryDirectory(prefix="bitbd-search-") as tmp:
        out = asyncio.run(run(args, Path(tmp)))
    text = table(out)
    layouts = sorted({r["layout"] for r in out["runs"].values()})
    detail = f"tenants of {args.sizes} chunks, {args.queries} queries per mode, one client; chunks table: " + "; ".join(
        layouts
    )
    print(f"\n{detail}\n\n{text}")
    if not args.quick:
        report.append("Search through HTTP at tenant scale", detail, text)


if __name__ == "__main__":
    main()
