"""Outside tools against a real `bitbd serve` and the deploy files: `promtool check metrics` on a live /metrics,
`promtool check rules|config` and `promtool test rules` on deploy/prometheus, openapi-spec-validator on the
served /openapi.yaml, and a chat client written with the `websockets` library from docs/protocol.md alone.

A missing tool skips its test with the reason, except in CI (CI=true), where it fails: CI installs them all."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import yaml

from bitbd.embedded.redis import free_port
from bitbd.settings import Settings
from tests.conftest import repo_root
from tests.support.daemon import Daemon, bitbd, clean_env, finished, poll_job, start_worker

PROMETHEUS = repo_root() / "deploy" / "prometheus"
IN_CI = os.environ.get("CI") == "true"
RETURNS = (
    "# Returns and refunds\n\nYou can return any item within 30 days of delivery for a full refund. "
    "Refunds go back to the card you paid with within five working days.\n\n## Exchanges\n\n"
    "Exchanges for another size are free; send the item back with the form from your order page.\n"
)


def missing(what: str, install: str) -> None:
    message = f"{what} is not installed ({install})"
    if IN_CI:
        pytest.fail(message + "; CI must have it")
    pytest.skip(message)


def tool(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(name, install)
    assert path is not None
    return path


def module(name: str, install: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the Python package {name}", install)
        raise


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    """A real daemon with one indexed document for tenant `tools`, its secret key, and some requests served."""
    root = tmp_path_factory.mktemp("tools")
    env = clean_env()
    d = Daemon(root / "data", root, env=env).start()
    bitbd("tenant", "create", "tools", "--data-dir", str(d.data_dir), cwd=root, env=env)
    key = bitbd("key", "create", "--tenant", "tools", "--data-dir", str(d.data_dir), cwd=root, env=env).stdout.strip()
    job = poll_job(d, key, d.upload(key, "returns.md", RETURNS.encode()), finished)
    assert job["status"] == "succeeded", job
    d.request("POST", "/v1/search", {"query": "refund"}, token=key)
    d.get("/v1/no-such-route")
    d.get("/healthz")
    yield d, key
    d.stop()


def test_promtool_check_metrics_finds_nothing_in_a_live_metrics_page(served: tuple[Daemon, str]) -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    d, key = served
    asyncio.run(_ask(d, key, "How do I return an item?"))  # so the answer metrics have samples too
    with urllib.request.urlopen(d.url + "/metrics", timeout=10) as r:
        text = r.read()
    assert b"bitbd_rag_queries_total" in text and b"bitbd_http_requests_total" in text
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    ).decode()


def test_promtool_check_metrics_finds_nothing_in_a_workers_metrics_page(served: tuple[Daemon, str]) -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    d, _ = served
    port = free_port()
    worker = start_worker(d.data_dir, d.cwd / "worker.log", clean_env(), "--metrics-port", str(port))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read()
                break
            except OSError:
                assert worker.poll() is None and time.monotonic() < deadline, (d.cwd / "worker.log").read_text()
                time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(30)
    assert b"bitbd_queue_jobs_total" in text
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr
    ).decode()


def test_promtool_checks_the_rules_the_config_and_the_rule_tests() -> None:
    promtool = tool("promtool", "apt-get install prometheus")
    for args in (
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
        assert "SUCCESS" in done.stdout + done.stderr


def _served_document(d: Daemon) -> dict[str, Any]:
    with urllib.request.urlopen(d.url + "/openapi.yaml", timeout=10) as r:
        document: dict[str, Any] = yaml.safe_load(r.read())
    return document


def test_openapi_spec_validator_accepts_the_served_document(served: tuple[Daemon, str]) -> None:
    validator = module("openapi_spec_validator", "pip install openapi-spec-validator")
    document = _served_document(served[0])
    assert document["openapi"].startswith("3.1")
    validator.validate(document)  # raises with the first problem it finds


def test_the_served_documents_server_is_the_default_bitbd_serve_address(served: tuple[Daemon, str]) -> None:
    defaults = Settings().server
    urls = [s["url"] for s in _served_document(served[0])["servers"]]
    assert urls[0] == f"http://{defaults.host}:{defaults.port}", urls


# The chat, written from docs/protocol.md with the `websockets` library (not the aiohttp client the server uses).


async def _ask(d: Daemon, key: str, question: str) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(d.url.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}) as ws,
    ):
        await ws.send_json({"type": "ask", "id": "m1", "question": question})
        async for msg in ws:
            if json.loads(msg.data)["type"] in ("done", "error"):
                return


async def _frames_until(ws: Any, last: set[str], qid: str) -> list[dict[str, Any]]:
    """Every message for `qid` up to and including one whose type is in `last`; each a JSON object in a text frame."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        while True:
            raw = await ws.recv()
            assert isinstance(raw, str), "every message is JSON in a text frame"
            event = json.loads(raw)
            assert isinstance(event, dict)
            if event.get("id") == qid:
                out.append(event)
                if event["type"] in last:
                    return out


