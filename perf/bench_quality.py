"""Answer quality on three real documentation sites, against plain baselines.

    python -m perf.bench_quality [--sites pydocs,gitdoc,handbook] [--data-dir DIR] [--fresh] [--quick]

Each site is a Debian documentation package served on loopback: Python's library reference (`pydocs`, 120
pages), git's manual pages and guides (`gitdoc`, every top-level page), and the Debian Administrator's Handbook
(`handbook`, a book in 127 sections; held out: its questions were written independently and nothing was tuned on
it). A real `bitbd serve` (default settings, extractive generator, cache off) crawls each into a tenant once
(the data dir is kept, so later runs reuse it; --fresh after a change to ingestion), then `bitbd eval`'s own
code asks perf/quality/<site>.jsonl (60 questions worded as users ask, with the pages that answer them and a
regex for the fact, and 10 off-topic ones) through `/v1/search` and `/v1/chat`. Side by side on the same stored
chunks: BM25 (bm25s), exact dense cosine (the same MiniLM), their plain RRF (k=60), and for answers the first
three sentences of bitbd's top hit (lead-3) and the top-3 ceiling (the fact anywhere in the top three hits).
Appends the tables to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bitbd import tenancy
from bitbd.client import Client
from bitbd.db.pool import open_pool
from bitbd.embedded.services import services
from bitbd.jobs.runtime import make_embedder
from bitbd.plugins import load_plugins
from bitbd.quality.questions import Question, load, plain
from bitbd.quality.run import Report, evaluate
from bitbd.settings import Settings
from perf import baselines
from perf.corpus import free_port, served
from perf.report import append, markdown_table
from perf.server import add_set_option, call, settings_of, start, stop, wait_ready

QUALITY = Path(__file__).with_name("quality")
KEPT = Path("/tmp/bitbd-perf-quality")
# What must never reach an answer: anchor marks, escaped Markdown, version-change notes, unbalanced code, HTML
# entities (a bare < outside code arrives escaped).
ARTEFACT = re.compile(
    r"¶|\\[_*`\[\]#<>]|\b(?:Changed|New) in version\b|\bDeprecated since version\b|>>>|"
    r"&(?:lt|gt|amp|quot);"
)


@dataclass(frozen=True)
class Site:
    name: str
    root: Path
    pages: list[str]
    questions: list[Question]
    held_out: bool = False


def sites() -> dict[str, Site]:
    git = Path("/usr/share/doc/git-doc")
    book = Path("/usr/share/doc/debian-handbook/html/en-US")
    return {
        "pydocs": Site(
            "pydocs",
            Path("/usr/share/doc/python3.11/html"),
            (QUALITY / "pydocs.pages").read_text().split(),
            load(QUALITY / "pydocs.jsonl"),
        ),
        "gitdoc": Site("gitdoc", git, sorted(p.name for p in git.glob("*.html")), load(QUALITY / "gitdoc.jsonl")),
        "handbook": Site(
            "handbook",
            book,
            sorted(p.name for p in book.glob("*.html")),
            load(QUALITY / "handbook.jsonl"),
            held_out=True,
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", default="pydocs,gitdoc,handbook")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--fresh", action="store_true", help="crawl the sites again (after a change to ingestion)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one site, 6 questions and 2 to refuse, only their pages; prints, appends nothing",
    )
    add_set_option(parser, "INGEST__CHUNK_TOKENS=128 (an experiment: use its own --data-dir and --fresh)")
    args = parser.parse_args()
    overrides = settings_of(args.set)
    known = sites()
    chosen = [known[name] for name in args.sites.split(",")]
    if args.quick:  # one site: only its pages need to be installed
        chosen = chosen[:1]
    missing = [s.root for s in chosen if not (s.root / "index.html").is_file()]
    if missing:
        sys.exit(
            f"not installed: {', '.join(map(str, missing))} (apt-get install python3.11-doc git-doc debian-handbook)"
        )
    with contextlib.ExitStack() as stack:
        data_dir = args.data_dir or (Path(stack.enter_context(tempfile.TemporaryDirectory())) if args.quick else KEPT)
        if args.quick:
            chosen = [_quick(chosen[0])]
        tables = asyncio.run(run(data_dir, chosen, args.fresh, overrides))
    for site, table in tables:
        print(f"\n{site.name}{' (held out)' if site.held_out else ''}\n{table}")
        if not args.quick:
            changed = ", ".join(f"{k.lower().replace('__', '.')} = {v}" for k, v in overrides.items())
            append(
                f"Answer quality: {site.name}{' (held out)' if site.held_out else ''}",
                f"{len(site.pages)} pages served on loopback; {changed or 'default settings'}, extractive "
                "generator, cache off; retrieval rows over the same stored chunks",
                table,
            )
    return 0


def _quick(site: Site) -> Site:
    def size(q: Question) -> int:
        return sum((site.root / u).stat().st_size for u in q.urls)

    # The six questions whose pages are smallest: a smoke run crawls and embeds in seconds, not minutes.
    on_topic = sorted((q for q in site.questions if not q.refuse), key=size)[:6]
    kept = on_topic + [q for q in site.questions if q.refuse][:2]
    pages = list(dict.fromkeys(u for q in kept for u in q.urls))
    return Site(site.name, site.root, pages, kept, site.held_out)


async def run(
    data_dir: Path, chosen: list[Site], fresh: bool, overrides: dict[str, str] | None = None
) -> list[tuple[Site, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tables = []
    with contextlib.ExitStack() as stack:
        statics = {site.name: stack.enter_context(served(site.root)) for site in chosen}
        proc = start(
            "serve",
            data_dir,
            "--port",
            str(port),
            BITBD_CRAWLER__ALLOW_PRIVATE="true",
            BITBD_CACHE__ENABLED="false",
            BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0",
            **{f"BITBD_{k}": v for k, v in (overrides or {}).items()},
        )
        try:
            wait_ready(base, proc)
            token = (data_dir / "admin_token").read_text().strip()
            for site in chosen:
                key = await _ingest(base, token, site, statics[site.name], fresh)
                tables.append((site, await _measure(base, key, data_dir, site)))
        finally:
            stop(proc)
    return tables


async def _key(session: aiohttp.ClientSession, base: str, token: str, tenant: str) -> str:
    made = await call(
        session, base, token, "POST", f"/v1/admin/tenants/{tenant}/keys", {"kind": "secret", "name": "bench_quality"}
    )
    return str(made["key"])


async def _ingest(base: str, token: str, site: Site, url: str, fresh: bool) -> str:
    """The site's pages crawled into tenant `quality-<site>`, unless it has documents already (a kept data dir:
    the static server's port differs between runs, and the expected URLs match on the path); `fresh`, or a
    tenant with fewer than 90% of the pages (a crawl cut short), is crawled again. Returns a secret key."""
    tenant = f"quality-{site.name}"
    async with aiohttp.ClientSession() as session:
        listed = {t["name"]: t for t in (await call(session, base, token, "GET", "/v1/admin/tenants"))["tenants"]}
        if tenant in listed and (fresh or listed[tenant]["documents"] < 0.9 * len(site.pages)):
            await call(session, base, token, "DELETE", f"/v1/admin/tenants/{tenant}")  # stale or cut short
        elif tenant in listed:
            return await _key(session, base, token, tenant)
        await call(session, base, token, "POST", "/v1/admin/tenants", {"name": tenant})
        key = await _key(session, base, token, tenant)
        started = time.monotonic()
        jobs = []
        for i in range(0, len(site.pages), 100):  # a source holds at most 100 start URLs
            urls = [f"{url}/{page}" for page in site.pages[i : i + 100]]
            made = await call(
                session,
                base,
                key,
                "POST",
                "/v1/sources",
                {"type": "web", "urls": urls, "max_depth": 0, "sitemap": False},
            )
            jobs.append(made["job_id"])
        for job in jobs:
            while (view := await call(session, base, key, "GET", f"/v1/jobs/{job}"))["status"] in ("queued", "running"):
                progress = view["progress"]
                print_if_tty(
                    f"\r{site.name}: {progress['fetched']}/{progress['found']} pages, "
                    f"{progress['chunks_embedded']} chunks"
                )
                await asyncio.sleep(1)
            if view["status"] != "succeeded" or view["errors"]:
                print(f"\n{site.name}: job {job} {view['status']}: {json.dumps(view['errors'])[:500]}", file=sys.stderr)
        print_if_tty(f"\r{site.name}: crawled in {time.monotonic() - started:.0f} s" + " " * 30 + "\n")
    return str(key)


def print_if_tty(text: str) -> None:
    """Progress on a terminal; nothing in a log or a test's captured output."""
    if sys.stderr.isatty():
        print(text, end="", file=sys.stderr, flush=True)


