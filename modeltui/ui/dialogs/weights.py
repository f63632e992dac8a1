"""The load-weights dialog: a checkpoint onto the open model, as one undoable edit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Input, Label, Static

from modeltui.ui.dialogs.base import Dialog

if TYPE_CHECKING:
    from modeltui.core.weights import WeightsReport


class WeightsDialog(Dialog["WeightsReport"]):
    """Load a checkpoint onto the open model (an undoable edit), reporting what did not fit."""

    OK = "Load"

    def __init__(self, session, trust: bool):
        super().__init__()
        self.session = session
        self.trust = trust

    def title_text(self) -> str:
        return "Load weights onto the model"

    def body(self) -> ComposeResult:
        yield Label("checkpoint (.safetensors, .pt/.bin/.ckpt, a sharded folder or its index.json)")
        yield Input(placeholder="e.g. runs/last.ckpt", id="path", compact=True)
        yield Static(Text("Tensors whose name and shape fit are copied in (ties stay tied); missing, unexpected and "
                          "mis-shaped keys are listed. u undoes." + (" --trust is on." if self.trust else ""), style="dim"))

    def submit(self) -> None:
        from modeltui.core.weights import strip_to_fit

        path = self.query_one("#path", Input).value
        self._path = path
        # first the names alone: keys that fit only without a wrapper's prefix (module.) are offered the strip
        self.start("reading the keys…", lambda: ("asked", strip_to_fit(self.session.model, path, trust=self.trust)))

    def on_job_done(self, message) -> None:
        message.prevent_default()  # the base Dialog would close with the first job's result
        result = message.result
        if not (isinstance(result, tuple) and result and result[0] == "asked"):
            self.dismiss(result)
            return
        prefix = result[1]
        if not prefix:
            self._load("")
            return
        from modeltui.core.keyplan import describe_wrapper
        from modeltui.ui.dialogs.base import Confirm

        question = f"Its keys fit the model once the prefix {describe_wrapper(prefix)} is stripped. Strip it while loading?"
        self.app.push_screen(Confirm(question, "Strip", "As they are"), lambda yes: self._load(prefix if yes else ""))

    def _load(self, strip: str) -> None:
        from modeltui.core.weights import load_weights_into

        path = self._path

        def job() -> WeightsReport:
            return load_weights_into(self.session, path, trust=self.trust, strip=strip)

        self.start("loading…", job)
