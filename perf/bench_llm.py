"""Chat through a real language model: a real `bitbd serve` with `answer.generator = "openai"` pointed at a real
llama.cpp server (llama-cpp-python, the gemma3-270m GGUF from PyPI; perf/llama.py says how to install them) on
loopback, with llama.cpp's defaults (one slot, a new request interrupts the one in progress).

    python -m perf.bench_llm [--data-dir DIR] [--clients 1,2,4] [--questions 3] [--limits 1,64] [--quick]

For each `plugins.openai.max_concurrent` in --limits (1, the default, against 64: about what bitbd did before it
had a limit) and each number of concurrent clients, every client asks its questions one after another over its
own WebSocket. Reports time to the first delta and to `done`, the model's tokens/s while it writes (tokens
counted with the model's own tokenizer), how many answers the model wrote, how many fell back to `extractive`,
were cut (`complete: false`) or failed, and the prompt's size. The tenant is the first pages of Python's library
reference (crawled once into the data dir). Appends the table to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bitbd.client import exchange
from bitbd.embedded.services import services
from bitbd.settings import CrawlerSettings, Settings
from perf.bench_chat import TENANT, crawl_if_needed, pct
from perf.corpus import PYDOCS, free_port, scratch_or, served
from perf.llama import llama_server, missing, model_path
from perf.questions import QUESTIONS
from perf.report import append, markdown_table
from perf.server import call, start, stop, wait_ready


async def client(session: aiohttp.ClientSession, base: str, key: str, questions: list[str]) -> list[dict[str, Any]]:
    out = []
    async with session.ws_connect(
        base.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}
    ) as ws:
        for i, question in enumerate(questions):
            reply = await exchange(ws, str(i), question)
            out.append({"first": reply.first, "done": reply.seconds, "text": reply.text, "outcome": outcome(reply.end)})
    return out


def outcome(event: dict[str, Any]) -> str:
    if event["type"] == "error":
        return f"error {event['code']}"
    if event["generator"] is None:
        return "refused"
    if event["generator"] != "openai":
        return "fell back"
    return "model, complete" if event["complete"] else f"model, cut ({event['stopped']})"


async def load(base: str, token: str, clients: int, per_client: int, seed: int) -> list[dict[str, Any]]:
    phrasings = [q for q, _, paraphrases in QUESTIONS for q in (q, *paraphrases)]
    rng = random.Random(seed)
    async with aiohttp.ClientSession() as session:
        key = (await call(session, base, token, "POST", f"/v1/admin/tenants/{TENANT}/keys", {"kind": "secret"}))["key"]
        runs = await asyncio.gather(
            *(client(session, base, key, rng.sample(phrasings, per_client)) for _ in range(clients))
        )
    return [r for run in runs for r in run]


def tokens_per_second(results: list[dict[str, Any]], count: Any) -> float | None:
    rates = [
        (len(count(r["text"])) - 1) / (r["done"] - r["first"])
        for r in results
        if r["outcome"].startswith("model") and r["first"] is not None and r["done"] - r["first"] > 0.05
    ]
    return sorted(rates)[len(rates) // 2] if rates else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="kept between runs (default /tmp/bitbd-perf-llm)")
    parser.add_argument("--pages", type=int, default=40, help="pages of the tenant")
    parser.add_argument("--clients", default="1,2,4", help="concurrency levels, comma-separated")
    parser.add_argument("--questions", type=int, default=3, help="questions per client, one after another")
    parser.add_argument("--limits", default="1,64", help="plugins.openai.max_concurrent values, comma-separated")
    parser.add_argument("--quick", action="store_true", help="5 pages, 1 and 2 clients, limit 1, nothing appended")
    args = parser.parse_args()
    if reason := missing():
        sys.exit(reason)
    if args.quick:
        args.pages, args.clients, args.questions, args.limits = 5, "1,2", 1, "1"
    levels = [int(n) for n in str(args.clients).split(",")]
    limits = [int(n) for n in str(args.limits).split(",")]
    with contextlib.ExitStack() as stack:
        data_dir = scratch_or(args.data_dir or (None if args.quick else Path("/tmp/bitbd-perf-llm")), args.quick, stack)
        rows = run(data_dir, args.pages, levels, limits, args.questions)
    head = [
        "max_concurrent",
        "clients",
        "answers: model complete / cut / fell back / failed / refused",
        "first delta p50 / p95",
        "done p50 / p95",
        "model tokens/s (p50)",
    ]
    table = markdown_table(head, rows)
    print(table)
    if not args.quick:
        append(
            "Chat through a real llama.cpp server",
            f"llama-cpp-python 0.3.36 server, gemma-3-270m Q4_K_M, "
            f"`--chat_format gemma --n_threads 2`, llama.cpp defaults otherwise (one slot, interrupt_requests "
            f"on); bitbd serve with the openai generator (max_tokens 128, connect_timeout 10 s, the other "
            f"plugins.openai settings default), cache off; {args.questions} questions per client, one after "
            "another; server, model and clients share 2 cores",
            table,
        )
    return 0


def run(data_dir: Path, pages: int, levels: list[int], limits: list[int], questions: int) -> list[list[str]]:
    from llama_cpp import Llama

    vocab = Llama(str(model_path()), vocab_only=True, verbose=False)

    def count(text: str) -> list[int]:
        return list(vocab.tokenize(text.encode(), add_bos=False)) if text else [0]

    with served(PYDOCS) as url:
        settings = Settings(data_dir=data_dir, crawler=CrawlerSettings(allow_private=True))
        with services(settings, "bench") as running:
            asyncio.run(crawl_if_needed(running, url, pages))
    rows = []
    with tempfile.TemporaryDirectory() as logs, llama_server(Path(logs)) as llama:
        for limit in limits:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = start(
                "serve",
                data_dir,
                "--port",
                str(port),
                BITBD_CACHE__ENABLED="false",
                BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0",
                BITBD_ANSWER__GENERATOR="openai",
                BITBD_PLUGINS__OPENAI__BASE_URL=llama.url,
                BITBD_PLUGINS__OPENAI__MODEL="gemma-3-270m",
                BITBD_PLUGINS__OPENAI__MAX_TOKENS="128",
                BITBD_PLUGINS__OPENAI__MAX_CONCURRENT=str(limit),
            )
            try:
                wait_ready(base, proc)
                token = (data_dir / "admin_token").read_text().strip()
                asyncio.run(load(base, token, 1, 1, seed=0))  # warm up: the query model and the server's cache
                for clients in levels:
                    results = asyncio.run(load(base, token, clients, questions, seed=clients))
                    rows.append([str(limit), str(clients), *summary(results, count)])
                    print(rows[-1], flush=True)
            finally:
                stop(proc)
    return rows


def summary(results: list[dict[str, Any]], count: Any) -> list[str]:
    outcomes = Counter(r["outcome"].split(" (")[0] for r in results)
    failed = sum(n for o, n in outcomes.items() if o.startswith("error"))
    firsts = [r["first"] for r in results if r["first"] is not None] or [0.0]
    dones = [r["done"] for r in results]
    rate = tokens_per_second(results, count)
    return [
        f"{outcomes['model, complete']} / {outcomes['model, cut']} / {outcomes['fell back']} / {failed} / "
        f"{outcomes['refused']}",
        f"{pct(firsts, 0.5):.0f} / {pct(firsts, 0.95):.0f} ms",
        f"{pct(dones, 0.5):.0f} / {pct(dones, 0.95):.0f} ms",
        "-" if rate is None else f"{rate:.1f}",
    ]


if __name__ == "__main__":
    sys.exit(main())
