"""The save dialog: the path decides the format; asks before overwriting or writing into a checkpoint's own folder."""

from __future__ import annotations

import os

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Input, Label, Static

from modeltui.format import visible
from modeltui.ui.dialogs.base import Confirm, Dialog


def container_note(opened, path: str) -> str:
    """What happens to a training checkpoint's other entries when saving to ``path`` ("" for plain weights)."""
    container = getattr(opened, "container", None)
    if container is None:
        return ""
    others = container.other_entries()
    if not others:
        return ""
    names = ", ".join(visible(n, limit=40) for n in others[:5]) + ("…" if len(others) > 5 else "")
    if path.endswith(".safetensors"):
        return f"The training state ({names}) is not included: a .safetensors file holds weights only."
    return f"The training state ({names}) is kept as it was; the weights are replaced."


class SaveDialog(Dialog):
    """Save the state_dict: the path decides the format; asks before overwriting."""

    OK = "Save"

    def __init__(self, opened, path: str):
        super().__init__()
        self.opened = opened
        self.path = path

    def title_text(self) -> str:
        return "Save the state_dict"

    def body(self) -> ComposeResult:
        yield Label("path (.safetensors, or .pt / .pth / .bin / .ckpt for torch.save)")
        yield Input(self.path, id="path", compact=True)
        yield Static(Text(container_note(self.opened, self.path), style="bold yellow"), id="container-note")
        yield Static(Text("Written to a temp file, read back and checked, then moved into place; "
                          "tied tensors are stored once.", style="dim"))

    @on(Input.Changed, "#path")
    def _path_changed(self, event: Input.Changed) -> None:
        self.query_one("#container-note", Static).update(Text(container_note(self.opened, event.value.strip()), style="bold yellow"))

    def submit(self) -> None:
        from modeltui.core.saving import SAFETENSORS, TORCH

        path = os.path.expanduser(self.query_one("#path", Input).value.strip())
        if not path:
            self.show_error("give a path to save to, e.g. model.safetensors")
            return
        if os.path.isdir(path):
            self.show_error(f"{path} is a folder; give a file name inside it")
            return
        if not path.endswith(SAFETENSORS + TORCH):
            self.show_error(f"{os.path.basename(path)}: unknown format; end the name with .safetensors, .pt, .pth, .bin or .ckpt")
            return
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            self.show_error(f"folder {folder} does not exist")
            return
        questions = []
        conflict = _conflict(self.opened, path)
        if conflict:
            questions.append(conflict)
        elif os.path.exists(path):
            questions.append(f"{path} exists. Overwrite it?")
        if not questions:
            self._start(path, False)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._start(path, bool(conflict))

        self.app.push_screen(Confirm(visible(questions[0], newlines=True), "Overwrite", "Keep it"), answer)

    def _start(self, path: str, into_source: bool) -> None:
        from modeltui.core import saving

        if into_source:
            self.start("saving and verifying…", lambda: saving.save_opened(self.opened, path, overwrite_source=True))
        else:
            self.start("saving and verifying…", lambda: saving.save_opened(self.opened, path))


def _conflict(opened, path: str) -> str | None:
    try:
        from modeltui.core.saving import save_conflict
    except ImportError:  # older core
        return None
    return save_conflict(opened, path)


def default_save_path(opened, target: str | None, weights: str | None) -> str:
    """Where the save dialog suggests writing."""
    try:
        from modeltui.core.saving import default_save_path as core_default
    except ImportError:
        core_default = None
    if core_default is not None:
        return core_default(opened, target, weights)
    if weights and os.path.isfile(weights):
        return weights
    from modeltui.core.editable import is_bare

    if target and os.path.exists(target) and is_bare(opened):
        if os.path.isfile(target):
            stem, ext = os.path.splitext(target)
            return target if ext == ".safetensors" else stem + ".safetensors"
        return os.path.join(target.rstrip("/"), "model.safetensors")
    name = (target or "model").rpartition(":")[2].rpartition(".")[2] or "model"
    return name + ".safetensors"
