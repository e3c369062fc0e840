"""Stopping `bitbd serve` with open WebSockets (a console's events feed, a visitor's chat): they are told the
server is going away (1001) and the server exits at once instead of waiting for them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from tests.support.daemon import Daemon


async def test_open_websockets_do_not_hold_the_shutdown(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "data", tmp_path).start()
    headers = {"Authorization": f"Bearer {daemon.token()}"}
    async with aiohttp.ClientSession() as session:
        events = await session.ws_connect(daemon.url + "/v1/admin/events", headers=headers)
        chat = await session.ws_connect(daemon.url + "/v1/chat?key=pk_notarealkeybutlongenough")
        assert (await chat.receive_json())["code"] == "unauthorized"
        chat = await session.ws_connect(daemon.url + "/v1/chat", headers=headers, params={"tenant": "none"})
        await events.receive_json()  # the first snapshot: the feed is live

        async def read_until_closed() -> None:  # as a console does: it keeps reading
            async for _ in events:
                pass

        reader = asyncio.create_task(read_until_closed())
        started = time.monotonic()
        assert await asyncio.to_thread(daemon.stop, timeout=20) == 0
        assert time.monotonic() - started < 5, "open WebSockets must not delay the shutdown"
        await asyncio.wait_for(reader, 5)
        assert events.close_code == 1001
        await events.close()
        await chat.close()
