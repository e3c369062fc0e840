"""Langfuse tracing against a stand-in on loopback that records what the SDK sends (OTLP/HTTP protobuf), and
against an unreachable host: traces with the right spans, no secrets in them, nothing slowed, one warning."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import SecretStr

from bitbd.app import create_app
from bitbd.client import exchange
from bitbd.embedded.redis import free_port
from bitbd.keys import answerer_key
from bitbd.settings import Settings
from bitbd.tracing import tracer
from tests.conftest import AiohttpClient, builtin_plugins
from tests.ingesting import Client, ingest_settings, wait_job
from tests.site import Site


class Recorder:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.auth: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        if request.path.endswith("/otel/v1/traces"):
            self.bodies.append(await request.read())
            self.auth.append(request.headers.get("Authorization", ""))
        return web.json_response({})

    def spans(self) -> list[tuple[str, dict[str, str]]]:
        out = []
        for body in self.bodies:
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for resource in req.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attrs = {
                            a.key: a.value.string_value or str(a.value.int_value or a.value.bool_value)
                            for a in span.attributes
                        }
                        out.append((span.name, attrs))
        return out


@pytest.fixture
async def langfuse() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield recorder, str(server.make_url("")).rstrip("/")
    await server.close()


def traced(settings: Settings, host: str, public: str) -> Settings:
    return settings.model_copy(
        update={
            "tracing": settings.tracing.model_copy(
                update={
                    "public_key": public,
                    "secret_key": SecretStr("sk-lf-test-secret"),
                    "host": host,
                    "timeout": 2.0,
                }
            )
        }
    )


async def crawl_and_ask(client: Client, key: str, url: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    resp = await client.post(
        "/v1/sources", json={"type": "web", "urls": [url], "max_depth": 0, "sitemap": False}, headers=auth
    )
    await wait_job(client, key, (await resp.json())["job_id"])
    async with client.ws_connect("/v1/chat", headers=auth) as ws:
        assert (await exchange(ws, "q", "How do volcanoes erupt?")).ok


async def test_jobs_and_questions_become_traces(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    acme_key: str,
    site: tuple[Site, str],
    langfuse: tuple[Recorder, str],
) -> None:
    key = acme_key
    recorder, host = langfuse
    config = traced(ingest_settings(settings), host, "pk-lf-record")
    client = await aiohttp_client(create_app(config, builtin_plugins()))
    await crawl_and_ask(client, key, f"{site[1]}/volcanoes")
    expected = ("question", "retrieve", "generate", "page", "fetch", "chunk", "embed", "store", "job finished")
    for _ in range(20):  # spans are exported in batches by a background thread: flush until all have arrived
        await asyncio.to_thread(tracer(config).flush)  # the exporter thread talks to the stand-in on this loop
        spans = recorder.spans()
        names = [name for name, _ in spans]
        if set(expected) <= set(names):
            break
        await asyncio.sleep(0.5)
    for name in expected:
        assert name in names, f"no {name!r} span in {names}"
    attrs = {name: a for name, a in spans}
    meta = "langfuse.observation.metadata."
    assert attrs["retrieve"][meta + "cached"] == "false" and attrs["retrieve"][meta + "hits"] == "1"
    assert attrs["generate"][meta + "generator"] == '"extractive"' and attrs["generate"][meta + "citations"] == "1"
    assert "Volcanoes erupt" in attrs["generate"]["langfuse.observation.output"]
    assert attrs["embed"][meta + "model"] == '"fastembed:bitbd/all-MiniLM-L6-v2-int8"'
    assert attrs["embed"][meta + "new"] == "1"
    assert "volcanoes" in attrs["page"].get("langfuse.observation.input", "")
    assert recorder.auth[0].startswith("Basic ")
    sent = b"".join(recorder.bodies)
    assert key.encode() not in sent and b"sk-lf-test-secret" not in sent and b"adm_" not in sent


async def test_an_unreachable_langfuse_slows_nothing_and_warns_once(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    acme_key: str,
    site: tuple[Site, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = acme_key
    config = traced(ingest_settings(settings), f"http://127.0.0.1:{free_port()}", "pk-lf-nowhere")
    client = await aiohttp_client(create_app(config, builtin_plugins()))
    caplog.set_level(logging.WARNING, logger="bitbd")
    started = time.monotonic()
    await crawl_and_ask(client, key, f"{site[1]}/volcanoes")
    assert time.monotonic() - started < 30
    flushed = time.monotonic()
    await asyncio.to_thread(tracer(config).flush)
    assert time.monotonic() - flushed < 10
    await asyncio.to_thread(tracer(config).flush)
    warnings = [r for r in caplog.records if "Langfuse unreachable" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert client.app[answerer_key].tracer.enabled


def test_without_keys_tracing_is_off_and_silent(
    settings: Settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST", "LANGFUSE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO, logger="bitbd")
    off = tracer(settings)
    assert not off.enabled
    with off.span("question") as span:
        span.update(output="nothing happens")
    assert not caplog.records
    half: Any = settings.model_copy(update={"tracing": settings.tracing.model_copy(update={"public_key": "pk-only"})})
    assert not tracer(half).enabled
    assert "secret key and host is not set" in caplog.text