async def _measure(base: str, key: str, data_dir: Path, site: Site) -> str:
    tenant = f"quality-{site.name}"
    async with Client(base, {"Authorization": f"Bearer {key}"}) as client:
        report = await evaluate(client, site.questions)
        on_topic = [o.question for o in report.outcomes]
        top = [(await client.search(q.text, 3))["hits"] for q in on_topic]
    with services(Settings(data_dir=data_dir), "bench", redis=False) as settings:  # the server's PostgreSQL
        pool = await open_pool(settings.database)
        try:
            tenant_id = (await tenancy.get_tenant(pool, tenant)).id
            corpus = await baselines.load_corpus(pool, tenant_id)
        finally:
            await pool.close()
    chunks = len(corpus.urls)
    embedder = make_embedder(settings, load_plugins())
    vectors = await baselines.query_vectors(embedder, [q.text for q in on_topic])
    lexical = [baselines.bm25_ranking(corpus, q.text) for q in on_topic]
    dense = [baselines.dense_ranking(corpus, v) for v in vectors]
    fused = [baselines.rrf([a, b]) for a, b in zip(lexical, dense, strict=True)]
    rows = [
        _retrieval_row(f"BM25 (bm25s), {chunks:,} chunks", corpus, on_topic, lexical),
        _retrieval_row("dense only (exact cosine, same MiniLM)", corpus, on_topic, dense),
        _retrieval_row(f"plain RRF (BM25 + dense, k={baselines.RRF_K})", corpus, on_topic, fused),
        _bitbd_row(report),
        _answer_row(
            "lead-3: first 3 sentences of bitbd's top hit",
            on_topic,
            [baselines.lead_three(hits[0]["text"]) if hits else "" for hits in top],
        ),
        _answer_row(
            "top-3 ceiling: the fact anywhere in bitbd's top 3 hits",
            on_topic,
            [" ".join(h["text"] for h in hits) for hits in top],
        ),
    ]
    head = [
        "method",
        "recall@5",
        "MRR@10",
        "cites a right page",
        "answer has fact",
        "off-topic refused (alone / follow-up)",
        "empty",
        "artefacts",
        "p50 / p95 to done",
    ]
    return markdown_table(head, rows) + "\n\n" + _misses(report)


