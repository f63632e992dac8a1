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
        from modeltui.core.weights import load_weights_into

        path = self.query_one("#path", Input).value
        def job() -> WeightsReport:
            return load_weights_into(self.session, path, trust=self.trust)

        self.start("loading…", job)
