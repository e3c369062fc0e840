"""The chat widget in headless Chromium (Debian's, driven by Playwright) against the real app on loopback: a host
page on another loopback origin embeds the script tag; streamed answers with working citation links; foreign
origins; trial keys that end; a hostile document; a server restart; keyboard use. Screenshots go to
test-artifacts/ (kept by CI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bitbd import tenancy
from bitbd.app import create_app
from bitbd.embedded.redis import free_port
from bitbd.plugin_api import PluginContext
from bitbd.settings import Settings
from bitbd_plugins.embedders.fastembed import FastEmbedder
from tests.conftest import builtin_plugins, repo_root
from tests.corpus import ACME, Indexed, index
from tests.ingesting import ingest_settings
from tests.site import Site
from tests.support.waiting import wait_until_async

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = repo_root() / "test-artifacts"
playwright_api = pytest.importorskip("playwright.async_api", reason="pip install playwright (the test extra)")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install chromium")
HOSTILE = (
    'To reset the router, hold the button <img src=x onerror="window.__pwned=1"> for ten seconds '
    "<script>window.__pwned=2</script> until the light blinks."
)
W = "[data-bitbd] >> css="  # the widget lives in a shadow root; Playwright's CSS pierces it


class Bitbd:
    """The real app on a fixed loopback port, so that it can be stopped and started again."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.port = settings, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: TestServer | None = None

    async def start(self) -> None:
        self.server = TestServer(create_app(self.settings, builtin_plugins()), host="127.0.0.1", port=self.port)
        await self.server.start_server()

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.close()


def host_page(bitbd_url: str, key: str) -> str:
    # Hostile CSS, as a careless site might have: every element red, huge, hidden.
    css = (
        "*{color:red !important;font-size:40px !important;display:none !important}"
        "html,body,h1,a{display:block !important}"
    )
    return (
        f"<!doctype html><html><head><title>Acme shop</title><style>{css}</style></head><body>"
        f'<h1>Acme shop</h1><a href="/other">another page</a>'
        f'<script src="{bitbd_url}/widget.js" data-key="{key}" data-title="Acme help" async></script>'
        "</body></html>"
    )


@pytest.fixture
async def bitbd(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Bitbd]:
    server = Bitbd(ingest_settings(settings))  # with workers, and allowed to crawl the loopback test site
    await server.start()
    yield server
    if server.server is not None:
        await server.server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        await chromium.close()


