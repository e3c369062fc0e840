"""Run `bitbd` as a real process for tests: start it, wait for it, talk HTTP to it, stop or kill it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil

from bitbd.embedded.datadir import SERVER_NAME
from tests.support.waiting import wait_until


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITBD_")}
    return {**env, **extra}


def bitbd(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bitbd", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env or clean_env(),
    )


class Daemon:
    """One `bitbd serve` process on a data dir. Without a `port` it listens on one the kernel picks (`--port 0`)
    and the URL is read from the server file it publishes: a port probed free and then handed to the process can
    be taken in between by another test's server or embedded Redis, and the test would then talk to that one."""

    def __init__(
        self, data_dir: Path, cwd: Path, *extra: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.data_dir, self.cwd, self.extra = data_dir, cwd, extra
        self.env = env or clean_env()
        self.asked_port = port or 0
        self.port = port or 0
        self.proc: subprocess.Popen[str] | None = None
        self.out = cwd / f"serve-{time.monotonic_ns()}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Daemon:
        self._out = open(self.out, "w")  # closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bitbd",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.asked_port),
                *self.extra,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.cwd,
            env=self.env,
        )
        if wait:
            self.wait_ready()
        return self

    def _published_port(self) -> int | None:
        """The port this process published in its data dir, once it listens."""
        assert self.proc is not None
        try:
            published = json.loads((self.data_dir / SERVER_NAME).read_text())
        except (OSError, ValueError):
            return None
        if published.get("pid") != self.proc.pid:
            return None  # a previous server's file, not yet replaced
        return int(urllib.parse.urlsplit(published["url"]).port or 0) or None

    def wait_ready(self, timeout: float = 90) -> None:
        """Until the server this process started answers /readyz with 200; fails at once if it exits."""

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bitbd serve exited {self.proc.returncode}:\n{self.output()}")
            port = self._published_port()
            if port is None:
                return False
            self.port = port
            return self.get("/readyz")[0] == 200

        wait_until(ready, f"bitbd serve ready\n{self.out}", timeout, ignoring=(OSError,))

    def output(self) -> str:
        return self.out.read_text()

    def children(self) -> list[psutil.Process]:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).children(recursive=True)

    def token(self) -> str:
        return (self.data_dir / "admin_token").read_text().strip()

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        return self.request("GET", path, token=token)

    def upload(self, key: str, name: str, data: bytes, content_type: str = "text/markdown") -> str:
        """POST /v1/uploads with one file, as multipart/form-data; the job's id."""
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        req = urllib.request.Request(
            self.url + "/v1/uploads",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            job_id: str = json.load(resp)["job_id"]
        return job_id

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._out.close()
        return code


def gone(procs: list[psutil.Process], timeout: float = 15) -> bool:
    """True once every process has exited (zombies reaped by init count as gone)."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return not alive


def start_worker(data_dir: Path, log: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    """`bitbd worker` (concurrency 2, no metrics port unless `extra` gives one), its log in `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bitbd",
                "worker",
                "--data-dir",
                str(data_dir),
                "--concurrency",
                "2",
                *(extra or ("--metrics-port", "0")),
            ],
            cwd=log.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def poll_job(daemon: Daemon, key: str, job_id: str, until: Any, seconds: float = 120) -> dict[str, Any]:
    """The job once `until(job)` is true, polled over GET /v1/jobs/{id}."""

    def reached() -> dict[str, Any] | None:
        job = daemon.get(f"/v1/jobs/{job_id}", token=key)[1]
        return dict(job) if until(job) else None

    return wait_until(reached, f"job {job_id} in the state wanted", seconds, every=0.2)


def finished(job: dict[str, Any]) -> bool:
    return job["status"] not in ("queued", "running")


def tenant_with_folder(daemon: Daemon, cwd: Path, docs: dict[str, str]) -> None:
    """Tenant `acme` holding `docs` (file name: Markdown), written to a folder and ingested with `bitbd ingest`
    against the running daemon."""
    folder = cwd / "docs"
    folder.mkdir()
    for name, text in docs.items():
        (folder / name).write_text(text)
    data = str(daemon.data_dir)
    assert bitbd("tenant", "create", "acme", "--data-dir", data, cwd=cwd).returncode == 0
    ingested = bitbd("ingest", "--tenant", "acme", "--data-dir", data, str(folder), cwd=cwd, timeout=180)
    assert ingested.returncode == 0, ingested.stderr


def tenant_with_document(daemon: Daemon, cwd: Path, env: dict[str, str], name: str, body: bytes) -> str:
    """Tenant `acme` with a secret key (returned) and one uploaded document, ingested."""
    data = str(daemon.data_dir)
    assert bitbd("tenant", "create", "acme", "--data-dir", data, cwd=cwd, env=env).returncode == 0
    key = bitbd("key", "create", "--tenant", "acme", "--data-dir", data, cwd=cwd, env=env).stdout.strip()
    assert poll_job(daemon, key, daemon.upload(key, name, body), finished)["status"] == "succeeded"
    return key
