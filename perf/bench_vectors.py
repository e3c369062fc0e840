"""Vector search in pgvector: exact scan, IVFFlat, HNSW on vector / halfvec / binary_quantize bits, one run.

    python -m perf.bench_vectors [--rows 100000] [--only 'HNSW halfvec m16,IVFFlat bits'] [--quick]
    # and --rows 1000000

The vectors are a realistic synthetic distribution built from real embeddings (stated in every table): bitbd's
default embedder embeds `--real` real passages of Python's documentation (python3.11-doc, chunked as ingestion
does); each of the `--rows` vectors is one of them plus Gaussian noise drawn from the real vectors' own covariance
(so it keeps their anisotropic shape), renormalised, with the noise scaled so that a synthetic vector is as close
to its source as real neighbouring chunks are to each other (median nearest-neighbour cosine of the real set).
I.i.d. random vectors would make every approximate index look terrible (in 384
dimensions they are all nearly equidistant, so HNSW's graph has no neighbourhoods to follow). The queries are real:
the embedded questions of perf/questions.py.

For each configuration: build time, index size, recall@10 against the exact top 10 (numpy), p50/p95 latency and
queries/s with 1 and 8 concurrent clients (asyncpg over the unix socket), in the embedded PostgreSQL 18 +
pgvector 0.8. Then the typical tenant: 5,000 chunks among the rows of 20 tenants, exact scan by tenant against
HNSW with iterative scan. Prints tables and appends them, with this command, to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from bitbd.embedded.services import services
from bitbd.plugin_api import PluginContext
from bitbd.settings import Settings
from perf import report
from perf.corpus import PYDOCS

CACHE = Path("/tmp/bitbd-perf-vectors")
DIM = 384


@dataclass
class Config:
    name: str
    index: str | None  # CREATE INDEX ... USING <this>, or None for an exact scan
    query: str  # $1 the query vector, $2 k
    settings: str = ""  # SET statements before the query


def configs(rows: int, efc: int = 64) -> list[Config]:
    """Every configuration measured; the HNSW graphs built with ef_construction `efc` (pgvector's default 64; bitbd
    builds with 200, `[plugins.pgvector] ef_construction`)."""
    lists = max(rows // 1000, 10)
    exact = "SELECT id FROM items ORDER BY embedding <=> $1 LIMIT $2"
    half = "SELECT id FROM items ORDER BY embedding::halfvec(384) <=> $1::halfvec(384) LIMIT $2"

    def rerank(candidates: int) -> str:
        return (
            f"SELECT id FROM (SELECT id, embedding FROM items ORDER BY binary_quantize(embedding)::bit(384) "
            f"<~> binary_quantize($1::vector) LIMIT {candidates}) c ORDER BY embedding <=> $1 LIMIT $2"
        )

    hnsw = f"hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = {efc})"
    hnsw_half = f"hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) WITH (m = 16, ef_construction = {efc})"
    hnsw_bit = f"hnsw ((binary_quantize(embedding)::bit(384)) bit_hamming_ops) WITH (m = 16, ef_construction = {efc})"
    hnsw_bit8 = f"hnsw ((binary_quantize(embedding)::bit(384)) bit_hamming_ops) WITH (m = 8, ef_construction = {efc})"
    ivf_bit = f"ivfflat ((binary_quantize(embedding)::bit(384)) bit_hamming_ops) WITH (lists = {lists})"
    return [
        Config("exact scan (no index)", None, exact),
        *(
            Config(
                f"IVFFlat lists {lists}, probes {p}",
                f"ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})",
                exact,
                f"SET ivfflat.probes = {p}",
            )
            for p in (10, 30)
        ),
        *(
            Config(f"HNSW vector m16, ef_search {ef}", hnsw, exact, f"SET hnsw.ef_search = {ef}")
            for ef in (40, 100, 200, 400)
        ),
        *(
            Config(f"HNSW halfvec m16, ef_search {ef}", hnsw_half, half, f"SET hnsw.ef_search = {ef}")
            for ef in (40, 100, 200, 400)
        ),
        *(
            Config(f"HNSW bits m16 + rerank {c}", hnsw_bit, rerank(c), f"SET hnsw.ef_search = {c}")
            for c in (100, 400, 1000)
        ),
        Config("HNSW bits m8 + rerank 1000", hnsw_bit8, rerank(1000), "SET hnsw.ef_search = 1000"),
        *(
            Config(f"IVFFlat bits + rerank {c}, probes {p}", ivf_bit, rerank(c), f"SET ivfflat.probes = {p}")
            for c, p in ((100, 10), (400, 30), (1000, 30), (2000, 60))
        ),
    ]


def real_embeddings(count: int) -> tuple[np.ndarray, np.ndarray]:
    """(passages, questions) embedded by bitbd's default embedder; cached in /tmp between runs."""
    from bitbd_plugins.embedders.fastembed import FastEmbedder
    from perf.bench_embed import passages
    from perf.questions import IDENTIFIERS, QUESTIONS

    CACHE.mkdir(exist_ok=True)
    file = CACHE / f"real-{count}.npz"
    if file.exists():
        data = np.load(file)
        return data["passages"], data["questions"]
    embedder = FastEmbedder(PluginContext("fastembed"))
    print(f"embedding {count} real passages (cached in {file}) ...", file=sys.stderr)
    texts = passages(PYDOCS, count)
    vectors = np.array(embedder.embed_sync(texts))
    asked = [q for q, _, phrasings in QUESTIONS for q in (q, *phrasings)] + [q for q, _ in IDENTIFIERS]
    questions = np.array(embedder.embed_queries_sync(asked))
    np.savez(file, passages=vectors, questions=questions)
    return vectors, questions


