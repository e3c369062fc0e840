"""Brute force and socket hoarding against a real `bitbd serve` on loopback: failed authentications per client
address get 429 with Retry-After (a burst sent at once included), a key's WebSockets are capped per client address
and in all, and a short admin token stops the server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.daemon import Daemon, bitbd, clean_env

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
FAILURES, WINDOW, CAP, KEY_CAP = 10, 3.0, 5, 8
SLACK = 2  # answers past auth.max_failures a burst may still get (none expected)


def _daemon(root: Path, **env: str) -> tuple[Daemon, str, str]:
    environ = clean_env(
        BITBD_AUTH__MAX_FAILURES=str(FAILURES),
        BITBD_AUTH__FAILURE_WINDOW=str(WINDOW),
        BITBD_CHAT__MAX_CONNECTIONS_PER_CLIENT=str(CAP),
        BITBD_CHAT__MAX_CONNECTIONS_PER_KEY=str(KEY_CAP),
        BITBD_CHAT__RATE_LIMIT_PER_MINUTE="0",
        **env,
    )
    d = Daemon(root / "data", root, env=environ).start()
    assert bitbd("tenant", "create", "acme", "--data-dir", str(d.data_dir), cwd=root, env=environ).returncode == 0
    keys = [
        bitbd("key", "create", "--tenant", "acme", "--data-dir", str(d.data_dir), cwd=root, env=environ).stdout.strip()
        for _ in range(2)
    ]
    return d, keys[0], keys[1]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str, str]]:
    d, key, other = _daemon(tmp_path_factory.mktemp("limits"))
    yield d, key, other
    d.stop()
    assert "Traceback" not in d.output(), d.output()[-3000:]


async def _get(
    session: aiohttp.ClientSession, url: str, token: str, headers: dict[str, str] | None = None
) -> tuple[int, str | None, dict[str, str]]:
    method, body = ("POST", {"query": "refunds"}) if url.endswith("/v1/search") else ("GET", None)
    async with session.request(
        method, url, json=body, headers={"Authorization": f"Bearer {token}", **(headers or {})}
    ) as r:
        answer = await r.json()
        return r.status, r.headers.get("Retry-After"), answer["error"] if r.status >= 400 else {}


async def _burst(
    url: str, tokens: list[str], headers: dict[str, str] | None = None
) -> list[tuple[int, str | None, dict[str, str]]]:
    """Every request at once, each on its own connection (no client-side limit on connections)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        return list(await asyncio.gather(*(_get(session, url, t, headers) for t in tokens)))


def _assert_throttled(results: list[tuple[int, str | None, dict[str, str]]]) -> None:
    answered = [status for status, _, _ in results if status != 429]
    assert len(answered) <= FAILURES + SLACK, f"{len(answered)} of {len(results)} answered: {answered}"
    for status, retry_after, error in results:
        if status == 429:
            assert error["code"] == "auth_throttled" and "auth.max_failures" in error["message"], error
            assert retry_after is not None and 1 <= int(retry_after) <= WINDOW + 1, retry_after


def test_300_wrong_secret_keys_at_once_get_at_most_max_failures_answers(guarded: tuple[Daemon, str, str]) -> None:
    """Each wrong key awaits a PostgreSQL lookup before it fails: the checks in flight count against the limit."""
    d, key, _ = guarded
    started = time.monotonic()
    results = asyncio.run(_burst(d.url + "/v1/search", [f"sk_{i:043d}" for i in range(300)]))
    assert time.monotonic() - started < WINDOW, "the burst must fit in the window for this test to mean anything"
    _assert_throttled(results)
    assert {s for s, _, _ in results} <= {401, 429}, results
    assert asyncio.run(_burst(d.url + "/v1/tenant", [key]))[0][0] == 429
    _wait_out_the_window()


