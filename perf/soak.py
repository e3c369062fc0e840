"""A bounded soak on loopback: WebSocket clients ask for minutes while a crawl runs and its worker is killed and
restarted. Every ask must end in `done` or a specific `error`; the crawl must finish; memory must stay flat
(reported per process: the server, its embedded PostgreSQL and Redis, and the worker, each on its own).

    python -m perf.soak [--minutes 10] [--clients 100] [--pages 300] [--quick]

Starts a real `bitbd serve` (embedded PostgreSQL and Redis, no in-process workers) and one `bitbd worker` in a
temporary data dir, serves a generated site (perf/site.py) on loopback, indexes a first part of it, then starts
the clients (each asks, waits for the end of the answer, thinks 2-5 s, asks again; one reconnects at once if its
socket drops, and counts the asks it had open as lost) and a crawl of the whole site. A third of the way in,
the worker is killed with SIGKILL and started again 10 s later. Everything stops by itself: the clients after
`--minutes`, then the crawl is awaited (10 minutes at most). Only loopback addresses are used. Prints a table and
appends it to perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bitbd.client import Disconnected, exchange
from perf import report, site
from perf.corpus import free_port, served
from perf.questions import QUESTIONS
from perf.server import call, pss_by_role, start, stop, tenant_key, wait_job, wait_ready

SETTINGS = {
    "BITBD_CRAWLER__ALLOW_PRIVATE": "true",
    "BITBD_CHAT__RATE_LIMIT_PER_MINUTE": "0",
    "BITBD_JOBS__REDELIVERY_SECONDS": "10",
}


@dataclass
class Tally:
    asked: int = 0
    done: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    reconnects: int = 0
    latencies: list[float] = field(default_factory=list)


async def client(base: str, key: str, until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    phrasings = [q for q, _, more in QUESTIONS for q in (q, *more)]
    n = 0
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            try:
                async with session.ws_connect(
                    base.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}, heartbeat=20
                ) as ws:
                    while time.monotonic() < until:
                        n += 1
                        ask_id = f"{seed}-{n}"
                        tally.asked += 1
                        try:  # a closed socket, or nothing for 60 s: a lost answer
                            reply = await exchange(ws, ask_id, rng.choice(phrasings), seconds=60)
                        except (Disconnected, TimeoutError):
                            tally.lost += 1
                            break
                        if reply.ok:
                            tally.done += 1
                            tally.latencies.append(reply.seconds)
                        else:
                            tally.errors[reply.end["code"]] += 1
                        await asyncio.sleep(rng.uniform(2, 5))
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                pass
            tally.reconnects += 1
            await asyncio.sleep(0.5)


async def soak(
    base: str, token: str, url: str, args: argparse.Namespace, data_dir: Path, server_pid: int, worker: list[Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        key = await tenant_key(session, base, token, "soak")
        first = await call(
            session,
            base,
            key,
            "POST",
            "/v1/sources",
            {"type": "web", "urls": [f"{url}/index.html"], "max_pages": args.pages // 10},
        )
        view = await wait_job(session, base, key, first["job_id"], 600, every=1)
        print(f"indexed {view['progress']['fetched']} pages; {args.clients} clients start", file=sys.stderr)
        tally = Tally()
        started = time.monotonic()
        until = started + args.minutes * 60
        clients = [asyncio.create_task(client(base, key, until, tally, i)) for i in range(args.clients)]
        crawl = await call(
            session,
            base,
            key,
            "POST",
            "/v1/sources",
            {"type": "web", "urls": [f"{url}/index.html?all"], "max_pages": args.pages},
        )
        memory: list[tuple[float, dict[str, float]]] = []
        killed = False
        while time.monotonic() < until:
            memory.append((time.monotonic() - started, pss_by_role(server_pid, data_dir)))
            if not killed and time.monotonic() - started > args.minutes * 20:
                worker[0].send_signal(signal.SIGKILL)
                worker[0].wait()
                out["killed_at"] = time.monotonic() - started
                await asyncio.sleep(10)
                worker[0] = start("worker", data_dir, "--metrics-port", "0", **SETTINGS)
                killed = True
            await asyncio.sleep(min(5, max(0.1, until - time.monotonic())))
        await asyncio.gather(*clients)
        print(f"clients done: {tally.asked} asked, {tally.lost} lost; waiting for the crawl", file=sys.stderr)
        out["job"] = await wait_job(session, base, key, crawl["job_id"], 600, every=1)
        out["tally"], out["memory"], out["seconds"] = tally, memory, time.monotonic() - started
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 30 s, 5 clients, 10 pages")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.clients, args.pages = 0.5, 5, 10
    directory = site.build(Path(tempfile.gettempdir()) / f"bitbd-perf-site-{args.pages}", args.pages)
    with served(directory) as url, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start("serve", data_dir, "--port", str(port), BITBD_JOBS__WORKERS="0", **SETTINGS)
        worker = [server]  # replaced once the server owns the data dir: the worker attaches to its services
        try:
            wait_ready(base, server)
            worker[0] = start("worker", data_dir, "--metrics-port", "0", **SETTINGS)
            token = (data_dir / "admin_token").read_text().strip()
            r = asyncio.run(soak(base, token, url, args, data_dir, server.pid, worker))
        finally:
            if worker[0] is not server:
                stop(worker[0])
            stop(server)
    table = render(r, args)
    print(table)
    if not args.quick:
        report.append(
            "Soak",
            f"{args.clients} WebSocket clients for {args.minutes:g} minutes (think time 2-5 s) "
            f"while a {args.pages}-page crawl runs on one `bitbd worker`, SIGKILLed and restarted "
            f"{r.get('killed_at', 0):.0f} s in; `bitbd serve` with embedded services, loopback only",
            table,
        )
    ok = r["tally"].lost == 0 and r["job"].get("status") == "succeeded"
    return 0 if ok else 1


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    t: Tally = r["tally"]
    job = r["job"]
    progress = job.get("progress", {})
    lat = sorted(t.latencies) or [0.0]
    rows = [
        ["asks sent", f"{t.asked}"],
        ["answered (`done`)", f"{t.done}"],
        ["specific errors", ", ".join(f"{code} {n}" for code, n in t.errors.most_common()) or "none"],
        ["lost (no `done` or `error`)", f"{t.lost}"],
        ["reconnects", f"{t.reconnects - args.clients}"],
        ["answer time p50 / p95", f"{lat[len(lat) // 2] * 1000:.0f} / {lat[int(len(lat) * 0.95)] * 1000:.0f} ms"],
        [
            "crawl job",
            f"{job.get('status')}: {progress.get('fetched')} pages, {progress.get('failed')} failed, "
            f"{progress.get('chunks_embedded')} chunks",
        ],
        ["worker killed and restarted at", f"{r.get('killed_at', 0):.0f} s"],
        *memory_rows(r["memory"], args.minutes * 60),
    ]
    return report.markdown_table(["measure", "value"], rows)


def memory_rows(samples: list[tuple[float, dict[str, float]]], seconds: float) -> list[list[str]]:
    """Per role: the median PSS of the second minute (after warm-up: model loaded, caches filled), of the middle
    and of the last minute of the run, the largest sample, and the least-squares slope from minute 2 on."""
    rows = []
    for role, what in (
        ("daemon", "`bitbd serve` process"),
        ("postgres", "embedded PostgreSQL"),
        ("redis", "embedded Redis"),
        ("worker", "`bitbd worker` (restarted once)"),
    ):
        series = [(t, m[role]) for t, m in samples]
        if not series:
            continue
        after = [(t, v) for t, v in series if t >= 60] or series

        def median(lo: float, hi: float, series: list[tuple[float, float]] = series) -> float:
            values = sorted(v for t, v in series if lo <= t < hi) or [0.0]
            return values[len(values) // 2]

        rows.append(
            [
                f"{what}: PSS minute 2 / middle minute / last minute, max",
                f"{median(60, 120):.0f} / {median(seconds / 2 - 30, seconds / 2 + 30):.0f} / "
                f"{median(seconds - 60, seconds + 1):.0f} MiB, max {max(v for _, v in series):.0f} MiB; "
                f"slope from minute 2 {slope(after) * 60:+.1f} MiB/min",
            ]
        )
    return rows


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of v over t (per second); 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    mt = sum(t for t, _ in points) / len(points)
    mv = sum(v for _, v in points) / len(points)
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0


if __name__ == "__main__":
    sys.exit(main())
