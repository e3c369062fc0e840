"""The example third-party source, pip-installed for real, found through the entry-point group, used via the API."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.plugins import load_plugins
from bitbd.settings import PluginSettings, Settings
from bitbd.tenancy import KeySpec
from tests.conftest import AiohttpClient, repo_root
from tests.ingesting import ingest_settings, wait_job

EXAMPLE = repo_root() / "examples" / "bitbd-folder-source"


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", str(EXAMPLE)], check=True, timeout=300)
    importlib.invalidate_caches()
    yield
    subprocess.run([*pip, "uninstall", "-y", "bitbd-folder-source"], check=True, timeout=120)


async def test_pip_installed_folder_source(
    installed: None, aiohttp_client: AiohttpClient, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    plugins = load_plugins()
    info = {p.name: p for p in plugins.loaded()}["folder"]
    assert info.version == "0.1.0" and info.module == "bitbd_folder_source"

    docs = tmp_path / "handbook"
    (docs / "team").mkdir(parents=True)
    (docs / "holidays.md").write_text("# Holidays\n\nStaff get 28 days of paid leave a year, plus bank holidays.\n")
    (docs / "team" / "oncall.txt").write_text("On-call engineers answer pages within fifteen minutes, day or night.")
    (docs / "ignored.bin").write_bytes(b"\x00\x01")
    configured = ingest_settings(settings).model_copy(
        update={"plugins": PluginSettings.model_validate({"folder": {"roots": [str(docs)]}})}
    )
    client = await aiohttp_client(create_app(configured, plugins))
    await tenancy.create_tenant(pool, "acme")
    _, key = await tenancy.create_key(pool, "acme", KeySpec("secret"))
    auth = {"Authorization": f"Bearer {key}"}

    resp = await client.post("/v1/sources", json={"type": "folder", "path": "/etc"}, headers=auth)
    assert resp.status == 400 and "not below an allowed folder" in (await resp.json())["error"]["message"]

    resp = await client.post("/v1/sources", json={"type": "folder", "path": str(docs)}, headers=auth)
    assert resp.status == 202, await resp.text()
    job = await wait_job(client, key, (await resp.json())["job_id"])
    assert job["status"] == "succeeded", job
    urls = sorted(r["url"] for r in await pool.fetch("SELECT url FROM documents"))
    assert urls == [(docs / "holidays.md").as_uri(), (docs / "team" / "oncall.txt").as_uri()]
    assert await pool.fetchval("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL") >= 2
