"""Shared by the benchmarks that run a real `bitbd serve` (and `bitbd worker`) on loopback: start, wait, talk to
its admin API, and measure its processes' memory and CPU."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any BITBD_* of the caller's, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITBD_")}
    env.update(settings)
    return env


def start(command: str, data_dir: Path, *args: str, **settings: str) -> subprocess.Popen[bytes]:
    """`bitbd serve|worker --data-dir DIR ARGS`, quiet, with BITBD_* `settings` in its environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "bitbd", command, "--data-dir", str(data_dir), *args],
        env=clean_env(**settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    """The `--set KEY=VALUE` option (repeatable): a setting of the server under test, by its BITBD_* name."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a setting of the server under test, as its BITBD_* name without the prefix, e.g. {example}",
    )


def settings_of(items: list[str]) -> dict[str, str]:
    """`KEY=VALUE` texts as {KEY: VALUE} (KEY upper-cased, without the BITBD_ prefix), or exit naming the bad one."""
    out = {}
    for text in items:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            sys.exit(f"{text!r}: give KEY=VALUE, e.g. INGEST__CHUNK_TOKENS=128")
        out[key.strip().upper()] = value
    return out


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"bitbd serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit("bitbd serve did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


async def call(session: aiohttp.ClientSession, base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    """One API call with a bearer token (admin token or API key); the JSON reply, or exit with its error."""
    async with session.request(method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        reply = await r.json()
        if r.status >= 400:
            sys.exit(f"{method} {path}: {r.status} {reply}")
        return reply


async def tenant_key(session: aiohttp.ClientSession, base: str, token: str, name: str) -> str:
    """Create tenant `name` with the admin token; returns a new secret key of it."""
    await call(session, base, token, "POST", "/v1/admin/tenants", {"name": name})
    reply = await call(session, base, token, "POST", f"/v1/admin/tenants/{name}/keys", {"kind": "secret"})
    return str(reply["key"])


async def wait_job(
    session: aiohttp.ClientSession, base: str, key: str, job: str, seconds: float = 7200, every: float = 0.2
) -> dict[str, Any]:
    """The job once it has ended (or as it is after `seconds`), polled every `every` seconds; a line of progress on
    stderr every 15 s while it runs."""
    deadline = time.monotonic() + seconds
    said = time.monotonic()
    while True:
        view: dict[str, Any] = await call(session, base, key, "GET", f"/v1/jobs/{job}")
        if view["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return view
        if time.monotonic() - said > 15:
            said = time.monotonic()
            p = view.get("progress", {})
            done = sum(int(p.get(k, 0)) for k in ("fetched", "failed", "skipped"))
            print(
                f"job {job[:8]}: {view['status']}, {done}/{p.get('found', '?')} pages, "
                f"{p.get('chunks_embedded', 0)} chunks",
                file=sys.stderr,
                flush=True,
            )
        await asyncio.sleep(every)


def tree(pid: int, data_dir: Path | None = None) -> list[psutil.Process]:
    """The process and its descendants; with `data_dir`, also the embedded servers on it (PostgreSQL may run
    detached from its parent) and their children."""
    roots = [psutil.Process(pid)]
    if data_dir is not None:
        for p in psutil.process_iter(["cmdline"]):
            if p.pid != pid and any(str(data_dir) in part for part in p.info["cmdline"] or []):
                roots.append(p)
    seen: dict[int, psutil.Process] = {}
    for root in roots:
        with_children = [root]
        try:
            with_children += root.children(recursive=True)
        except psutil.Error:
            pass
        seen.update({p.pid: p for p in with_children})
    return list(seen.values())


def pss_mib(pid: int, data_dir: Path | None = None) -> float:
    """Memory of the process and its children (embedded PostgreSQL and Redis), in MiB: proportional set size, so
    that PostgreSQL's shared buffers count once, not once per backend as plain RSS would."""
    return sum(pss_by_role(pid, data_dir).values())


def pss_by_role(pid: int, data_dir: Path | None = None) -> dict[str, float]:
    """pss_mib() split by role, in MiB: `daemon` (the process `pid` alone), `postgres` and `redis` (the embedded
    servers on `data_dir`), and `worker` (any other process on `data_dir`: `bitbd worker` and its children).
    Keeps a worker's embedding memory out of the server's figure."""
    roles = dict.fromkeys(ROLES, 0.0)
    for p in tree(pid, data_dir):
        try:
            info = p.memory_full_info()
            roles[_role(p, pid)] += getattr(info, "pss", info.rss) / 2**20
        except psutil.Error:
            continue
    return roles


ROLES = ("daemon", "postgres", "redis", "worker")


def _role(p: psutil.Process, pid: int) -> str:
    name = p.name()
    return "daemon" if p.pid == pid else "postgres" if "postgres" in name else "redis" if "redis" in name else "worker"


def cpu_by_role(pid: int, data_dir: Path | None = None) -> dict[str, float]:
    """CPU seconds (user + system) so far of the process and its children, split by role as in pss_by_role()."""
    roles = dict.fromkeys(ROLES, 0.0)
    for p in tree(pid, data_dir):
        try:
            t = p.cpu_times()
            roles[_role(p, pid)] += t.user + t.system
        except psutil.Error:
            pass
    return roles


def cpu_seconds(pid: int, data_dir: Path | None = None) -> float:
    """CPU seconds so far of the process, its children and the embedded servers on `data_dir`."""
    return sum(cpu_by_role(pid, data_dir).values())


class PeakMemory:
    """The highest pss_mib() seen, sampled every 0.2 s in a thread while the block runs."""

    def __init__(self, pid: int, data_dir: Path | None = None) -> None:
        self.pid, self.data_dir, self.mib = pid, data_dir, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.mib = max(self.mib, pss_mib(self.pid, self.data_dir))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def profiled(pid: int, label: str) -> Iterator[None]:
    """With PERF_PROFILE=DIR in the environment, py-spy samples the daemon `pid` while the block runs and writes
    DIR/<label>.txt (collapsed stacks, one line per stack with its sample count: `sort -k2 -n` or a flame graph
    tool reads them); otherwise nothing. py-spy comes from PyPI (`pip install py-spy`) and needs ptrace."""
    out = os.environ.get("PERF_PROFILE")
    if not out:
        yield
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    target = Path(out) / f"{label}.txt"
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--output", str(target)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)  # py-spy attaches
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled on Ctrl-C
        _, err = spy.communicate(timeout=60)
        said = err.decode(errors="replace").strip().splitlines()
        print(f"profile of {label}: {target}" + (f" (py-spy: {said[-1]})" if said else ""), file=sys.stderr)
