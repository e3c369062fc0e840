"""Every example plugin in docs/plugin_hooks.md, loaded as a third party would write it, registered, and run."""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import numpy as np
import pytest

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.errors import ConfigError, InvalidRequest, PluginError
from bitbd.interfaces import Hit, Passage, Previous
from bitbd.plugin_api import PluginContext, SourceContext
from bitbd.plugins import register
from bitbd.settings import Settings
from bitbd_plugins.stores.pgvector import PgVectorStore
from tests.bitbd_plugins.stores.test_pgvector import chunks, document, unit, write
from tests.conftest import AiohttpClient, builtin_plugins, repo_root

EXAMPLE = re.compile(r"```python\n# example: (\w+)\n(.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    found = dict(EXAMPLE.findall((repo_root() / "docs" / "plugin_hooks.md").read_text()))
    assert len(found) == 6, sorted(found)
    return found


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    folder = tmp_path_factory.mktemp("third_party")
    loaded = {}
    for name, code in examples().items():
        path = Path(folder) / f"{name}.py"
        path.write_text(code)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded[name] = module
    return loaded


def test_every_example_imports_only_the_plugin_api_from_bitbd() -> None:
    for name, code in examples().items():
        used = set(re.findall(r"^(?:from|import) (bitbd[\w.]*)", code, re.MULTILINE))
        assert used == {"bitbd.plugin_api"}, (name, used)


def test_every_example_registers_without_being_skipped(modules: dict[str, ModuleType]) -> None:
    plugins = builtin_plugins()
    for name, module in modules.items():
        register(plugins, module, name)
    assert plugins.skipped == {}
    assert "notes" in plugins.sources() and "hashing" in plugins.embedders() and "exact" in plugins.stores()
    assert "lead" in plugins.generators() and "headings" in plugins.rerankers()


async def test_the_source_example(modules: dict[str, ModuleType]) -> None:
    cls = modules["bitbd_notes"].NotesSource
    with pytest.raises(InvalidRequest, match="notes"):
        cls.validate({"notes": []}, Settings())
    config = cls.validate({"notes": ["Refunds take five days.", "Shipping is free."]}, Settings())
    ctx = SourceContext("notes", tenant_id=uuid.uuid4(), source_id=uuid.uuid4(), source=config)
    source = cls(ctx)
    assert await source.seeds() == ["note:0", "note:1"]
    first = await source.fetch("note:0", None)
    assert first.text == "Refunds take five days." and first.title == "Note 1"
    again = await source.fetch("note:0", Previous(None, None, first.content_hash))
    assert again.unchanged
    assert cls.prunes and not cls.uploads


async def test_the_embedder_example(modules: dict[str, ModuleType]) -> None:
    plugins = builtin_plugins()
    register(plugins, modules["bitbd_hashing"], "bitbd_hashing")
    settings = Settings(plugins={"hashing": {"dimension": 32}})
    embedder = plugins.build("embedder", "hashing", settings)
    vectors = await embedder.embed(["refund policy", "refund policy", "shipping"])
    assert embedder.dimension == 32 and vectors[0].shape == (32,)
    assert abs(float(np.linalg.norm(vectors[0])) - 1.0) < 1e-6
    assert float(vectors[0] @ vectors[1]) > 0.999 > float(vectors[0] @ vectors[2])
    with pytest.raises(ConfigError, match=r"\[plugins\.hashing\].*dimension"):
        plugins.build("embedder", "hashing", Settings(plugins={"hashing": {"dimension": 1}}))


async def test_the_store_example(modules: dict[str, ModuleType], pool: asyncpg.Pool) -> None:
    store = modules["bitbd_exact_store"].ExactStore(PluginContext("exact", pool=pool))
    await store.check(384)
    with pytest.raises(PluginError, match=r"768-d vectors, and chunks.embedding is vector\(384\)"):
        await store.check(768)
    acme = await tenancy.create_tenant(pool, "acme")
    globex = await tenancy.create_tenant(pool, "globex")
    await write(pool, acme.id, await document(pool, acme.id, "https://acme.example/"), chunks(*range(40)))
    await write(pool, globex.id, await document(pool, globex.id, "https://globex.example/"), chunks(*range(40)))
    builtin = PgVectorStore(PluginContext("pgvector", config={"index": "exact"}, pool=pool))
    hits = await store.search(acme.id, unit(7), 5)
    assert [h.text for h in hits] == [h.text for h in await builtin.search(acme.id, unit(7), 5)]
    assert hits[0].text == "text 7" and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert {h.url for h in hits} == {"https://acme.example/"}, "never another tenant's chunks"


async def test_the_generator_example(modules: dict[str, ModuleType]) -> None:
    generator = modules["bitbd_lead"].LeadGenerator(PluginContext("lead", config={"sentences": 1}))
    hit = Hit(1, uuid.uuid4(), "https://example.com/refunds", "Refunds", "Refunds", "Refunds take 5 days. Ask us.", 1)
    pieces = [piece async for piece in generator.generate("how long do refunds take", [Passage(1, hit)])]
    assert "".join(pieces) == "Refunds take 5 days. [1]"
    nothing = [piece async for piece in generator.generate("anything", [])]
    assert nothing == [Settings().answer.dont_know]


async def test_the_reranker_example(modules: dict[str, ModuleType]) -> None:
    reranker = modules["bitbd_heading_rerank"].HeadingReranker(PluginContext("headings"))

    def hit(heading: str) -> Hit:
        return Hit(0, uuid.uuid4(), "u", "t", heading, "text", 1.0)

    hits = [hit("Shipping"), hit("Refund policy"), hit("Contact")]
    ordered = await reranker.rerank("refund policy", hits)
    assert [h.heading for h in ordered] == ["Refund policy", "Shipping", "Contact"]


async def test_the_route_example(
    modules: dict[str, ModuleType], aiohttp_client: AiohttpClient, settings: Settings, pool: Any
) -> None:
    plugins = builtin_plugins()
    register(plugins, modules["bitbd_hello_route"], "bitbd_hello_route")
    client = await aiohttp_client(create_app(settings, plugins))
    resp = await client.get("/x/hello")
    assert resp.status == 200 and await resp.json() == {"hello": "world"}
