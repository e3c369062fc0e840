"""The TUI against a real daemon on loopback: it shows readiness and tenants, and says when it cannot connect."""

from __future__ import annotations

import asyncpg
from textual.widgets import DataTable, Static

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.embedded.redis import free_port
from bitbd.settings import Settings
from bitbd_tui.app import BitbdTUI
from bitbd_tui.client import DaemonClient
from tests.conftest import ADMIN_TOKEN, AiohttpClient, builtin_plugins


async def test_shows_readiness_and_tenants(aiohttp_client: AiohttpClient, settings: Settings,
                                           pool: asyncpg.Pool) -> None:
    await tenancy.create_tenant(pool, "acme")
    await tenancy.create_tenant(pool, "globex")
    server = await aiohttp_client(create_app(settings, builtin_plugins()))
    app = BitbdTUI(DaemonClient(str(server.make_url("/")), ADMIN_TOKEN))
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        status = str(app.query_one("#status", Static).render())
        assert status.startswith("READY") and "postgres: ok" in status and "redis: ok" in status
        table = app.query_one("#tenants", DataTable)
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == ["acme", "globex"]
        assert not app.query_one("#banner").has_class("shown")


async def test_unreachable_daemon_shows_a_banner() -> None:
    app = BitbdTUI(DaemonClient(f"http://127.0.0.1:{free_port()}", ADMIN_TOKEN, timeout=1))
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        banner = app.query_one("#banner", Static)
        assert banner.has_class("shown")
        assert "daemon unreachable" in str(banner.render())
        assert str(app.query_one("#status", Static).render()) == "status unknown"