def nearest_cosine(vectors: np.ndarray) -> float:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    return float(np.median(sims.max(axis=1)))


def synthetic(real: np.ndarray, rows: int, seed: int = 1) -> tuple[np.ndarray, float]:
    """`rows` vectors: real ones plus covariance-shaped noise, scaled to the real nearest-neighbour cosine."""
    rng = np.random.default_rng(seed)
    target = nearest_cosine(real)
    values, vectors = np.linalg.eigh(np.cov(real, rowvar=False))
    shape = vectors * np.sqrt(np.clip(values, 0, None))  # noise = shape @ z has the real covariance
    probe = real[rng.integers(0, len(real), 500)]
    noise = rng.standard_normal((500, DIM)) @ shape.T
    low, high = 0.0, 10.0
    for _ in range(40):  # bisect the scale at which cos(noisy, source) is the real nearest-neighbour cosine
        scale = (low + high) / 2
        noisy = probe + scale * noise
        cos = np.median(np.sum(noisy * probe, axis=1) / np.linalg.norm(noisy, axis=1))
        low, high = (scale, high) if cos > target else (low, scale)
    out = np.empty((rows, DIM), dtype=np.float32)
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        block = real[rng.integers(0, len(real), n)] + scale * (rng.standard_normal((n, DIM)) @ shape.T)
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, target


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    """Ids (1-based, as in the table) of the exact nearest `k` by cosine."""
    out = []
    for q in queries:
        sims = data @ q
        top = np.argpartition(-sims, k)[:k]
        out.append({int(i) + 1 for i in top})
    return out


async def load(conn: asyncpg.Connection, data: np.ndarray, tenants: int) -> None:
    await conn.execute("DROP TABLE IF EXISTS items")
    await conn.execute(f"CREATE TABLE items (id int PRIMARY KEY, tenant int NOT NULL, embedding vector({DIM}))")
    records = [(i + 1, i % tenants, v) for i, v in enumerate(data)]
    for start in range(0, len(records), 50_000):
        await conn.copy_records_to_table(
            "items", records=records[start : start + 50_000], columns=["id", "tenant", "embedding"]
        )
    await conn.execute("CREATE INDEX items_tenant ON items (tenant)")
    await conn.execute("VACUUM ANALYZE items")


