"""Memory of `bitbd serve` while it receives one big `POST /v1/uploads`: peak RSS of the server process.

    python -m perf.bench_upload [--files 4] [--mib 40] [--quick]

Starts a real `bitbd serve` (embedded PostgreSQL and Redis) in a temporary data dir with no in-process workers
(`jobs.workers = 0`), so the figure is the upload path alone (receiving the body and storing the files), not the
extraction and embedding of the job that follows. Sends one warm-up upload, then `--files` text files of `--mib`
MiB each in one multipart request, while a thread samples the RSS of the `bitbd serve` process (psutil, every
20 ms; the embedded servers are other processes and not counted). Prints a table and appends it to
perf/RESULTS.md (not with `--quick`: 2 files of 4 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psutil

from perf import report
from perf.corpus import free_port
from perf.server import call, start, stop, wait_ready

_WORDS = (
    "refund policy invoice shipping warranty account password support order delivery return customer "
    "product service payment billing address contact manager update report lift engineer inspection"
).split()


def text_file(mib: int, seed: int) -> bytes:
    """About `mib` MiB of plain text: 1 MiB of random words, each copy numbered so that no two lines repeat."""
    rng = random.Random(seed)
    block = "\n".join(" ".join(rng.choice(_WORDS) for _ in range(14)) for _ in range(10_000))
    block = block[: 2**20 - 16]
    return b"".join(f"part {i:09d}\n{block}".encode() for i in range(mib))


class PeakRss:
    """The highest RSS of one process (MiB), sampled every 20 ms in a thread while the block runs."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.start_mib = self.mib = self.proc.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.mib = max(self.mib, self.proc.memory_info().rss / 2**20)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _parts(files: list[bytes], boundary: str) -> list[bytes]:
    """The multipart body as a list of pieces (the files themselves are not copied)."""
    parts: list[bytes] = []
    for i, data in enumerate(files):
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big-{i}.txt"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
        )
        parts += [data, b"\r\n"]
    return [*parts, f"--{boundary}--\r\n".encode()]


async def upload(session: aiohttp.ClientSession, base: str, key: str, files: list[bytes]) -> tuple[int, str]:
    """One multipart request with a Content-Length, as curl -F sends it, streamed in 1 MiB pieces."""
    boundary = "bench" + "0" * 20
    parts = _parts(files, boundary)

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            for at in range(0, len(part), 2**20):
                yield part[at : at + 2**20]

    async with session.post(
        base + "/v1/uploads",
        data=body(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(sum(len(p) for p in parts)),
        },
    ) as r:
        return r.status, await r.text()


async def run(base: str, token: str, pid: int, files: list[bytes]) -> dict[str, float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await call(session, base, token, "POST", "/v1/admin/tenants", {"name": "up"})
        key = (await call(session, base, token, "POST", "/v1/admin/tenants/up/keys", {"kind": "secret"}))["key"]
        status, text = await upload(session, base, key, [b"warm-up file: the lifts are inspected twice a year"])
        assert status == 202, (status, text)
        await asyncio.sleep(2)
        before = psutil.Process(pid).memory_info().rss / 2**20
        started = time.perf_counter()
        with PeakRss(pid) as peak:
            status, text = await upload(session, base, key, files)
            seconds = time.perf_counter() - started
            await asyncio.sleep(1)  # anything freed late after the reply still counts
        if status != 202:
            raise SystemExit(f"upload refused: {status} {text}")
        after = psutil.Process(pid).memory_info().rss / 2**20
    return {"before": before, "peak": peak.mib, "after": after, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--mib", type=int, default=40, help="size of each file in MiB")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 files of 4 MiB, nothing appended")
    args = parser.parse_args()
    if args.quick:
        args.files, args.mib = 2, 4
    files = [text_file(args.mib, seed) for seed in range(args.files)]
    total = sum(len(f) for f in files) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start("serve", Path(tmp), "--port", str(port), BITBD_JOBS__WORKERS="0")
        try:
            wait_ready(base, proc)
            token = (Path(tmp) / "admin_token").read_text().strip()
            r = asyncio.run(run(base, token, proc.pid, files))
        finally:
            stop(proc)
    growth = r["peak"] - r["before"]
    table = report.markdown_table(
        ["measure", "value"],
        [
            ["upload", f"{args.files} text files x {args.mib} MiB = {total:.0f} MiB in one request"],
            ["`bitbd serve` RSS before", f"{r['before']:.0f} MiB"],
            ["peak RSS during the upload", f"{r['peak']:.0f} MiB"],
            ["peak growth", f"{growth:.0f} MiB ({growth / total:.2f}x the upload)"],
            ["RSS 1 s after the reply", f"{r['after']:.0f} MiB"],
            ["upload time (202 received)", f"{r['seconds']:.1f} s ({total / r['seconds']:.0f} MiB/s)"],
        ],
    )
    print(table)
    if not args.quick:
        report.append(
            "Upload memory",
            "2 cores, `bitbd serve` with embedded PostgreSQL and Redis, "
            "`jobs.workers = 0`, RSS of the server process sampled every 20 ms",
            table,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