def _check_answer(frames: list[dict[str, Any]], qid: str) -> dict[str, Any]:
    """The order and fields docs/protocol.md promises: deltas, then citations, then done."""
    types = [f["type"] for f in frames]
    assert types[-2:] == ["citations", "done"] and set(types[:-2]) == {"delta"}, types
    for f in frames[:-2]:
        assert set(f) == {"type", "id", "text"} and f["id"] == qid and isinstance(f["text"], str), f
    answer = "".join(f["text"] for f in frames[:-2])
    citations, done = frames[-2], frames[-1]
    assert set(citations) == {"type", "id", "sources"} and isinstance(citations["sources"], list), citations
    numbers = set()
    for source in citations["sources"]:
        assert set(source) == {"n", "url", "title", "snippet"}, source
        assert isinstance(source["n"], int) and all(isinstance(source[k], str) for k in ("url", "title", "snippet"))
        numbers.add(source["n"])
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer)}
    assert cited <= numbers, f"markers {cited} name sources not in citations {numbers}"
    assert {"type", "id", "conversation_id", "cached", "timings_ms"} <= set(done), done
    assert isinstance(done["conversation_id"], str) and isinstance(done["cached"], bool)
    timings = done["timings_ms"]
    assert {"retrieve", "generate", "total"} <= set(timings), timings
    assert all(isinstance(timings[k], int | float) and timings[k] >= 0 for k in ("retrieve", "generate", "total"))
    return {"answer": answer, "sources": citations["sources"], "done": done}


def test_a_websockets_client_following_the_protocol_document(served: tuple[Daemon, str]) -> None:
    ws_client = module("websockets.asyncio.client", "pip install websockets")
    exceptions = module("websockets.exceptions", "pip install websockets")
    d, key = served
    url = d.url.replace("http://", "ws://") + "/v1/chat"
    status, made = d.request(
        "POST", "/v1/admin/tenants/tools/keys", {"kind": "public", "origins": ["https://shop.example"]}, token=d.token()
    )
    assert status == 201, made
    public = made["key"]

    async def conversation() -> None:
        # "a server (backend, script)": Authorization: Bearer sk_…
        async with ws_client.connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            await ws.send(json.dumps({"type": "ask", "id": "c1", "question": "How do I return an item?"}))
            first = _check_answer(await _frames_until(ws, {"done", "error"}, "c1"), "c1")
            assert "30 days" in first["answer"] and first["sources"], first
            assert any("returns.md" in s["url"] for s in first["sources"]), first["sources"]

            # conversation_id from an earlier done: the follow-up joins that conversation.
            conversation_id = first["done"]["conversation_id"]
            await ws.send(
                json.dumps(
                    {
                        "type": "ask",
                        "id": "c2",
                        "question": "and what about exchanges?",
                        "conversation_id": conversation_id,
                    }
                )
            )
            second = _check_answer(await _frames_until(ws, {"done", "error"}, "c2"), "c2")
            assert second["done"]["conversation_id"] == conversation_id

            # {"type": "ping", "id": "p1"} answered by {"type": "pong", "id": "p1"}
            await ws.send(json.dumps({"type": "ping", "id": "p1"}))
            assert await _frames_until(ws, {"pong"}, "p1") == [{"type": "pong", "id": "p1"}]

            # An error: {"type": "error", "id", "code", "message"}, and the connection stays open.
            await ws.send(json.dumps({"type": "ask", "id": "c3", "question": "x" * 2001}))
            [error] = await _frames_until(ws, {"error"}, "c3")
            assert set(error) == {"type", "id", "code", "message"} and error["code"] == "question_too_long", error
            await ws.send(json.dumps({"type": "ping", "id": "p2"}))
            assert await _frames_until(ws, {"pong"}, "p2") == [{"type": "pong", "id": "p2"}]

        # A refused connection: the handshake succeeds, one error message, then close code 4401.
        for headers, where in (({"Authorization": "Bearer sk_not_a_real_key"}, ""), ({}, f"?key={key}")):
            async with ws_client.connect(url + where, additional_headers=headers) as ws:
                refusal = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert refusal["type"] == "error" and refusal["code"] == "unauthorized" and refusal["message"]
                assert refusal["id"] is None, refusal
                with pytest.raises(exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                assert ws.close_code == 4401, (where, ws.close_code)

        # A public key from an origin it is not bound to: origin_not_allowed, then 4403.
        async with ws_client.connect(f"{url}?key={public}", origin="https://elsewhere.example") as ws:
            refusal = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert refusal["type"] == "error" and refusal["code"] == "origin_not_allowed", refusal
            with pytest.raises(exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4403
        # ... and from its own origin ("a browser (the widget)"), an answer.
        async with ws_client.connect(f"{url}?key={public}", origin="https://shop.example") as ws:
            await ws.send(json.dumps({"type": "ask", "id": "w1", "question": "How long do refunds take?"}))
            _check_answer(await _frames_until(ws, {"done", "error"}, "w1"), "w1")

    asyncio.run(conversation())
