"""The console's questions and gaps tabs: tables the app fills, and Enter to read one row whole."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from bitbd_tui.client import DaemonClient, DaemonError
from bitbd_tui.screens import Text
from bitbd_tui.views import exchange_text, gap_row, gap_text, question_row


def fill(table: DataTable[str], rows: list[tuple[str, ...]], keys: list[str] | None = None) -> None:
    """Replace a table's rows, keeping the cursor on the same row number where there still is one."""
    cursor = table.cursor_row
    table.clear()
    for i, row in enumerate(rows):
        table.add_row(*row, key=keys[i] if keys else None)
    if rows:
        table.move_cursor(row=min(cursor, len(rows) - 1))


def selected_key(table: DataTable[str]) -> str | None:
    """The key of the row under the cursor, or None when the table is empty."""
    if not table.row_count:
        return None
    return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)


class Questions(Vertical):
    """The latest answers of every tenant: question, the answer (or "refused"), rating; Enter opens the exchange
    with its citations and rating."""

    def __init__(self, client: DaemonClient) -> None:
        super().__init__()
        self.client = client
        self.questions: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        """A hint and the table."""
        yield Static("latest answers  (Enter: the whole exchange, with citations and rating)", classes="hint")
        yield DataTable(id="questions-table", cursor_type="row")

    def on_mount(self) -> None:
        """Set the table's columns."""
        self.query_one(DataTable).add_columns("age", "tenant", "question", "answer", "rated", "ms")

    def show(self, questions: list[dict[str, Any]]) -> None:
        """Show these questions, newest first."""
        self.questions = {q["message_id"]: q for q in questions}
        fill(self.query_one(DataTable), [question_row(q) for q in questions], [q["message_id"] for q in questions])

    @on(DataTable.RowSelected)
    def chosen(self) -> None:
        """Enter on a row: open its exchange."""
        self.open()

    @work(exclusive=True, group="exchange", exit_on_error=False)
    async def open(self) -> None:
        """Show the conversation of the answer under the cursor up to that answer, with citations and rating."""
        key = selected_key(self.query_one(DataTable))
        if key is None or key not in self.questions:
            return
        q = self.questions[key]
        try:
            messages = await self.client.conversation(q["conversation_id"], q["tenant"])
        except DaemonError as e:
            self.notify(str(e), severity="error")
            return
        await self.app.push_screen_wait(Text(exchange_text(q, messages)))


class Gaps(Vertical):
    """What visitors could not get answered, per tenant, in topics (GET /v1/admin/gaps); re-read while shown."""

    def __init__(self, client: DaemonClient) -> None:
        super().__init__()
        self.client = client
        self.topics: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        """A hint and the table."""
        yield Static("unanswered topics, last 30 days  (Enter: examples and closest pages)", classes="hint")
        yield DataTable(id="gaps-table", cursor_type="row")

    def on_mount(self) -> None:
        """Set the table's columns."""
        self.query_one(DataTable).add_columns("tenant", "asked", "example", "why", "last")

    async def reload(self, tenants: list[str]) -> None:
        """Re-read the gaps of these tenants (by name) and show them, the largest topics first."""
        topics = []
        for tenant in tenants:
            topics += [{**t, "tenant": tenant} for t in await self.client.gaps(tenant)]
        topics.sort(key=lambda t: -int(t["count"]))
        self.topics = {f"{t['tenant']}:{i}": t for i, t in enumerate(topics)}
        fill(self.query_one(DataTable), [gap_row(t) for t in topics], list(self.topics))

    @on(DataTable.RowSelected)
    def chosen(self) -> None:
        """Enter on a row: the topic whole."""
        key = selected_key(self.query_one(DataTable))
        if key in self.topics:
            self.app.push_screen(Text(gap_text(self.topics[key])))
