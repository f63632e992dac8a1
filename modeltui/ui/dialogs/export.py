"""Export the session as a standalone script: where to write it, and where the script saves its result."""

from __future__ import annotations

import os

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Input, Label, Static

from modeltui.format import visible
from modeltui.ui.dialogs.base import Confirm, Dialog


class ExportDialog(Dialog[str]):
    """Write a Python script (torch and safetensors only) that repeats this session's edits and saves."""

    OK = "Export"

    def __init__(self, session, request):
        super().__init__()
        self.session = session
        self.request = request

    def title_text(self) -> str:
        return "Export the session as a script"

    def body(self) -> ComposeResult:
        from modeltui.core.save_checks import default_save_path

        label = self.request.label
        stem = os.path.splitext(os.path.basename(label.rstrip("/").rpartition(":")[2]))[0] or "model"
        yield Label("script")
        yield Input(f"{stem}_session.py", id="script", compact=True)
        yield Label("the script saves to (its second argument overrides it)")
        yield Input(default_save_path(self.session.opened, self.request.target, self.request.weights), id="out", compact=True)
        yield Static(Text(f"It repeats the {len(self.session.undo_stack)} edit(s) of the current state on the original "
                          "target, initialisers with their seeds, and saves as modeltui does.", style="dim"))

    def submit(self) -> None:
        script = os.path.expanduser(self.query_one("#script", Input).value.strip())
        out = self.query_one("#out", Input).value.strip()
        if not script or not out:
            self.show_error("give the script's path and the path it saves to")
            return
        if os.path.isdir(script):
            self.show_error(f"{visible(script)} is a folder: give a file name, e.g. session.py")
            return
        if os.path.exists(script):
            self.app.push_screen(Confirm(f"{visible(script)} exists. Overwrite it?", "Write", "Keep it"),
                                 lambda yes: yes and self._start(script, out))
            return
        self._start(script, out)

    def _start(self, script: str, out: str) -> None:
        from modeltui.core.export import export_script

        self.start("writing…", lambda: export_script(self.session, self.request, script, out))
