"""`bitbd-tui` driven by Textual's pilot against a real daemon (in-process app on loopback, real workers, real jobs):
live overview and jobs, filter, details, retry and cancel with confirmation, tenants and questions, an
unreachable daemon and the reconnection; and snapshots of the main screens."""

from __future__ import annotations

import asyncio
import io
import multiprocessing.resource_tracker
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from rich.console import Console
from textual.widgets import DataTable, Static

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.embedded.redis import free_port
from bitbd.settings import Settings
from bitbd_tui.app import BitbdTUI
from bitbd_tui.client import DaemonClient
from tests.conftest import ADMIN_TOKEN, builtin_plugins
from tests.ingesting import Client, ingest_settings, wait_job
from tests.site import Site

SNAPSHOTS = Path(__file__).with_name("snapshots")


@pytest.fixture(autouse=True, scope="module")
def _resource_tracker() -> None:
    """These tests run the server (whose ingestion spawns extraction processes) in the console's process. A spawn
    passes sys.stderr's fd to multiprocessing's resource tracker when it first starts it, and under textual's
    test harness sys.stderr has none (`fileno()` is -1: "bad value(s) in fds_to_keep"): start it before."""
    multiprocessing.resource_tracker.ensure_running()


def console(client: Client) -> BitbdTUI:
    return BitbdTUI(DaemonClient(str(client.make_url("/")), ADMIN_TOKEN, timeout=2))


async def until(pilot: Any, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"the console never showed what was expected:\n{screen_text(pilot.app)}")
        await pilot.pause(0.1)


