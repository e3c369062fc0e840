"""The Textual application: for now one screen with the daemon's health and its tenants."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import ClassVar

import platformdirs
from textual import work
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Header, Static

from bitbd_tui.client import DaemonClient, DaemonError, Readiness

POLL_SECONDS = 2.0


class BitbdTUI(App[None]):
    TITLE = "bitbd"
    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [("r", "refresh", "Refresh"), ("q", "quit", "Quit")]

    readiness: reactive[Readiness | None] = reactive(None)
    error: reactive[str] = reactive("")

    def __init__(self, client: DaemonClient) -> None:
        super().__init__()
        self.client = client

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="banner")
        yield Static("connecting…", id="status")
        yield DataTable(id="tenants", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.client.url
        self.query_one("#tenants", DataTable).add_columns("tenant", "id", "keys", "documents")
        self.refresh_all()
        self.set_interval(POLL_SECONDS, self.refresh_all)

    def action_refresh(self) -> None:
        self.refresh_all()

    @work(exclusive=True, exit_on_error=False)
    async def refresh_all(self) -> None:
        try:
            readiness = await self.client.readiness()
            tenants = await self.client.tenants()
        except DaemonError as e:
            self.error = str(e)
            return
        self.error = ""
        self.readiness = readiness
        table = self.query_one("#tenants", DataTable)
        table.clear()
        for t in tenants:
            table.add_row(t["name"], t["id"], str(t.get("active_keys", "")), str(t.get("documents", "")))

    def watch_error(self, error: str) -> None:
        banner = self.query_one("#banner", Static)
        banner.update(f"daemon unreachable, retrying every {POLL_SECONDS:.0f}s: {error}" if error else "")
        banner.set_class(bool(error), "shown")
        if error:  # what was shown before is no longer known to be true
            self.readiness = None
            self.query_one("#status", Static).update("status unknown")

    def watch_readiness(self, readiness: Readiness | None) -> None:
        if readiness is None:
            return
        parts = [f"{name}: {'ok' if c.get('ok') else c.get('error', 'down')}" for name, c in readiness.checks.items()]
        self.query_one("#status", Static).update(("READY  " if readiness.ready else "NOT READY  ") + "  ".join(parts))

    async def on_unmount(self) -> None:
        await self.client.close()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bitbd-tui", description="Operator console for a bitbd daemon.")
    parser.add_argument("--url", default=os.environ.get("BITBD_URL", "http://127.0.0.1:8740"),
                        help="daemon URL (default $BITBD_URL or http://127.0.0.1:8740)")
    parser.add_argument("--token", default=os.environ.get("BITBD_ADMIN_TOKEN"),
                        help="admin token (default $BITBD_ADMIN_TOKEN, else the local data dir's admin_token)")
    parser.add_argument("--data-dir", type=Path, default=Path(platformdirs.user_data_dir("bitbd")),
                        help="data dir of a local server, to read its admin token")
    args = parser.parse_args(argv)
    token = args.token
    if not token:
        try:
            token = (args.data_dir / "admin_token").read_text().strip()
        except OSError:
            parser.error(f"no admin token: pass --token, set BITBD_ADMIN_TOKEN, or point --data-dir at a server's "
                         f"data dir ({args.data_dir / 'admin_token'} is not readable)")
    BitbdTUI(DaemonClient(args.url, token)).run()
    return 0
