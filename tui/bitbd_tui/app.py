"""`bitbd-tui`: the operator's live console. Overview, jobs, tenants, recent questions and gaps of one daemon.

The overview and the jobs table follow the daemon's live events feed (a snapshot a second, job changes as they
happen); tenants and questions are re-read every few seconds. When the daemon cannot be reached a banner says
so, and the console reconnects by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import platformdirs
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Header, Sparkline, Static, TabbedContent, TabPane

from bitbd_tui.client import DaemonClient, DaemonError
from bitbd_tui.panes import Gaps, Questions, fill, selected_key
from bitbd_tui.screens import Confirm, JobDetail, Text
from bitbd_tui.views import STATUSES, job_detail, job_row, overview_text, scale, tenant_row, tenant_text

POLL_SECONDS = 3.0
RECONNECT_MAX = 5.0
HISTORY = 120  # snapshots kept for the sparklines: two minutes


class BitbdTUI(App[None]):
    """The console: overview, jobs, tenants, recent questions and content gaps of one daemon, in tabs."""

    TITLE = "bitbd"
    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        ("o", "show('overview')", "Overview"),
        ("j", "show('jobs')", "Jobs"),
        ("t", "show('tenants')", "Tenants"),
        ("u", "show('questions')", "Questions"),
        ("g", "show('gaps')", "Gaps"),
        ("f", "filter", "Filter"),
        ("enter", "details", "Details"),
        ("r", "refresh", "Refresh"),
        ("q", "quit", "Quit"),
    ]

    error: reactive[str] = reactive("")
    status_filter: reactive[str | None] = reactive(None)

    def __init__(self, client: DaemonClient) -> None:
        super().__init__()
        self.client = client
        self.jobs: dict[str, dict[str, Any]] = {}
        self.snapshot: dict[str, Any] | None = None
        self.depth_history: deque[float] = deque([0.0] * 30, maxlen=HISTORY)
        self.tenants: dict[str, dict[str, Any]] = {}
        self.last_message: str | None = None

    def compose(self) -> ComposeResult:
        """The header, the unreachable-daemon banner, the four tabs and the keys footer."""
        yield Header()
        yield Static(id="banner")
        with TabbedContent(initial="overview"):
            with TabPane("Overview", id="overview"):
                yield Static("connecting…", id="summary")
                yield Static("questions per minute, last 15 min", id="qpm-label", classes="label")
                yield Sparkline([0] * 15, id="qpm")
                yield Static("queue depth, last 2 min", id="depth-label", classes="label")
                yield Sparkline(list(self.depth_history), id="depth")
            with TabPane("Jobs", id="jobs"):
                yield Static("all jobs  (f: filter by status, Enter: details)", id="jobs-filter")
                yield DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Tenants", id="tenants"):
                yield Static("tenants  (Enter: sources and keys; asked: by keys + admin token)", classes="hint")
                yield DataTable(id="tenants-table", cursor_type="row")
            with TabPane("Questions", id="questions"):
                yield Questions(self.client)
            with TabPane("Gaps", id="gaps"):
                yield Gaps(self.client)
        yield Footer()

    def on_mount(self) -> None:
        """Set the tables' columns, follow the events feed and poll tenants and questions every 3 s."""
        self.sub_title = self.client.url
        self.query_one("#jobs-table", DataTable).add_columns(
            "status", "tenant", "source", "progress", "att", "age", "id"
        )
        self.query_one("#tenants-table", DataTable).add_columns(
            "tenant", "docs", "chunks", "asked", "keys", "last crawl", "next crawl"
        )
        self.follow_events()
        self.poll()
        self.set_interval(POLL_SECONDS, self.poll)

    # The live feed ---------------------------------------------------------------------------------------

    @work(exclusive=True, group="events", exit_on_error=False)
    async def follow_events(self) -> None:
        """Follow the daemon's events feed (after reloading the jobs), reconnecting with a
        backoff of up to 5 s whenever it drops."""
        delay = 0.5
        while True:
            try:
                await self.reload_jobs()
                async for event in self.client.events():
                    self.error = ""
                    delay = 0.5
                    if event["type"] == "snapshot":
                        self.show_snapshot(event)
                    elif event["type"] == "jobs":
                        for job in event["jobs"]:
                            self.jobs[job["id"]] = job
                        self.render_jobs()
            except DaemonError as e:
                self.error = str(e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Show a snapshot on the overview: the summary text and the questions-per-minute and
        queue-depth sparklines."""
        self.snapshot = snapshot
        self.query_one("#summary", Static).update(overview_text(snapshot))
        per_minute = [float(n) for n in snapshot["chat"]["per_minute"]]
        self.query_one("#qpm", Sparkline).data = per_minute
        self.query_one("#qpm-label", Static).update(f"questions per minute, last 15 min {scale(per_minute)}")
        queues = snapshot["queues"]
        self.depth_history.append(
            float(queues.get("high", 0) + queues.get("normal", 0)) if "error" not in queues else 0.0
        )
        self.query_one("#depth", Sparkline).data = list(self.depth_history)
        self.query_one("#depth-label", Static).update(f"queue depth, last 2 min {scale(self.depth_history)}")
        last = snapshot["chat"].get("last_message")
        if last != self.last_message:  # a new answer somewhere: show it now, not at the next poll
            self.last_message = last
            self.poll_questions()

    async def reload_jobs(self) -> None:
        """Re-read the jobs (of the status filter) and redraw their table."""
        self.jobs = {j["id"]: j for j in await self.client.jobs(self.status_filter)}
        self.render_jobs()

    def render_jobs(self) -> None:
        """Redraw the jobs table, newest first, within the status filter, keeping the cursor on
        the job it was on."""
        table = self.query_one("#jobs-table", DataTable)
        selected = self.selected_job()
        shown = sorted(
            (j for j in self.jobs.values() if self.status_filter in (None, j["status"])),
            key=lambda j: j["created_at"],
            reverse=True,
        )
        table.clear()
        for job in shown:
            table.add_row(*job_row(job), key=job["id"])
        if selected is not None and selected in self.jobs and table.row_count:
            keys = [j["id"] for j in shown]
            if selected in keys:
                table.move_cursor(row=keys.index(selected))

    def selected_job(self) -> str | None:
        """The id of the job under the cursor, or None when the table is empty."""
        return selected_key(self.query_one("#jobs-table", DataTable))

    # Polled views ----------------------------------------------------------------------------------------

    @work(exclusive=True, group="poll", exit_on_error=False)
    async def poll(self) -> None:
        """Re-read tenants, recent questions and (while its tab shows) the gaps into their tables, and redraw the
        jobs' ages; an error shows in the banner."""
        try:
            tenants = await self.client.tenants()
            questions = await self.client.questions()
            if self.query_one(TabbedContent).active == "gaps":
                await self.query_one(Gaps).reload([t["name"] for t in tenants])
        except DaemonError as e:
            self.error = str(e)
            return
        self.tenants = {t["id"]: t for t in tenants}
        fill(self.query_one("#tenants-table", DataTable), [tenant_row(t) for t in tenants], list(self.tenants))
        self.query_one(Questions).show(questions)
        self.render_jobs()  # ages move on even when nothing else changes

    @work(exclusive=True, group="questions", exit_on_error=False)
    async def poll_questions(self) -> None:
        """Re-read the recent questions now (the events feed saw a new message)."""
        try:
            self.query_one(Questions).show(await self.client.questions())
        except DaemonError as e:
            self.error = str(e)

    def watch_error(self, error: str) -> None:
        """Show or hide the unreachable-daemon banner; while it shows, the overview says its status
        is unknown."""
        banner = self.query_one("#banner", Static)
        banner.update(f"daemon unreachable, reconnecting: {error}" if error else "")
        banner.set_class(bool(error), "shown")
        if error:  # what is shown is no longer known to be true
            self.query_one("#summary", Static).update("status unknown: waiting for the daemon")

    # Actions ---------------------------------------------------------------------------------------------

    def action_show(self, tab: str) -> None:
        """o, j, t, u, g: switch to that tab."""
        self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def tab_shown(self, event: TabbedContent.TabActivated) -> None:
        """A tab shown (by key or click): its table takes the focus, so the arrow keys move its cursor at once;
        the gaps are read when their tab opens."""
        tables = event.pane.query(DataTable)
        if tables:
            tables.first().focus()
        if event.pane.id == "gaps":
            self.poll()

    def action_refresh(self) -> None:
        """r: re-read the tables now and reconnect the events feed."""
        self.poll()
        self.follow_events()

    def action_filter(self) -> None:
        """f: go to the jobs tab and show the next status (all, running, queued, failed,
        succeeded, cancelled)."""
        self.query_one(TabbedContent).active = "jobs"
        self.status_filter = STATUSES[(STATUSES.index(self.status_filter) + 1) % len(STATUSES)]

    def watch_status_filter(self, status: str | None) -> None:
        """Relabel the jobs tab for the new status filter and reload its jobs."""
        label = f"{status} jobs" if status else "all jobs"
        self.query_one("#jobs-filter", Static).update(f"{label}  (f: filter by status, Enter: details)")
        self.render_jobs()
        self.follow_events()  # reloads the list for the new filter

    def action_details(self) -> None:
        """Enter: open the details of the job or tenant under the cursor."""
        active = self.query_one(TabbedContent).active
        if active == "jobs":
            self.open_job()
        elif active == "tenants":
            self.open_tenant()

    @on(DataTable.RowSelected, "#tenants-table")
    def tenant_selected(self) -> None:
        """A tenant row chosen: show its keys."""
        self.open_tenant()

    @work(exclusive=True, group="detail", exit_on_error=False)
    async def open_tenant(self) -> None:
        """Show the tenant under the cursor: its questions, its sources (refresh, last and next crawl, last job)
        and its keys with their usage."""
        table = self.query_one("#tenants-table", DataTable)
        tenant_id = selected_key(table)
        if tenant_id is None:
            return
        tenant = self.tenants.get(tenant_id, {"name": str(table.get_row_at(table.cursor_row)[0])})
        try:
            sources, keys = await asyncio.gather(self.client.sources(tenant_id), self.client.keys(tenant_id))
        except DaemonError as e:
            self.notify(str(e), severity="error")
            return
        await self.push_screen_wait(Text(tenant_text(tenant, sources, keys)))

    @on(DataTable.RowSelected, "#jobs-table")
    def job_selected(self) -> None:
        """A job row chosen: show its details."""
        self.open_job()

    @work(exclusive=True, group="detail", exit_on_error=False)
    async def open_job(self) -> None:
        """Show the details of the job under the cursor, and retry or cancel it if asked to there."""
        job_id = self.selected_job()
        if job_id is None:
            return
        try:
            job = await self.client.job(job_id)
        except DaemonError as e:
            self.notify(str(e), severity="error")
            return
        job["tenant"] = self.jobs.get(job_id, {}).get("tenant", job["tenant_id"])
        action = await self.push_screen_wait(JobDetail(job_detail(job)))
        if action is not None:
            await self.act_on(job, action)

    async def act_on(self, job: dict[str, Any], action: str) -> None:
        """Cancel or retry a job once confirmed, refusing what its status does not allow; the outcome
        is notified and shown in the jobs table."""
        short = job["id"][:8]
        if action == "cancel" and job["status"] not in ("queued", "running"):
            self.notify(f"job {short} is {job['status']}: only queued or running jobs can be cancelled")
            return
        if action == "retry" and job["status"] in ("queued", "running"):
            self.notify(f"job {short} is still {job['status']}: cancel it first, or wait for it to end")
            return
        if not await self.push_screen_wait(Confirm(f"{action.capitalize()} job {short} ({job['status']})?")):
            return
        try:
            result = await (self.client.cancel(job["id"]) if action == "cancel" else self.client.retry(job["id"]))
        except DaemonError as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"job {short} cancelled" if action == "cancel" else f"retrying as job {result['id'][:8]}")
        self.jobs[result["id"]] = {**result, "tenant": job["tenant"]}
        self.render_jobs()

    async def on_unmount(self) -> None:
        """Close the HTTP session to the daemon."""
        await self.client.close()