def rows(app: BitbdTUI, selector: str) -> list[list[str]]:
    table = app.query_one(selector, DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: BitbdTUI, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def screen_text(app: BitbdTUI) -> str:
    """The screen as plain text, as a terminal shows it (what export_screenshot draws, without the SVG)."""
    width, height = app.size
    out = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system=None,
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    out.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return out.export_text()


def normalized(text: str) -> str:
    """Screen text without what changes from run to run: ids, ports, times, ages, latencies, the heights and
    scales of the sparklines (rows made only of bar glyphs), and the tabs' sliding underline."""
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "UUID", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", "TIME", text)
    text = re.sub(r"\b[0-9a-f]{8}\b", "ID", text)
    text = re.sub(r"(?<![(\w])\d+[smhd]( ago)?\b", "AGE", text)
    text = re.sub(r"\b\d+ ms\b", "N ms", text)
    # a sparkline's scale: how busy the machine was, and whether a sample caught the queue non-empty at all
    text = re.sub(r"\((peak [\d.]+|all 0)\)", "(SCALE)", text)
    # and the tabs' underline, which slides to the active tab (.ci/lowest's textual caught it mid-way once)
    lines = ["" if re.fullmatch(r"[\s▁▂▃▄▅▆▇█━╸╺]*", line) else line.rstrip() for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def check_snapshot(name: str, app: BitbdTUI) -> None:
    """Compare a screen with tests/bitbd_tui/snapshots/<name>.txt; TUI_UPDATE_SNAPSHOTS=1 rewrites it."""
    got = normalized(screen_text(app))
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("TUI_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(got)
    assert path.exists(), f"no snapshot {path}; run with TUI_UPDATE_SNAPSHOTS=1 once and review it"
    assert got == path.read_text(), f"screen {name} changed:\n{got}"


async def crawl(client: Client, key: str, url: str, **extra: Any) -> str:
    resp = await client.post(
        "/v1/sources",
        json={"type": "web", "urls": [url], "max_depth": 0, "sitemap": False, **extra},
        headers={"Authorization": f"Bearer {key}"},
    )
    job_id: str = (await resp.json())["job_id"]
    await wait_job(client, key, job_id)
    return job_id


async def test_overview_and_jobs_follow_real_jobs(
    ingest: tuple[Client, str], site: tuple[Site, str], pool: asyncpg.Pool
) -> None:
    client, key = ingest
    _, base = site
    app = console(client)
    async with app.run_test(size=(80, 24)) as pilot:
        good = await crawl(client, key, f"{base}/volcanoes")
        bad = await crawl(client, key, f"{base}/missing")
        await until(
            pilot,
            # The queue can still hold the failed job's last task message for a poll after the job has ended.
            lambda: all(
                part in text_of(app, "#summary")
                for part in ("succeeded 1 (24h)", "failed 1 (24h)", "queues  high 0  normal 0")
            ),
        )
        summary = text_of(app, "#summary")
        assert "workers 1 process(es), 2 task slot(s)" in summary and "queues  high 0  normal 0" in summary
        check_snapshot("overview", app)

        await pilot.press("j")
        await until(pilot, lambda: {r[-1] for r in rows(app, "#jobs-table")} == {good[:8], bad[:8]})
        assert [r[0] for r in rows(app, "#jobs-table")] == ["failed", "succeeded"]  # newest first
        assert rows(app, "#jobs-table")[1][3] == "██████████ 1/1"
        check_snapshot("jobs", app)
        table = app.query_one("#jobs-table", DataTable)
        assert app.focused is table, "the tab's table has the focus: no Tab needed"
        await pilot.press("down")
        assert table.cursor_row == 1, "the arrow keys move the selection at once"
        await pilot.press("up")

        await pilot.press("f", "f", "f")  # all -> running -> queued -> failed
        await until(pilot, lambda: [r[-1] for r in rows(app, "#jobs-table")] == [bad[:8]])
        assert text_of(app, "#jobs-filter").startswith("failed jobs")

        await pilot.press("enter")
        await until(pilot, lambda: bool(app.screen.query("#detail-text")))
        detail = str(app.screen.query_one("#detail-text", Static).render())
        assert f"job {bad}" in detail and "404" in detail
        check_snapshot("job-detail", app)
        await pilot.press("r")
        await until(pilot, lambda: bool(app.screen.query("#question")))
        assert "Retry job" in str(app.screen.query_one("#question", Static).render())
        await pilot.press("y")
        await until(pilot, lambda: len(rows(app, "#jobs-table")) == 2, 60)  # the retry failed too: 404 still
        retried = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE source_id = (SELECT source_id FROM jobs WHERE id = $1)", bad
        )
        assert retried == 2

        tenant = await tenancy.get_tenant(pool, "acme")
        queued = str(
            await pool.fetchval("INSERT INTO jobs (tenant_id, kind) VALUES ($1, 'ingest') RETURNING id", tenant.id)
        )
        await pilot.press("f", "f", "f", "f", "f")  # failed -> succeeded -> cancelled -> all -> running -> queued
        await until(pilot, lambda: [r[-1] for r in rows(app, "#jobs-table")] == [queued[:8]])
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.screen.query("#detail-text")))
        await pilot.press("c")
        await until(pilot, lambda: bool(app.screen.query("#question")))
        await pilot.press("n")  # changed my mind: nothing happens
        await pilot.pause(0.3)
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", queued) == "queued"
        await pilot.press("enter", "c", "y")
        await until(pilot, lambda: app.jobs.get(queued, {}).get("status") == "cancelled")
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", queued) == "cancelled"


async def ask(client: Client, url: str, headers: dict[str, str], question: str) -> dict[str, Any]:
    async with client.ws_connect(url, headers=headers) as ws:
        await ws.send_json({"type": "ask", "id": "q", "question": question})
        while (event := await ws.receive_json())["type"] != "done":
            pass
    return dict(event)


