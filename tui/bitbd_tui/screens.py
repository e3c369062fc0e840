"""Modal screens: a job's details (with retry and cancel) and a yes/no confirmation."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class Confirm(ModalScreen[bool]):
    """Asks before an action that changes something: y or Enter confirms, n or Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        ("y", "answer(True)", "Yes"),
        ("n", "answer(False)", "No"),
        ("escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        """The question, with Yes and No buttons."""
        with Vertical(id="dialog"):
            yield Static(self.question, id="question")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        """Focus the No button: Enter on it cancels."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Yes confirms, No cancels."""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """y confirms; n and Esc cancel."""
        self.dismiss(yes)


class Text(ModalScreen[str | None]):
    """Some text to read (a tenant's keys, a job's details) with the keys that act on it; Esc goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [("escape", "dismiss(None)", "Back")]
    KEYS = "Esc back"

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        """The text, scrollable, above the keys that act on it."""
        with VerticalScroll(id="detail"):
            yield Static(self.text, id="detail-text")
        yield Static(self.KEYS, id="detail-keys")


class JobDetail(Text):
    """A job's progress and errors; r retries it, c cancels it (each asks first), Esc goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [("r", "choose('retry')", "Retry"), ("c", "choose('cancel')", "Cancel job")]
    KEYS = "r retry  c cancel  Esc back"

    def action_choose(self, action: str) -> None:
        """r or c: close with the action chosen (the app asks before it acts)."""
        self.dismiss(action)