def run(argv: list[str]) -> int:
    """The `bitbd-tui` command: without --url or --token, the URL and admin token come from the environment
    or the data dir of a local server. Exits with a usage error when there is no token."""
    parser = argparse.ArgumentParser(prog="bitbd-tui", description="Operator console for a bitbd daemon.")
    parser.add_argument(
        "--url",
        default=os.environ.get("BITBD_URL"),
        help="daemon URL (default $BITBD_URL, else the server of --data-dir, else http://127.0.0.1:8740)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("BITBD_ADMIN_TOKEN"),
        help="admin token (default $BITBD_ADMIN_TOKEN, else the local data dir's admin_token)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(platformdirs.user_data_dir("bitbd")),
        help="data dir of a local server, to read its URL and admin token",
    )
    args = parser.parse_args(argv)
    token = args.token
    if not token:
        try:
            token = (args.data_dir / "admin_token").read_text().strip()
        except OSError:
            parser.error(
                f"no admin token: pass --token, set BITBD_ADMIN_TOKEN, or point --data-dir at a server's "
                f"data dir ({args.data_dir / 'admin_token'} is not readable)"
            )
    url = args.url or _local_url(args.data_dir) or "http://127.0.0.1:8740"
    BitbdTUI(DaemonClient(url, token)).run()
    return 0


def _local_url(data_dir: Path) -> str | None:
    from bitbd.embedded.datadir import DataDir

    return DataDir(data_dir).server_url()
