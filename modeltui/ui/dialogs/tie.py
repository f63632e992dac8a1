"""The tie / untie dialog."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Input, Label, Select, Static

from modeltui.format import visible
from modeltui.ui.dialogs.base import Dialog

MAX_SUGGESTIONS = 20_000  # suggestions are a convenience; a huge model does without them


class TieDialog(Dialog[str]):
    """Tie a target to a source's parameters, or untie a target."""

    OK = "Apply"

    def __init__(self, session, selection: str):
        super().__init__()
        self.session = session
        self.selection = selection

    def title_text(self) -> str:
        return "Tie or untie parameters"

    def body(self) -> ComposeResult:
        from textual.suggester import SuggestFromList

        info = self.session.opened.info
        suggest = None
        if len(info.modules) + len(info.tensors) <= MAX_SUGGESTIONS:
            names = [p for p in info.modules if p] + [n for n, t in info.tensors.items() if t.kind in ("parameter", "tensor")]
            suggest = SuggestFromList([visible(n) for n in names], case_sensitive=True)
        tied = self._is_tied(self.selection)
        yield Select([("tie: the target uses the source's parameters", "tie"),
                      ("untie: the target gets its own copy", "untie")],
                     value="untie" if tied else "tie", allow_blank=False, id="mode", compact=True)
        yield Label("target (module or parameter; → accepts a suggestion)")
        # a box shows its text raw: names from a file are shown (and may be typed) as visible() writes them
        yield Input(visible(self.selection) or "(root)", id="target", suggester=suggest, compact=True)
        yield Label("source (module or parameter): its parameters are kept", id="source-label")
        yield Input(placeholder="e.g. embed_tokens or tok.weight", id="source", suggester=suggest, disabled=tied, compact=True)
        yield Static(Text("Modules are tied by matching parameter names (weight with weight); shapes, dtypes and devices "
                          "must match. u undoes.", style="dim"))

    def _is_tied(self, name: str) -> bool:
        info = self.session.opened.info
        if name in info.tensors:
            return bool(info.tensors[name].tied_count)
        return bool(name in info.modules and name and info.modules[name].shared_with)

    def _real_name(self, text: str) -> str:
        """The module or tensor name ``text`` is, or is shown as (a name holding ESC is shown and typed as ``\\x1b``)."""
        info = self.session.opened.info
        if text in info.tensors or text in info.modules:
            return text
        return next((n for n in (*info.modules, *info.tensors) if visible(n) == text), text)

    def on_mount(self) -> None:
        box = self.query_one("#target" if self._is_tied(self.selection) else "#source", Input)
        box.focus()

    @on(Select.Changed, "#mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        self.query_one("#source", Input).disabled = event.value == "untie"

    def submit(self) -> None:
        mode = str(self.query_one("#mode", Select).value)
        target = self._real_name(self.query_one("#target", Input).value)
        source = self._real_name(self.query_one("#source", Input).value)
        from modeltui.core.surgery import tie, untie

        self.start("applying…", lambda: untie(self.session, target) if mode == "untie" else tie(self.session, source, target))