class Host:
    """A website on its own loopback origin that embeds the widget (two pages: a conversation spans both)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.key = ""
        self.bitbd_url = ""

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=host_page(self.bitbd_url, self.key), content_type="text/html")


@pytest.fixture
async def host(bitbd: Bitbd) -> AsyncIterator[Host]:
    site = Host()
    site.bitbd_url = bitbd.url
    app = web.Application()
    app.router.add_get("/", site.page)
    app.router.add_get("/other", site.page)
    server = TestServer(app, host="127.0.0.1", port=site.port)
    await server.start_server()
    yield site
    await server.close()


async def public_key(pool: asyncpg.Pool, origin: str, **spec: Any) -> str:
    _, key = await tenancy.create_key(pool, "acme", tenancy.KeySpec("public", [origin], **spec))
    return key


async def open_and_ask(page: Any, question: str) -> None:
    await page.click(W + ".bubble")
    await page.fill(W + "textarea", question)
    await page.keyboard.press("Enter")


async def last_answer(page: Any) -> str:
    return str(await page.locator(W + ".msg.bot, .msg.err").last.inner_text())


def screenshot_path(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


async def test_a_visitor_gets_a_streamed_cited_answer(
    browser: Any, bitbd: Bitbd, host: Host, pool: asyncpg.Pool, site: tuple[Site, str]
) -> None:
    # A page of a real (loopback) website, crawled through the API by the server's own workers.
    await tenancy.create_tenant(pool, "acme")
    _, secret = await tenancy.create_key(pool, "acme", tenancy.KeySpec("secret"))
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {secret}"}
        resp = await session.post(
            bitbd.url + "/v1/sources",
            headers=auth,
            json={"type": "web", "urls": [f"{site[1]}/volcanoes"], "max_depth": 0, "sitemap": False},
        )
        job = (await resp.json())["job_id"]
        for _ in range(300):
            status = (await (await session.get(f"{bitbd.url}/v1/jobs/{job}", headers=auth)).json())["status"]
            if status not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
    assert status == "succeeded"
    host.key = await public_key(pool, host.origin)
    page = await browser.new_page()
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    await page.goto(host.origin + "/")
    assert await page.get_attribute(W + ".bubble", "aria-expanded") == "false"
    await open_and_ask(page, "How do volcanoes erupt?")
    link = page.locator(W + ".sources a").first
    await link.wait_for(timeout=20_000)
    assert await link.get_attribute("href") == f"{site[1]}/volcanoes"
    assert await link.get_attribute("rel") == "noopener noreferrer"
    answer = await last_answer(page)
    assert "magma" in answer and "[1]" in answer
    # The extractive answer is written at once and arrives as one delta; a model's tokens as several (below).
    assert sum('"type": "delta"' in f for f in frames) >= 1
    # The host page's hostile CSS (red, 40px, div hidden) does not reach inside the widget.
    assert await page.locator(W + ".panel").is_visible()
    color = await page.locator(W + ".msg.me").evaluate("e => getComputedStyle(e).backgroundColor")
    assert color == "rgb(37, 99, 235)"
    await page.screenshot(path=screenshot_path("widget-answer"))
    async with page.context.expect_page() as opened:  # the citation opens the cited page
        await link.click()
    cited = await opened.value
    await cited.wait_for_load_state()
    assert cited.url == f"{site[1]}/volcanoes" and await cited.title() == "Volcanoes"
    await cited.close()
    # Keyboard: Esc closes and gives focus back to the bubble; the conversation goes on on the next page.
    await page.keyboard.press("Escape")
    assert await page.get_attribute(W + ".bubble", "aria-expanded") == "false"
    sent: list[str] = []
    await page.goto(host.origin + "/other")
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
    # The conversation so far is back on screen (GET /v1/conversations/{id} with the public key), sources too.
    await page.click(W + ".bubble")
    await page.locator(W + ".msg.me").get_by_text("How do volcanoes erupt?").wait_for(timeout=10_000)
    restored = page.locator(W + ".msg.bot").nth(1)
    assert "magma" in await restored.inner_text()
    assert await restored.locator(".sources a").first.get_attribute("href") == f"{site[1]}/volcanoes"
    await page.fill(W + "textarea", "And what kinds of lava are there?")
    await page.keyboard.press("Enter")
    await page.locator(W + ".msg.bot:not(.pending)").nth(2).wait_for(timeout=20_000)
    assert any('"conversation_id"' in s for s in sent), "sessionStorage carried the conversation to this page"
    await page.reload()  # and after a reload: both exchanges, in order
    await page.click(W + ".bubble")
    await page.locator(W + ".msg.me").nth(1).wait_for(timeout=10_000)
    asked = await page.locator(W + ".msg.me").all_inner_texts()
    assert asked == ["How do volcanoes erupt?", "And what kinds of lava are there?"]
    await page.close()


async def test_an_answer_the_model_did_not_finish_says_it_was_cut_short(
    browser: Any, settings: Settings, pool: asyncpg.Pool
) -> None:
    from tests.llm import fake_llm

    await index(pool, FastEmbedder(PluginContext("fastembed")), "acme", ACME)
    async with fake_llm(answer="Standard delivery takes 3 to 5 days [1] and then and then", finish="length") as llm:
        plugins = settings.plugins.model_copy(update={"openai": {"base_url": llm.url, "model": "m"}})
        server = Bitbd(
            settings.model_copy(
                update={"answer": settings.answer.model_copy(update={"generator": "openai"}), "plugins": plugins}
            )
        )
        await server.start()
        site = Host()
        site.bitbd_url = server.url
        app = web.Application()
        app.router.add_get("/", site.page)
        pages = TestServer(app, host="127.0.0.1", port=site.port)
        await pages.start_server()
        try:
            site.key = await public_key(pool, site.origin)
            page = await browser.new_page()
            frames: list[str] = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
            await page.goto(site.origin + "/")
            await open_and_ask(page, "How long does standard delivery take?")
            await page.locator(W + ".msg.bot:not(.pending)").last.wait_for(timeout=20_000)
            await page.locator(W + ".bitbd-cut").wait_for(timeout=5_000)
            answer = await last_answer(page)
            assert "3 to 5 days [1] and then and then" in answer and "(This answer was cut short.)" in answer
            assert sum('"type": "delta"' in f for f in frames) >= 2, "the model's tokens arrived as several deltas"
            await page.close()
        finally:
            await pages.close()
            await server.stop()


async def test_a_foreign_origin_is_refused_in_words(
    browser: Any, host: Host, pool: asyncpg.Pool, embedder: FastEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    await index(pool, embedder, "acme", ACME)
    host.key = await public_key(pool, "https://shop.acme.example")  # not the host page's origin
    page = await browser.new_page()
    await page.goto(host.origin + "/")
    await open_and_ask(page, "Hello?")
    error = page.locator(W + ".msg.err").first
    await error.wait_for(timeout=10_000)
    assert await error.inner_text() == "This chat is not enabled for this website."
    assert "public key used from a foreign origin" in caplog.text and host.key not in caplog.text
    await page.screenshot(path=screenshot_path("widget-foreign-origin"))
    await page.close()


async def test_trial_keys_end_with_a_clear_message(
    browser: Any, host: Host, pool: asyncpg.Pool, embedder: FastEmbedder
) -> None:
    await index(pool, embedder, "acme", ACME)
    host.key = await public_key(pool, host.origin, trial=True, quota=1)
    page = await browser.new_page()
    await page.goto(host.origin + "/")
    await open_and_ask(page, "When do you ship?")
    await page.locator(W + ".sources a").first.wait_for(timeout=20_000)
    await page.fill(W + "textarea", "And express delivery?")
    await page.keyboard.press("Enter")
    await page.locator(W + ".msg.err").first.wait_for(timeout=10_000)
    assert await last_answer(page) == "This trial has ended."
    host.key = await public_key(pool, host.origin, trial=True, expires_at=datetime.now(UTC) + timedelta(seconds=1))
    await pool.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE prefix = $1", host.key[:11])
    await page.goto(host.origin + "/")
    await open_and_ask(page, "When do you ship?")
    await page.locator(W + ".msg.err").first.wait_for(timeout=10_000)
    assert await last_answer(page) == "This trial has ended."
    await page.close()


async def test_hostile_document_text_is_shown_as_text(
    browser: Any, host: Host, pool: asyncpg.Pool, embedder: FastEmbedder
) -> None:
    acme: Indexed = await index(
        pool, embedder, "acme", {"https://acme.example/router": ("Router <b>help</b>", [HOSTILE])}
    )
    assert acme.tenant.name == "acme"
    host.key = await public_key(pool, host.origin)
    page = await browser.new_page()
    await page.goto(host.origin + "/")
    await open_and_ask(page, "How do I reset the router?")
    await page.locator(W + ".sources a").first.wait_for(timeout=20_000)
    answer = await last_answer(page)
    assert "<img src=x onerror=" in answer and "<script>" in answer, answer
    assert await page.evaluate("window.__pwned") is None, "server text must never run as HTML"
    assert await page.locator(W + ".msg img").count() == 0
    assert "Router <b>help</b>" in await page.locator(W + ".sources a").first.inner_text()
    await page.close()


async def test_the_widget_reconnects_after_a_server_restart(
    browser: Any, bitbd: Bitbd, host: Host, pool: asyncpg.Pool, embedder: FastEmbedder
) -> None:
    await index(pool, embedder, "acme", ACME)
    host.key = await public_key(pool, host.origin)
    page = await browser.new_page()
    await page.goto(host.origin + "/")
    await open_and_ask(page, "When do you ship?")
    await page.locator(W + ".sources a").first.wait_for(timeout=20_000)
    await bitbd.stop()
    await page.locator(W + ".status").filter(has_text="Reconnecting").wait_for(timeout=10_000)
    await bitbd.start()
    await page.fill(W + "textarea", "How do I reach support by email?")
    await page.keyboard.press("Enter")
    await page.locator(W + ".sources a").nth(1).wait_for(timeout=30_000)
    assert "help@acme.example" in await last_answer(page)
    await page.close()


async def test_a_visitor_rates_an_answer_with_the_keyboard(
    browser: Any, bitbd: Bitbd, host: Host, pool: asyncpg.Pool, embedder: FastEmbedder
) -> None:
    """Thumbs under each answer, reachable by Tab, pressed with Enter; "Not helpful" opens an optional comment box
    (focused, labelled); what the visitor sent is what the server keeps, once per answer."""
    await index(pool, embedder, "acme", ACME)
    host.key = await public_key(pool, host.origin)
    page = await browser.new_page()
    await page.goto(host.origin + "/")
    await open_and_ask(page, "How long does standard delivery take?")
    thumbs = page.locator(W + ".rate")
    await thumbs.wait_for(timeout=20_000)
    assert await thumbs.get_attribute("aria-label") == "Rate this answer"
    focused = "document.querySelector('bitbd-chat').shadowRoot.activeElement.getAttribute('aria-label')"
    await page.keyboard.press("Shift+Tab")  # from the question box back to the last answer's last button
    assert await page.evaluate(focused) == "Not helpful"
    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate(focused) == "Helpful"
    await page.keyboard.press("Enter")
    await page.locator(W + ".status").get_by_text("Thank you for your feedback.").wait_for(timeout=10_000)
    assert await page.get_attribute(W + '.rate button[aria-label="Helpful"]', "aria-pressed") == "true"
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")  # "Not helpful": replaces "Helpful", and asks why
    assert await page.evaluate(focused) == "What was wrong with this answer? (optional)"
    await page.keyboard.type("It takes a week to Iceland.")
    await page.keyboard.press("Enter")
    assert await page.get_attribute(W + '.rate button[aria-label="Helpful"]', "aria-pressed") == "false"
    assert await page.get_attribute(W + '.rate button[aria-label="Not helpful"]', "aria-pressed") == "true"

    async def kept() -> Any:
        return await pool.fetchrow("SELECT rating, comment FROM feedback WHERE comment <> ''")

    row = await wait_until_async(kept, "the comment stored", 10)
    assert tuple(row) == ("down", "It takes a week to Iceland.")
    assert await pool.fetchval("SELECT count(*) FROM feedback") == 1
    await page.screenshot(path=screenshot_path("widget-feedback"))
    await page.reload()  # the answer comes back with its rating shown
    await page.click(W + ".bubble")
    await page.locator(W + ".rate").wait_for(timeout=10_000)
    assert await page.get_attribute(W + '.rate button[aria-label="Not helpful"]', "aria-pressed") == "true"
    assert await page.get_attribute(W + '.rate button[aria-label="Helpful"]', "aria-pressed") == "false"
    await page.close()


def test_widget_is_small_and_self_contained() -> None:
    source = (repo_root() / "bitbd" / "static" / "widget.js").read_text()
    assert len(source.encode()) < 30_000
    assert "innerHTML" not in source and "insertAdjacentHTML" not in source and "eval(" not in source
    assert "http://" not in source.replace("http://www.w3.org/2000/svg", ""), "no third-party URLs"
