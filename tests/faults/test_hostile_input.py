"""Hostile clients against a real `bitbd serve` on loopback: property-based garbage over the WebSocket protocol
and every HTTP route, slow (slowloris-style) heads and bodies. Never a 500 or an `internal` error, never a hung
connection; every refusal says what was wrong; the server stays up and its memory bounded."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitbd.http.chat import _MAX_ID
from tests.bitbd.cli.daemon import Daemon, bitbd, clean_env

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    root = tmp_path_factory.mktemp("hostile")
    env = clean_env(BITBD_SERVER__KEEPALIVE_TIMEOUT="2", BITBD_SERVER__BODY_TIMEOUT="2",
                    BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0")
    d = Daemon(root / "data", root, env=env).start()
    bitbd("tenant", "create", "acme", "--data-dir", str(d.data_dir), cwd=root, env=env)
    key = bitbd("key", "create", "--tenant", "acme", "--data-dir", str(d.data_dir), cwd=root, env=env).stdout.strip()
    yield d, key
    d.stop()
    assert "Traceback" not in d.output(), d.output()[-3000:]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=4), max_leaves=12)
MISSING = object()
ASK = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["ask", "ping", "ASK", "", "bye"]) | JSON,
    "id": st.text(min_size=0, max_size=80) | JSON,
    "question": st.text(max_size=300) | JSON,
    "conversation_id": st.sampled_from([str(uuid.uuid4()), "not-a-uuid", ""]) | JSON,
    "extra": JSON,
})
FRAMES = st.one_of(st.text(max_size=200), JSON.map(json.dumps), ASK.map(json.dumps),
                   st.binary(max_size=100))


async def exchange(url: str, key: str, frame: str | bytes) -> list[dict[str, Any]]:
    """Send one frame, then a ping; collect events until the pong: the frame was answered and the socket lives."""
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(
            url.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {key}"}) as ws:
        await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        await ws.send_json({"type": "ping", "id": "last-ping"})
        async with asyncio.timeout(20):
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed: {msg.type} {msg.data} {msg.extra}"
                event = json.loads(msg.data)
                events.append(event)
                # The pong may come before or after a valid ask's done/error (the ask runs in its own task).
                if {"type": "pong", "id": "last-ping"} in events and _settled(events, frame):
                    return events
    raise AssertionError(f"no pong: {events}")


def _settled(events: list[dict[str, Any]], frame: str | bytes) -> bool:
    """A valid ask is answered after the ping's pong; wait for its done or error too."""
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return True
    if not (isinstance(message, dict) and message.get("type") == "ask" and isinstance(message.get("id"), str)
            and 0 < len(message["id"]) <= _MAX_ID):
        return True  # answered (pong or error) before the ping's pong: messages are handled in order
    return any(e["type"] in ("done", "error") and e.get("id") == message["id"] for e in events)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=FRAMES)
def test_any_websocket_frame_gets_a_specific_answer_and_the_socket_lives(daemon: tuple[Daemon, str],
                                                                        frame: str | bytes) -> None:
    d, key = daemon
    events = asyncio.run(exchange(d.url, key, frame))
    for event in events:
        assert event["type"] in ("pong", "error", "delta", "sources", "done", "cached"), event
        if event["type"] == "error":
            assert event["code"] != "internal" and len(event["message"]) > 10, event


ROUTES = [("POST", "/v1/sources"), ("POST", "/v1/sources/{id}/crawl"), ("POST", "/v1/reembed"),
          ("GET", "/v1/sources"), ("DELETE", "/v1/sources/{id}"), ("POST", "/v1/uploads"), ("GET", "/v1/jobs/{id}"),
          ("GET", "/v1/jobs"), ("POST", "/v1/jobs/{id}/cancel"), ("GET", "/v1/documents"),
          ("DELETE", "/v1/documents/{id}"), ("POST", "/v1/search"), ("POST", "/v1/admin/tenants"),
          ("GET", "/v1/admin/tenants/{id}"), ("DELETE", "/v1/admin/tenants/{id}"),
          ("POST", "/v1/admin/tenants/{id}/keys"), ("DELETE", "/v1/admin/tenants/{id}/keys/{id}"),
          ("GET", "/v1/admin/jobs"), ("GET", "/v1/admin/jobs/{id}"), ("POST", "/v1/admin/jobs/{id}/retry"),
          ("GET", "/v1/admin/questions"), ("GET", "/v1/admin/stats"), ("GET", "/v1/nowhere/{id}")]
SEGMENT = st.sampled_from([str(uuid.uuid4()), "acme", "x" * 300, "%00", "..", "' OR 1=1 --", "😀"]) | \
    st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/?#"), min_size=1, max_size=40)