async def test_tenants_questions_and_gaps(
    ingest: tuple[Client, str], site: tuple[Site, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, key = ingest
    _, base = site
    await crawl(client, key, f"{base}/volcanoes", refresh="6h")
    secret = {"Authorization": f"Bearer {key}"}
    done = await ask(client, "/v1/chat", secret, "How do volcanoes erupt?")
    resp = await client.post(f"/v1/messages/{done['message_id']}/feedback", json={"rating": "up"}, headers=secret)
    assert resp.status == 200
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    await ask(client, "/v1/chat?tenant=acme", admin, "Do you sell gift cards?")  # no key counts this one
    # The console polls every 3 s; with that stopped, only the events feed can bring a new question in.
    monkeypatch.setattr("bitbd_tui.app.POLL_SECONDS", 3600)
    app = console(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.snapshot is not None and "(peak" in text_of(app, "#qpm-label"))
        assert app.snapshot is not None
        peak = max(app.snapshot["chat"]["per_minute"])
        assert peak in (1, 2) and text_of(app, "#qpm-label").endswith(f"(peak {peak})"), "the sparkline's scale"
        await pilot.press("t")
        await until(pilot, lambda: bool(rows(app, "#tenants-table")))
        row = rows(app, "#tenants-table")[0]
        assert row[:5] == ["acme", "1", "1", "2", "1"], "asked: on the key and with the admin token"
        assert row[6] == "in 5h", row
        check_snapshot("tenants", app)
        await pilot.press("enter")  # the tenant: its questions, sources and keys
        await until(pilot, lambda: bool(app.screen.query("#detail-text")))
        detail = str(app.screen.query_one("#detail-text", Static).render())
        assert "questions: 1 on its keys, 1 with the admin token" in detail
        bare = base.split("://", 1)[1]
        assert f"web    http://{bare}/volcanoes" in detail, detail
        assert "refresh 6h" in detail and "next in 5h" in detail and "last job succeeded" in detail, detail
        assert "1 docs, 1 chunks" in detail and re.search(r"last crawl \d+s ago", detail), detail
        assert "keys of acme" in detail and "secret" in detail and "used 1" in detail
        await pilot.press("escape")

        await pilot.press("u")
        await until(pilot, lambda: len(rows(app, "#questions-table")) == 2)
        table = app.query_one("#questions-table", DataTable)
        assert app.focused is table
        gift, volcano = rows(app, "#questions-table")
        assert gift[1:5] == ["acme", "Do you sell gift cards?", "refused", "-"], gift
        assert volcano[1:3] == ["acme", "How do volcanoes erupt?"] and volcano[3] != "refused" and volcano[4] == "up"
        check_snapshot("questions", app)
        await pilot.press("down", "enter")  # the volcano answer, whole
        await until(pilot, lambda: bool(app.screen.query("#detail-text")))
        exchange = str(app.screen.query_one("#detail-text", Static).render())
        assert "Q: How do volcanoes erupt?" in exchange and "1 citation(s), up" in exchange, exchange
        assert f"{base}/volcanoes" in exchange, exchange
        await pilot.press("escape")

        await ask(client, "/v1/chat", secret, "What do seismometers warn of?")
        await until(pilot, lambda: rows(app, "#questions-table")[0][2] == "What do seismometers war")

        await pilot.press("g")
        await until(pilot, lambda: bool(rows(app, "#gaps-table")))
        gaps = rows(app, "#gaps-table")
        gift_row = next(i for i, r in enumerate(gaps) if r[2] == "Do you sell gift cards?")
        assert gaps[gift_row][:2] == ["acme", "1"] and "1 refused" in gaps[gift_row][3], gaps
        assert all(r[2] != "How do volcanoes erupt?" for r in gaps), "an answered, well-rated question is no gap"
        await pilot.press(*["down"] * gift_row, "enter")
        await until(pilot, lambda: bool(app.screen.query("#detail-text")))
        topic = str(app.screen.query_one("#detail-text", Static).render())
        assert "asked 1 time(s)" in topic and "  Do you sell gift cards?" in topic and "closest pages" in topic


async def test_unreachable_daemon_then_reconnects(settings: Settings, pool: asyncpg.Pool) -> None:
    port = free_port()
    app = BitbdTUI(DaemonClient(f"http://127.0.0.1:{port}", ADMIN_TOKEN, timeout=1))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.query_one("#banner").has_class("shown"), 10)
        assert "daemon unreachable, reconnecting" in text_of(app, "#banner")
        assert text_of(app, "#summary").startswith("status unknown")
        check_snapshot("unreachable", app)
        server = TestServer(create_app(ingest_settings(settings), builtin_plugins()), host="127.0.0.1", port=port)
        await server.start_server()
        try:
            await until(pilot, lambda: not app.query_one("#banner").has_class("shown"), 20)
            await until(pilot, lambda: text_of(app, "#summary").startswith("queues"), 10)
        finally:
            await server.close()
        await asyncio.sleep(0)
