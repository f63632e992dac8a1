"""The help screen: every key, generated from the action table; it scrolls at 80x24."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from modeltui.ui.actions import help_rows


def help_text() -> Group:
    """The keys and the tree's marks; descriptions wrap in their own column."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold cyan", no_wrap=True)
    table.add_column(ratio=1)
    for key, what in help_rows():
        table.add_row(key, what)
    marks = Text("\nMarks in the tree: ", style="dim")
    marks.append("⇄ tied  ❄ frozen  ? lazy (uninitialised)  ⚠ NaN/Inf (in values, or in a module's output)  "
                 "→ output shape of the last forward pass (red: it held NaN/Inf)  ∇ grad norm after a backward", style="yellow")
    title = Text("modeltui keys", style="bold")
    title.append("   ↑ ↓ pgup pgdn scroll; escape, q or ? close\n", style="dim")
    return Group(title, table, marks)


class HelpScreen(ModalScreen[None]):
    """A scrolling list of keys; escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()

    def action_dismiss(self, result: Any = None) -> None:
        self.dismiss(result)