async def timed_queries(
    pool: asyncpg.Pool,
    config: Config,
    queries: np.ndarray,
    clients: int,
    k: int = 10,
    sql: str | None = None,
    args: tuple[object, ...] = (),
) -> tuple[list[float], list[set[int]], float]:
    """Latencies (ms), ids per query, and queries/s; `clients` connections share the query list."""
    latencies: list[float] = []
    found: list[set[int]] = [set() for _ in queries]
    queue = list(range(len(queries)))

    async def client() -> None:
        async with pool.acquire() as conn:
            if config.settings:
                await conn.execute(config.settings)
            while queue:
                i = queue.pop()
                started = time.perf_counter()
                rows = await conn.fetch(sql or config.query, queries[i], k, *args)
                latencies.append((time.perf_counter() - started) * 1000)
                found[i] = {r["id"] for r in rows}
            await conn.execute("RESET ALL")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, found, len(queries) / (time.perf_counter() - started)


def p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))]


async def run(
    dsn: str,
    rows: int,
    real: np.ndarray,
    questions: np.ndarray,
    quick: bool,
    only: tuple[str, ...] = (),
    efc: int = 64,
) -> tuple[str, str]:
    data, target = synthetic(real, rows)
    truth = exact_top(data, questions, 10)
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8, init=register_vector)
    try:
        async with pool.acquire() as conn:
            await load(conn, data, 20)
        head = [
            "configuration",
            "build s",
            "index MiB",
            "recall@10",
            "1 client p50 / p95 ms",
            "1 client q/s",
            "8 clients p50 / p95 ms",
            "8 clients q/s",
        ]
        out, built, hnsw_mib = [], None, 0.0
        chosen = configs(rows, efc)
        if only:
            chosen = [c for c in chosen if c.name.startswith(only)]
        if quick:  # one of each query shape
            chosen = [
                c
                for c in chosen
                if c.name.split(",")[0] in ("exact scan (no index)", "HNSW vector m16")
                or c.name.startswith(("HNSW halfvec m16, ef_search 40", "HNSW bits m16 + rerank 100"))
            ]
        for config in chosen:
            build, mib = 0.0, 0.0
            if config.index:
                async with pool.acquire() as conn:
                    if config.index != built:
                        await conn.execute("DROP INDEX IF EXISTS items_vec")
                        await conn.execute("SET maintenance_work_mem = '2GB'")
                        started = time.perf_counter()
                        await conn.execute(f"CREATE INDEX items_vec ON items USING {config.index}")
                        build = time.perf_counter() - started
                        built = config.index
                    mib = await conn.fetchval("SELECT pg_relation_size('items_vec')") / 2**20
            if config.name.startswith("HNSW vector"):
                hnsw_mib = mib
            one, found, qps1 = await timed_queries(pool, config, questions, 1)
            eight, _, qps8 = await timed_queries(pool, config, questions, 8)
            recall = statistics.mean(len(f & t) / 10 for f, t in zip(found, truth, strict=True))
            print(f"{config.name}: recall {recall:.3f}, p95 {p(one, 0.95):.1f} ms", file=sys.stderr)
            out.append(
                [
                    config.name,
                    f"{build:.1f}" if config.index else "-",
                    f"{mib:.1f}",
                    f"{recall:.3f}",
                    f"{p(one, 0.5):.2f} / {p(one, 0.95):.2f}",
                    f"{qps1:.0f}",
                    f"{p(eight, 0.5):.2f} / {p(eight, 0.95):.2f}",
                    f"{qps8:.0f}",
                    f"{hnsw_mib / mib:.1f}x" if mib and hnsw_mib else "-",
                ]
            )
        main = report.markdown_table([*head, "smaller than HNSW vector"], out)
        tenant = "" if only else await tenant_table(pool, data, questions)
        return main + f"\n\nReal nearest-neighbour cosine the noise was scaled to: {target:.3f}.", tenant
    finally:
        await pool.close()


