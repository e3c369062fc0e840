"""Every benchmark's --quick smoke run, so that the scripts in perf/ cannot rot. Figures are not checked here
(that is what the full runs and perf/RESULTS.md are for), only that each runs end to end and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import repo_root
from tests.support.daemon import clean_env

PYDOCS = Path("/usr/share/doc/python3.11/html/index.html")
needs_docs = pytest.mark.skipif(
    not PYDOCS.exists(), reason="needs Debian's python3.11-doc (apt-get install python3.11-doc)"
)


def quick(module: str, tmp_path: Path) -> str:
    results = repo_root() / "perf" / "RESULTS.md"
    before = results.read_text()
    done = subprocess.run(
        [sys.executable, "-m", f"perf.{module}", "--quick"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(TMPDIR=str(tmp_path)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert results.read_text() == before, "--quick must not append to perf/RESULTS.md"
    return done.stdout


def test_bench_upload(tmp_path: Path) -> None:
    out = quick("bench_upload", tmp_path)
    assert "| peak growth |" in out, out


def test_bench_cache(tmp_path: Path) -> None:
    out = quick("bench_cache", tmp_path)
    assert "| threshold | hit rate |" in out and "| 0.92 |" in out


@needs_docs
def test_bench_retrieval(tmp_path: Path) -> None:
    out = quick("bench_retrieval", tmp_path)
    assert "| hybrid, rrf_k 20 (default) |" in out


@needs_docs
def test_bench_chat(tmp_path: Path) -> None:
    out = quick("bench_chat", tmp_path)
    assert "| pydocs-5k (" in out and "| off | 3 | 6/6 |" in out and "| on |" not in out, out
    assert "| synthetic-500 (500 chunks) | off | 3 | 6/6 |" in out, out


@needs_docs
def test_bench_ingest(tmp_path: Path) -> None:
    out = quick("bench_ingest", tmp_path)
    assert "| end to end / embedder alone |" in out
    assert "| embedder alone, the sentences prepared for answers (answer.prepare) |" in out
    assert "| end to end / embedder alone on chunks and sentences |" in out and "none prepared" not in out, out


@needs_docs
def test_bench_embed(tmp_path: Path) -> None:
    out = quick("bench_embed", tmp_path)
    assert "| fastembed default (batch 8, threads auto) |" in out and "| onnxruntime, graph opt all |" in out, out
    assert "Best: " in out


@needs_docs
def test_bench_vectors(tmp_path: Path) -> None:
    out = quick("bench_vectors", tmp_path)
    assert "| HNSW bits m16 + rerank 100 |" in out and "| exact scan of the tenant's rows" in out, out


@needs_docs
def test_soak(tmp_path: Path) -> None:
    out = quick("soak", tmp_path)
    assert "| lost (no `done` or `error`) | 0 |" in out and "| crawl job | succeeded" in out, out


@needs_docs
def test_bench_quality(tmp_path: Path) -> None:
    out = quick("bench_quality", tmp_path)
    assert "| **bitbd default** (`/v1/search`, `/v1/chat`) |" in out and "| plain RRF (BM25 + dense, k=60) |" in out
    assert "| top-3 ceiling: the fact anywhere in bitbd's top 3 hits |" in out, out


@needs_docs
def test_bench_fresh(tmp_path: Path) -> None:
    out = quick("bench_fresh", tmp_path)
    assert "| edit |" in out and "| delete |" in out and "| sitemap with lastmod | 0 | 0 / 0 |" in out, out


@needs_docs
def test_bench_search(tmp_path: Path) -> None:
    out = quick("bench_search", tmp_path)
    assert "| defaults | 2,000 | vector |" in out and "| defaults | 2,000 | hybrid |" in out, out
    assert "| PLUGINS__PGVECTOR__EXACT_BELOW=0 | 2,000 | vector |" in out, out