QUERY = st.dictionaries(st.sampled_from(["limit", "offset", "status", "tenant", "q", "priority"]),
                        st.text(max_size=20) | st.integers().map(str), max_size=3)
BODY = st.one_of(JSON.map(lambda v: ("application/json", json.dumps(v).encode())),
                 st.binary(max_size=200).map(lambda b: ("application/json", b)),
                 st.binary(max_size=200).map(lambda b: ("text/plain", b)),
                 st.just(("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; "
                          b'name="file"; filename="../../etc/passwd"\r\n\r\nroot\r\n--x--\r\n')))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), segments=st.lists(SEGMENT, min_size=2, max_size=2), query=QUERY,
       body=BODY, auth=st.sampled_from(["key", "admin", "garbage", "none"]))
def test_any_http_request_gets_a_json_error_or_success_never_a_500(
        daemon: tuple[Daemon, str], route: tuple[str, str], segments: list[str], query: dict[str, str],
        body: tuple[str, bytes], auth: str) -> None:
    d, key = daemon
    method, pattern = route
    path = pattern.replace("{id}", "%s") % tuple(segments[: pattern.count("{id}")])
    token = {"key": key, "admin": d.token(), "garbage": "sk_" + segments[0].encode().hex()[:43], "none": ""}[auth]
    headers = {"Content-Type": body[0], **({"Authorization": f"Bearer {token}"} if token else {})}

    async def call() -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.request(
                method, d.url + path, params=query, data=body[1], headers=headers,
                timeout=aiohttp.ClientTimeout(total=20)) as r:
            return r.status, await r.text()

    try:
        status, text = asyncio.run(call())
    except aiohttp.InvalidURL:
        return  # the client refused to send it
    assert status < 500, (method, path, status, text)
    if status >= 400:
        error = json.loads(text)["error"]
        assert error["code"] and len(error["message"]) > 10, text


def test_a_nul_in_the_url_is_refused_by_name(daemon: tuple[Daemon, str]) -> None:
    # Found by the property test above: /v1/admin/tenants/%00 reached PostgreSQL, which cannot store a NUL (500).
    d, key = daemon
    for path, token, said in [("/v1/admin/tenants/%00", d.token(), "URL path"),
                              ("/v1/admin/tenants/acme%00/keys", d.token(), "URL path"),
                              ("/v1/jobs?status=run%00ning", key, "'status'"),
                              ("/v1/chat?tenant=%00", d.token(), "'tenant'")]:
        status, body = d.get(path, token)
        assert status == 400 and body["error"]["code"] == "invalid_request", (path, body)
        assert "NUL" in body["error"]["message"] and said in body["error"]["message"], (path, body)


def test_a_slowloris_head_is_cut_off(daemon: tuple[Daemon, str]) -> None:
    d, _ = daemon
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        s.settimeout(0.5)
        closed = False
        while time.monotonic() - started < 15:
            try:
                s.sendall(b"X-Slow: 1\r\n")
                if s.recv(100) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed, "a head sent one line at a time must be cut off"
        assert time.monotonic() - started < 6, "within server.keepalive_timeout (2 s here), not minutes"
    assert d.get("/healthz")[0] == 200


def fresh_key(d: Daemon) -> str:
    """A live secret key of a tenant the fuzzing above cannot have deleted (it may well have deleted `acme`)."""
    name = f"after-{uuid.uuid4().hex[:8]}"
    status, _ = d.request("POST", "/v1/admin/tenants", {"name": name}, d.token())
    assert status == 201
    status, created = d.request("POST", f"/v1/admin/tenants/{name}/keys", {"kind": "secret"}, d.token())
    assert status == 201
    return str(created["key"])


def test_a_trickled_body_gets_408(daemon: tuple[Daemon, str]) -> None:
    d, _ = daemon
    key = fresh_key(d)
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(f"POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode())
        s.settimeout(0.5)
        reply = b""
        started = time.monotonic()
        while time.monotonic() - started < 15 and b"\r\n\r\n" not in reply:
            try:
                s.sendall(b" ")
                reply += s.recv(4096)
            except TimeoutError:
                continue
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        if b"request_timeout" not in reply:
            reply += s.recv(4096)
        assert b"request_timeout" in reply and b"server.body_timeout" in reply, reply


def test_the_server_stays_up_and_bounded_after_all_that(daemon: tuple[Daemon, str]) -> None:
    d, _ = daemon
    key = fresh_key(d)
    assert d.get("/readyz")[0] == 200
    assert d.proc is not None
    rss = sum(p.memory_info().rss for p in [psutil.Process(d.proc.pid)]) / 2**20
    assert rss < 1500, f"the server's own memory stays bounded ({rss:.0f} MiB)"
    status, body = d.request("POST", "/v1/search", {"query": "anything"}, key)
    assert status in (200, 404, 409), body
    assert Path(d.data_dir).exists()