def test_300_wrong_public_keys_on_the_chat_upgrade_at_once_get_at_most_max_failures_upgrades(
    guarded: tuple[Daemon, str, str],
) -> None:
    d, key, _ = guarded

    async def upgrade(session: aiohttp.ClientSession, i: int) -> int:
        try:
            async with session.ws_connect(
                d.url.replace("http", "ws") + f"/v1/chat?key=pk_{i:043d}", headers={"Origin": "https://shop.example"}
            ) as ws:
                message = await ws.receive_json(timeout=10)
                assert message["type"] == "error" and message["code"] == "unauthorized", message
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status

    async def burst() -> list[int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            return list(await asyncio.gather(*(upgrade(session, i) for i in range(300))))

    started = time.monotonic()
    statuses = asyncio.run(burst())
    assert time.monotonic() - started < WINDOW, "the burst must fit in the window for this test to mean anything"
    assert set(statuses) <= {101, 429}, statuses
    assert statuses.count(101) <= FAILURES + SLACK, statuses
    assert asyncio.run(_burst(d.url + "/v1/tenant", [key]))[0][0] == 429
    _wait_out_the_window()


def test_300_right_keys_at_once_are_all_answered(guarded: tuple[Daemon, str, str]) -> None:
    """Checks in flight count against the limit, but a legitimate burst waits for them, it is not refused."""
    d, key, _ = guarded
    started = time.monotonic()
    results = asyncio.run(_burst(d.url + "/v1/tenant", [key] * 300))
    took = time.monotonic() - started
    assert [s for s, _, _ in results] == [200] * 300, results
    assert took < 10, took


def _wait_out_the_window() -> None:
    time.sleep(WINDOW + 0.5)


def test_300_wrong_admin_tokens_at_once_are_throttled_with_retry_after(guarded: tuple[Daemon, str, str]) -> None:
    d, key, _ = guarded
    started = time.monotonic()
    results = asyncio.run(_burst(d.url + "/v1/admin/tenants", [f"adm_wrong_{i:040d}" for i in range(300)]))
    assert time.monotonic() - started < WINDOW, "the burst must fit in the window for this test to mean anything"
    statuses = [status for status, _, _ in results]
    assert statuses.count(401) <= FAILURES and statuses.count(429) >= 300 - FAILURES, statuses
    _assert_throttled(results)
    # The address is refused whatever it sends now, the right token and keys included, on HTTP and the chat.
    right = asyncio.run(_burst(d.url + "/v1/admin/tenants", [d.token()]))
    assert right[0][0] == 429, right
    assert asyncio.run(_burst(d.url + "/v1/tenant", [key]))[0][0] == 429
    assert asyncio.run(_chat_status(d, key)) == 429
    _wait_out_the_window()
    assert asyncio.run(_burst(d.url + "/v1/admin/tenants", [d.token()]))[0][0] == 200
    assert asyncio.run(_chat_status(d, key)) == 101


def test_wrong_keys_on_http_and_the_chat_upgrade_count_too(guarded: tuple[Daemon, str, str]) -> None:
    d, key, _ = guarded
    wrong = [f"sk_{i:043d}" for i in range(FAILURES // 2)]
    asyncio.run(_burst(d.url + "/v1/tenant", wrong))
    for token in wrong:  # each wrong key over the chat gets its error message (4401) and counts
        assert asyncio.run(_chat_status(d, token)) == 101
    assert asyncio.run(_chat_status(d, wrong[0])) == 429, "the chat upgrade is refused before it happens"
    assert asyncio.run(_burst(d.url + "/v1/tenant", [key]))[0][0] == 429
    _wait_out_the_window()
    assert asyncio.run(_burst(d.url + "/v1/tenant", [key]))[0][0] == 200


def test_x_forwarded_for_is_ignored_unless_the_proxy_is_trusted(guarded: tuple[Daemon, str, str]) -> None:
    d, key, _ = guarded
    for i in range(FAILURES):  # each from a "different" client, by a header anyone can write
        asyncio.run(_burst(d.url + "/v1/tenant", ["sk_nope"], {"X-Forwarded-For": f"203.0.113.{i}"}))
    status = asyncio.run(_burst(d.url + "/v1/tenant", [key], {"X-Forwarded-For": "198.51.100.1"}))[0][0]
    assert status == 429, "the peer address counts, not what the client claims"
    _wait_out_the_window()


async def _chat_status(d: Daemon, token: str) -> int:
    """101 when the upgrade happened (whatever the chat then says), else the HTTP status it was refused with."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(
                d.url.replace("http", "ws") + "/v1/chat", headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                await ws.receive(timeout=0.2)
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status
        except TimeoutError:
            return 101


async def _refused_upgrade(session: aiohttp.ClientSession, url: str, key: str) -> dict[str, str]:
    """The error of an upgrade refused with 429 (read as plain HTTP: aiohttp's ws_connect hides the body)."""
    async with session.get(
        url,
        headers={
            "Authorization": f"Bearer {key}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as r:
        assert r.status == 429 and r.headers.get("Retry-After"), r.status
        error: dict[str, str] = (await r.json())["error"]
        assert error["code"] == "too_many_connections", error
        return error


async def _pong(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_json({"type": "ping", "id": "p"})
    assert (await ws.receive_json(timeout=5)) == {"type": "pong", "id": "p"}


def test_one_address_holds_at_most_max_connections_per_client_sockets_of_a_key(
    guarded: tuple[Daemon, str, str],
) -> None:
    """A public key is in its site's HTML: one script holding sockets must not shut out the site's visitors. The
    cap is per (key, client address); all clients of a key together stop at chat.max_connections_per_key."""
    d, key, other = guarded

    async def scenario() -> None:
        url = d.url.replace("http", "ws") + "/v1/chat"
        auth = {"Authorization": f"Bearer {key}"}
        async with (
            aiohttp.ClientSession() as session,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as visitor,
        ):
            held = [await session.ws_connect(url, headers=auth) for _ in range(CAP)]
            for ws in held:
                await _pong(ws)
            error = await _refused_upgrade(session, url, key)
            assert "this address already holds 5 open chat connections" in error["message"], error
            assert "chat.max_connections_per_client" in error["message"] and key[:11] in error["message"], error
            async with session.ws_connect(url, headers={"Authorization": f"Bearer {other}"}) as ws:  # another key
                await _pong(ws)
            # Another address with the same key still connects, up to the key's ceiling over all its clients.
            theirs = [await visitor.ws_connect(url, headers=auth) for _ in range(KEY_CAP - CAP)]
            for ws in theirs:
                await _pong(ws)
            error = await _refused_upgrade(visitor, url, key)
            assert f"already holds {KEY_CAP} open chat connections from all its clients" in error["message"], error
            assert "chat.max_connections_per_key" in error["message"], error
            await theirs.pop().close()
            await held.pop().close()
            await asyncio.sleep(0.2)
            async with session.ws_connect(url, headers=auth) as ws:  # a slot again
                await _pong(ws)
            for ws in held + theirs:
                await ws.close()

    asyncio.run(scenario())


def test_behind_a_trusted_proxy_the_forwarded_client_counts(tmp_path: Path) -> None:
    d, key, _ = _daemon(tmp_path, BITBD_AUTH__TRUSTED_PROXIES='["127.0.0.1"]')
    try:
        # The proxy appends the address it saw; what a client wrote to the left of it is not believed.
        for i in range(FAILURES):
            asyncio.run(_burst(d.url + "/v1/tenant", ["sk_nope"], {"X-Forwarded-For": f"10.9.9.{i}, 203.0.113.7"}))
        attacker = asyncio.run(_burst(d.url + "/v1/tenant", [key], {"X-Forwarded-For": "203.0.113.7"}))
        assert attacker[0][0] == 429, attacker
        bystander = asyncio.run(_burst(d.url + "/v1/tenant", [key], {"X-Forwarded-For": "203.0.113.8"}))
        assert bystander[0][0] == 200, "another client behind the same proxy is not locked out"
    finally:
        d.stop()
    assert "Traceback" not in d.output(), d.output()[-3000:]


@pytest.mark.parametrize("token", ["short", "x" * 31, "adm_" + "é" * 40])
def test_a_short_or_odd_admin_token_stops_the_server_at_start_up(tmp_path: Path, token: str) -> None:
    ran = bitbd(
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        "0",
        cwd=tmp_path,
        timeout=60,
        env=clean_env(BITBD_ADMIN_TOKEN=token),
    )
    assert ran.returncode != 0, ran
    assert "BITBD_ADMIN_TOKEN" in ran.stderr and ("at least 32" in ran.stderr or "ASCII" in ran.stderr), ran.stderr