def _ranks(corpus: baselines.Corpus, questions: list[Question], rankings: list[list[int]]) -> list[int | None]:
    return [
        next((i for i, url in enumerate(baselines.hit_urls(corpus, r), start=1) if q.answered_by(url)), None)
        for q, r in zip(questions, rankings, strict=True)
    ]


def _quality(ranks: list[int | None]) -> list[str]:
    recall = sum(1 for r in ranks if r is not None and r <= 5) / len(ranks)
    mrr = sum(1 / r for r in ranks if r) / len(ranks)
    return [f"{recall:.3f}", f"{mrr:.3f}"]


def _retrieval_row(
    label: str, corpus: baselines.Corpus, questions: list[Question], rankings: list[list[int]]
) -> list[str]:
    return [label, *_quality(_ranks(corpus, questions, rankings)), "", "", "", "", "", ""]


def _bitbd_row(report: Report) -> list[str]:
    s = report.summary()
    answers = [o.answer for o in report.outcomes]
    return [
        "**bitbd default** (`/v1/search`, `/v1/chat`)",
        f"{s['recall@5']:.3f}",
        f"{s['mrr@10']:.3f}",
        f"{s['cites_right_page']:.3f}",
        f"{s['answer_has_fact']:.3f}",
        f"{s['off_topic_refused_opening']}/{s['off_topic']} / {s['off_topic_refused_follow_up']}/{s['off_topic']}",
        str(s["empty_answers"]),
        str(sum(_artefact(a) for a in answers)),
        f"{s['p50_ms']} / {s['p95_ms']} ms",
    ]


def _answer_row(label: str, questions: list[Question], answers: list[str]) -> list[str]:
    facts = [q.has_fact(a) for q, a in zip(questions, answers, strict=True) if q.answer is not None]
    return [
        label,
        "",
        "",
        "",
        f"{sum(facts) / max(len(facts), 1):.3f}",
        "",
        str(sum(not a.strip() for a in answers)),
        "",
        "",
    ]


def _artefact(answer: str) -> bool:
    return ARTEFACT.search(answer) is not None or answer.count("`") % 2 == 1


def _misses(report: Report) -> str:
    """The on-topic questions whose answer lacks the fact, with what was said: what to improve next."""
    lines = []
    for o in report.outcomes:
        if o.has_fact is False or _artefact(o.answer):
            mark = "artefact" if _artefact(o.answer) else f"rank {o.rank}"
            lines.append(f"- `{o.question.text}` ({mark}): {plain(o.answer)[:160]}")
    for t in report.off_topic:
        if not (t.refused_opening and t.refused_follow_up):
            lines.append(f"- off-topic answered: `{t.question.text}`")
    return (
        f"<details><summary>{len(lines)} misses</summary>\n\n" + "\n".join(lines) + "\n\n</details>"
        if lines
        else "no misses"
    )


if __name__ == "__main__":
    sys.exit(main())
