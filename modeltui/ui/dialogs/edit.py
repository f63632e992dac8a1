"""The edit-values dialog: an assignment over a slice of the selected tensor."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Input, Label, Static

from modeltui.format import visible
from modeltui.ui.dialogs.base import Dialog


class EditDialog(Dialog[str]):
    """An assignment over a slice of the selected tensor: ``[0, 0] = 42``."""

    OK = "Apply"

    def __init__(self, session, name: str):
        super().__init__()
        self.session = session
        self.tensor_name = name

    def title_text(self) -> str:
        return f"Edit values of {visible(self.tensor_name, limit=120)}"

    def body(self) -> ComposeResult:
        yield Label(Text("[slice] op value, e.g. [0, 0] = 42   [:] += 1   *= 0.5   [..., -1] = nan"))
        yield Input(placeholder="[0, 0] = 42", id="expr", compact=True)
        from modeltui.core.editing import not_saved_reason

        note = not_saved_reason(self.session, self.tensor_name)
        if note:
            yield Static(Text(note + "; the model uses the new values until you quit", style="bold yellow"), id="not-saved")

    def submit(self) -> None:
        expr = self.query_one("#expr", Input).value
        if not expr.strip():
            self.show_error("write an edit, e.g. [0, 0] = 42")
            return
        from modeltui.core.editing import edit_values

        self.start("applying…", lambda: edit_values(self.session, self.tensor_name, expr))
