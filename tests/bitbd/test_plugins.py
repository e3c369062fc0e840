"""Plugin loading through real entry points: good ones register, broken ones are skipped with a reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import asyncpg
import pytest

from bitbd.app import create_app
from bitbd.plugins import load_plugins, register
from bitbd.settings import Settings
from tests.conftest import AiohttpClient, builtin_plugins

MODULES = {
    "good_plugin": """
        from aiohttp import web
        from bitbd.hookspecs import hookimpl
        from bitbd.interfaces import Source

        class Feed(Source):
            type = "rss"

        @hookimpl
        def register_sources():
            return [Feed]

        async def ping(request):
            return web.json_response({"pong": True})

        @hookimpl
        def register_routes(app):
            app.router.add_get("/x/ping", ping)
    """,
    "broken_import": "raise ImportError('No module named feedparser')",
    "misspelled": """
        from bitbd.hookspecs import hookimpl

        @hookimpl
        def register_sourcez():
            return []
    """,
    "bad_signature": """
        from bitbd.hookspecs import hookimpl

        @hookimpl
        def register_routes(app, router):
            pass
    """,
    "routes_fail": """
        from bitbd.hookspecs import hookimpl

        @hookimpl
        def register_routes(app):
            raise RuntimeError("boom")
    """,
    "duplicate_source": """
        from bitbd.hookspecs import hookimpl
        from bitbd.interfaces import Source

        class OtherFeed(Source):
            type = "rss"

        @hookimpl
        def register_sources():
            return [OtherFeed]
    """,
}


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, source in MODULES.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def eps(*names: str) -> list[EntryPoint]:
    return [EntryPoint(name=n, value=n, group="bitbd") for n in names]


def test_good_plugins_load_and_broken_ones_are_skipped(plugin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugins = load_plugins(eps=eps("good_plugin", "broken_import", "misspelled", "bad_signature"))
    assert [p.name for p in plugins.loaded()] == ["good_plugin"]
    assert plugins.loaded()[0].hooks == ["register_routes", "register_sources"]
    assert "No module named feedparser" in plugins.skipped["broken_import"]
    assert "register_sourcez" in plugins.skipped["misspelled"]
    assert "router" in plugins.skipped["bad_signature"]
    skipped_logs = [r for r in caplog.records if r.getMessage() == "plugin skipped"]
    assert {r.__dict__["plugin"] for r in skipped_logs} == {"broken_import", "misspelled", "bad_signature"}
    assert list(plugins.sources()) == ["rss"]


def test_disabled_plugins_are_not_imported(plugin_dir: Path) -> None:
    plugins = load_plugins(disabled=["broken_import"], eps=eps("good_plugin", "broken_import"))
    assert [p.name for p in plugins.loaded()] == ["good_plugin"]
    assert plugins.skipped == {}


def test_first_plugin_keeps_a_component_name(plugin_dir: Path) -> None:
    plugins = load_plugins(eps=eps("good_plugin", "duplicate_source"))
    assert plugins.sources()["rss"].__name__ == "Feed"


async def test_plugin_routes_and_a_failing_plugin(
    plugin_dir: Path, aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    plugins = load_plugins(eps=eps("routes_fail", "good_plugin"))
    for name, plugin in builtin_plugins().pm.list_name_plugin():
        register(plugins, plugin, name)
    client = await aiohttp_client(create_app(settings, plugins))
    resp = await client.get("/x/ping")
    assert resp.status == 200 and await resp.json() == {"pong": True}
    assert "boom" in plugins.skipped["routes_fail"]


def test_builtins_come_through_the_entry_point_group() -> None:
    plugins = load_plugins()
    names = {p.name: p for p in plugins.loaded()}
    assert names["pgvector"].module == "bitbd_plugins.stores.pgvector"
    assert names["pgvector"].version not in ("", "-")
    assert "pgvector" in plugins.stores()


def test_cli_lists_plugins_and_survives_a_broken_installed_one(tmp_path: Path) -> None:
    """A third-party distribution found by importlib.metadata, as pip would install it."""
    site = tmp_path / "site"
    dist = site / "bitbd_broken-0.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bitbd-broken\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[bitbd]\nbroken = bitbd_broken\n")
    (site / "bitbd_broken.py").write_text("import feedparser_that_is_not_installed\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-m", "bitbd", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert "pgvector" in [p["name"] for p in listing["plugins"]]
    assert listing["skipped"][0]["name"] == "broken"
    assert "feedparser_that_is_not_installed" in listing["skipped"][0]["reason"]
    assert "plugin skipped" in result.stderr and "plugin=broken" in result.stderr
