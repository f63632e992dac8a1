"""The compare dialog (c): another target, or the file the model came from; a progress bar; escape cancels."""

from __future__ import annotations

import os

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Input, Label, ProgressBar, Static

from modeltui.format import visible
from modeltui.ui.dialogs.base import Dialog
from modeltui.ui.messages import Progress


def source_of(opened, target: str | None, weights: str | None) -> str | None:
    """The file the model came from: the checkpoint TARGET, or the ``-w`` file; None for a model built from code."""
    for p in (weights, target if getattr(opened, "path", None) else None):
        if p and os.path.exists(p):
            return p
    return None


class CompareDialog(Dialog):
    """Compare the open model with another target; returns a :class:`~modeltui.core.compare_tree.Comparison`."""

    OK = "Compare"

    def __init__(self, opened, source: str | None, trust: bool, log_length: int = 0):
        super().__init__()
        self.opened = opened
        self.source = source
        self.trust = trust
        self.log_length = log_length
        self._stop = False

    def title_text(self) -> str:
        return "Compare with another checkpoint or model"

    def body(self) -> ComposeResult:
        yield Label("other target: a checkpoint file or folder, or pkg.module:attr")
        yield Input(self.source or "", id="other", compact=True,
                    placeholder="e.g. other.safetensors, ckpt/ or pkg.models:Net")
        hint = (f"The file this model came from is {visible(self.source, limit=120)}: compare with it to see what your edits changed."
                if self.source else "This model was built from code: give a checkpoint to compare it with.")
        yield Static(Text(hint, style="dim"), id="compare-hint")
        yield Static(Text("Every tensor is read in chunks (one piece of each side at a time); the tree then marks "
                          "= identical, ~ changed, + only here, − only there.", style="dim"))
        yield ProgressBar(total=100, show_eta=False, id="compare-progress")

    def on_mount(self) -> None:
        self.query_one("#compare-progress", ProgressBar).display = False

    def submit(self) -> None:
        from modeltui.core.errors import ModelTuiError
        from modeltui.core.request import OpenRequest

        text = self.query_one("#other", Input).value.strip()
        if not text:
            self.show_error("give a checkpoint (file or folder) or an import path to compare with")
            return
        try:
            request = OpenRequest.make(os.path.expanduser(text), trust=self.trust)
        except ModelTuiError as e:
            self.show_error(str(e))
            return
        self.query_one("#compare-progress", ProgressBar).display = True
        self.start("opening and comparing… (escape cancels)", lambda: self._compare(request, text))

    def _compare(self, request, label: str):
        """The job (a worker thread): open the other target and compare every tensor."""
        from modeltui.core.compare import compare_opened
        from modeltui.core.compare_tree import Comparison
        from modeltui.core.targets import open_request
        from modeltui.core.workpool import default_workers

        other = open_request(request)
        try:
            report = compare_opened(self.opened, other, workers=default_workers(), should_stop=lambda: self._stop,
                                    progress=lambda done, total: self.post_message(Progress(done, total)))
        except BaseException:
            other.close()
            raise
        return Comparison.make(report, self.opened.info, other, label, self.log_length)

    def on_progress(self, message: Progress) -> None:
        bar = self.query_one("#compare-progress", ProgressBar)
        bar.update(total=max(message.total, 1), progress=message.done)

    def action_cancel(self) -> None:
        self._stop = True  # the job stops at its next chunk and opens nothing further
        self.dismiss(None)
