"""Switching embedding models: nothing of the old model is reused; `POST /v1/reembed` re-embeds the corpus."""

from __future__ import annotations

import asyncpg

from bitbd.app import create_app
from bitbd.plugin_api import PluginContext
from bitbd.settings import PluginSettings, Settings
from bitbd_plugins.embedders.fastembed import FastEmbedder
from tests.conftest import AiohttpClient, builtin_plugins
from tests.ingesting import Client, ingest_settings, wait_job
from tests.site import Site


async def test_model_switch_reembeds_everything(
    ingest: tuple[Client, str],
    site: tuple[Site, str],
    aiohttp_client: AiohttpClient,
    settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    client, key = ingest
    _, base = site
    auth = {"Authorization": f"Bearer {key}"}
    resp = await client.post(
        "/v1/sources",
        json={"type": "web", "urls": [base + "/volcanoes"], "max_depth": 0, "sitemap": False},
        headers=auth,
    )
    first = await wait_job(client, key, (await resp.json())["job_id"])
    assert first["status"] == "succeeded"
    chunks = first["progress"]["chunks_embedded"]
    assert await pool.fetchval("SELECT embedding_model FROM documents") == "fastembed:bitbd/all-MiniLM-L6-v2-int8"

    await client.close()  # its workers (old model) must not take the new jobs
    # The same ONNX files under another model name stand in for a different model of the same dimension.
    model_dir = FastEmbedder(PluginContext("fastembed")).model_dir()
    other = ingest_settings(settings).model_copy(
        update={
            "plugins": PluginSettings.model_validate(
                {"fastembed": {"model": "local/other-minilm", "model_path": str(model_dir)}}
            )
        }
    )
    switched = await aiohttp_client(create_app(other, builtin_plugins()))
    resp = await switched.post("/v1/reembed", headers=auth)
    assert resp.status == 202
    jobs = (await resp.json())["jobs"]
    assert len(jobs) == 1
    again = await wait_job(switched, key, jobs[0]["job_id"])
    assert again["status"] == "succeeded"
    assert again["progress"]["chunks_embedded"] == chunks, "every chunk embedded again, none reused"
    assert await pool.fetchval("SELECT embedding_model FROM documents") == "fastembed:local/other-minilm"

    resp = await switched.post("/v1/reembed", headers=auth)
    settled = await wait_job(switched, key, (await resp.json())["jobs"][0]["job_id"])
    assert settled["progress"]["chunks_embedded"] == 0, "once re-embedded, a re-run is a plain re-crawl"
