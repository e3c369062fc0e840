"""The plugin boundary: plugins import only `bitbd.plugin_api`, core names no plugin, components are built one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import FormData

import bitbd.plugin_api as api
from bitbd import tenancy
from bitbd.answer.service import Answerer
from bitbd.app import create_app
from bitbd.errors import ConfigError
from bitbd.plugin_api import PluginContext, Source, hookimpl
from bitbd.settings import Settings
from bitbd.tenancy import KeySpec
from bitbd_plugins.embedders.fastembed import FastEmbedder
from bitbd_plugins.sources.upload import UploadSource
from bitbd_plugins.stores.pgvector import PgVectorStore
from tests.conftest import AiohttpClient, builtin_plugins, repo_root

ROOT = repo_root()


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (function-level imports too), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def python_files(*dirs: str) -> list[Path]:
    files = [p for d in dirs for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 5, f"no Python files found under {dirs}"
    return files


def test_plugins_and_examples_import_only_the_plugin_api() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files("plugins", "examples")
        for line, module in imports(path)
        if (module == "bitbd" or module.startswith("bitbd.")) and module != "bitbd.plugin_api"
    ]
    assert wrong == [], "plugins may import only bitbd.plugin_api from bitbd:\n" + "\n".join(wrong)


def test_core_imports_no_plugin_and_no_textual() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files("bitbd")
        for line, module in imports(path)
        if module.split(".")[0] in ("bitbd_plugins", "bitbd_tui", "textual")
    ]
    assert wrong == [], "the core names no plugin and runs without textual:\n" + "\n".join(wrong)


def test_the_plugin_api_loads_no_part_of_the_server() -> None:
    code = (
        "import sys, bitbd.plugin_api; "
        "print(sorted(m for m in sys.modules if m.startswith(('bitbd.http', 'bitbd.jobs', 'bitbd.app', "
        "'bitbd.answer.service', 'bitbd.cli', 'bitbd_plugins'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_name_the_plugin_api_promises_is_there() -> None:
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []
    for kind in (api.Source, api.Embedder, api.VectorStore, api.AnswerGenerator, api.Reranker):
        assert issubclass(kind, api.Component), kind


def test_build_names_the_setting_and_what_is_installed() -> None:
    plugins = builtin_plugins()
    settings = Settings(plugins={"extractive": {"max_sentences": 2}})
    generator = plugins.build("generator", "extractive", settings)
    assert generator.ctx.name == "extractive" and generator.ctx.config == {"max_sentences": 2}
    with pytest.raises(ConfigError, match=r"answer generator 'gpt' is not installed; installed: extractive, openai"):
        plugins.build("generator", "gpt", settings)
    with pytest.raises(ConfigError, match=r"\(answer\.fallback\)"):
        plugins.build("generator", "gpt", settings, setting="answer.fallback")
    with pytest.raises(ConfigError, match=r"\[plugins\.extractive\].*max_sentences"):
        plugins.build("generator", "extractive", Settings(plugins={"extractive": {"max_sentences": 0}}))


async def test_the_fallback_generator_is_a_setting(service_settings: Settings, pool: asyncpg.Pool) -> None:
    redis = aioredis.Redis.from_url(service_settings.redis.url.get_secret_value())
    plugins = builtin_plugins()
    plugins.pm.unregister(name="extractive")
    embedder = FastEmbedder(PluginContext("fastembed"))
    store = PgVectorStore(PluginContext("pgvector", pool=pool))
    with pytest.raises(ConfigError, match=r"answer generator 'extractive' is not installed.*\(answer\.generator\)"):
        Answerer.create(service_settings, pool, redis, plugins, embedder, store)
    llm_only = service_settings.model_copy(
        update={"answer": service_settings.answer.model_copy(update={"generator": "openai"})}
    )
    with pytest.raises(ConfigError, match=r"\(answer\.fallback\)"):
        Answerer.create(llm_only, pool, redis, plugins, embedder, store)
    no_fallback = llm_only.model_copy(update={"answer": llm_only.answer.model_copy(update={"fallback": "openai"})})
    answerer = Answerer.create(no_fallback, pool, redis, plugins, embedder, store)
    assert answerer.generator.name == answerer.fallback.name == "openai"
    await answerer.generator.close()
    await redis.aclose()


class Files(UploadSource):
    """A third party's upload source under its own type name, in place of the built-in one."""

    type = "files"


class FilesPlugin:
    @hookimpl
    def register_sources(self) -> list[type[Source]]:
        return [Files]


async def test_uploads_go_to_whichever_source_takes_them(
    aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    headers = {"Authorization": f"Bearer {key}"}

    def form() -> FormData:
        data = FormData()
        data.add_field("file", b"# Returns\n\nRefunds take five days.\n", filename="refunds.md")
        return data

    none = builtin_plugins()
    none.pm.unregister(name="upload")
    client = await aiohttp_client(create_app(settings, none))
    before = await pool.fetchval("SELECT count(*) FROM uploads")
    resp = await client.post("/v1/uploads", data=form(), headers=headers)
    assert resp.status == 503, await resp.text()
    assert "no installed source type takes uploads" in (await resp.json())["error"]["message"]
    assert await pool.fetchval("SELECT count(*) FROM uploads") == before

    other = builtin_plugins()
    other.pm.unregister(name="upload")
    other.pm.register(FilesPlugin(), name="files")
    client = await aiohttp_client(create_app(settings, other))
    resp = await client.post("/v1/uploads", data=form(), headers=headers)
    assert resp.status == 202, await resp.text()
    source_id = (await resp.json())["source_id"]
    assert await pool.fetchval("SELECT type FROM sources WHERE id = $1", source_id) == "files"
    resp = await client.post("/v1/sources", json={"type": "files", "urls": ["https://example.com/"]}, headers=headers)
    assert resp.status == 400 and "files go to POST /v1/uploads" in (await resp.json())["error"]["message"]