async def tenant_table(pool: asyncpg.Pool, data: np.ndarray, questions: np.ndarray) -> str:
    """One tenant's share (every 20th row) searched: exact by tenant vs HNSW with iterative scan."""
    ids = np.arange(len(data))[np.arange(len(data)) % 20 == 3]
    local = exact_top(data[ids], questions, 10)
    truth = [{int(ids[i - 1]) + 1 for i in t} for t in local]
    async with pool.acquire() as conn:
        await conn.execute("DROP INDEX IF EXISTS items_vec")
        await conn.execute("SET maintenance_work_mem = '2GB'")
        exact_sql = "SELECT id FROM items WHERE tenant = $3 ORDER BY embedding <=> $1 LIMIT $2"
        rows = []
        for name, index, settings in (
            ("exact scan of the tenant's rows (btree on tenant)", None, "SET enable_indexscan = on"),
            (
                "HNSW vector, iterative scan, ef_search 100",
                "hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
                "SET hnsw.ef_search = 100; SET hnsw.iterative_scan = relaxed_order",
            ),
        ):
            if index:
                await conn.execute(f"CREATE INDEX items_vec ON items USING {index}")
            config = Config(name, index, exact_sql, settings)
            one, found, qps1 = await timed_queries(pool, config, questions, 1, args=(3,))
            eight, _, qps8 = await timed_queries(pool, config, questions, 8, args=(3,))
            recall = statistics.mean(len(f & t) / 10 for f, t in zip(found, truth, strict=True))
            rows.append(
                [
                    name,
                    f"{len(ids)} of {len(data)}",
                    f"{recall:.3f}",
                    f"{p(one, 0.5):.2f} / {p(one, 0.95):.2f}",
                    f"{qps1:.0f}",
                    f"{p(eight, 0.5):.2f} / {p(eight, 0.95):.2f}",
                    f"{qps8:.0f}",
                ]
            )
        await conn.execute("DROP INDEX IF EXISTS items_vec")
    return report.markdown_table(
        [
            "one tenant's search",
            "tenant rows",
            "recall@10",
            "1 client p50 / p95 ms",
            "1 client q/s",
            "8 clients p50 / p95 ms",
            "8 clients q/s",
        ],
        rows,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=2000, help="real passages the distribution is built from")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated starts of the configurations to run, e.g. 'HNSW halfvec m16,IVFFlat bits' (for "
        "--rows 1000000, where each HNSW build takes minutes); skips the one-tenant table",
    )
    parser.add_argument(
        "--ef-construction",
        type=int,
        default=64,
        help="HNSW builds' ef_construction (64: pgvector's default, as the earlier tables; bitbd builds with 200)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 rows, 5 configurations")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.real = 2000, 200
    real, questions = real_embeddings(args.real)
    with (
        tempfile.TemporaryDirectory() as data_dir,
        services(Settings(data_dir=Path(data_dir)), "bench", redis=False) as running,
    ):
        dsn = running.database.dsn.get_secret_value()
        only = tuple(part.strip() for part in args.only.split(",") if part.strip())
        main_table, tenant = asyncio.run(run(dsn, args.rows, real, questions, args.quick, only, args.ef_construction))
    print(main_table + "\n\n" + tenant)
    if not args.quick:
        report.append(
            f"Vector search, {args.rows:,} rows",
            f"2 cores; synthetic vectors shaped on {args.real} "
            f"real passage embeddings, {len(questions)} real questions as queries, k = 10, HNSW ef_construction "
            f"{args.ef_construction}",
            main_table + "\n\n" + tenant,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
