"""The save dialog: the path decides the format; asks before overwriting or writing into a checkpoint's own folder."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Checkbox, Input, Label, Static

from modeltui.core.save_checks import is_folder_destination
from modeltui.format import visible
from modeltui.ui.dialogs.base import Confirm, Dialog

if TYPE_CHECKING:
    from modeltui.core.saving import SaveReport


def container_note(opened, path: str) -> str:
    """What happens to a training checkpoint's other entries when saving to ``path`` ("" for plain weights)."""
    container = getattr(opened, "container", None)
    if container is None:
        return ""
    others = container.other_entries()
    if not others:
        return ""
    names = ", ".join(visible(n, limit=40) for n in others[:5]) + ("…" if len(others) > 5 else "")
    if is_folder_destination(path):
        return f"The training state ({names}) is not included: a sharded folder holds weights only."
    if path.endswith(".safetensors"):
        return f"The training state ({names}) is not included: a .safetensors file holds weights only."
    return f"The training state ({names}) is kept as it was; the weights are replaced."


MAX_CHANGES_SHOWN = 8


def overwrite_note(opened, session, path: str) -> str:
    """What saving over the existing file ``path`` changes in it, from the session's record ("" if it does not exist).

    Nothing is read: the session knows the file the model came from and the
    files it saved to; for another file it says it cannot tell.
    """
    full = os.path.expanduser(path)
    if not path or not os.path.isfile(full):
        return ""
    names = session.changed_since(full) if session is not None else ([] if _is_source(opened, full) else None)
    shown = visible(os.path.basename(full), limit=60)
    if names is None:
        return (f"{shown} exists and is not a file this session read or wrote: modeltui cannot tell what it holds; "
                "it will be replaced (c compares with it first).")
    if not names:
        return f"Overwriting {shown} changes no tensor: the model matches it."
    few = ", ".join(visible(n, limit=60) for n in names[:MAX_CHANGES_SHOWN])
    more = f" and {len(names) - MAX_CHANGES_SHOWN:,} more" if len(names) > MAX_CHANGES_SHOWN else ""
    return f"Overwriting {shown} changes {len(names):,} tensor(s): {few}{more}."


def _is_source(opened, path: str) -> bool:
    """Whether ``path`` is the file the model was read from (with no session nothing was edited since)."""
    weights = getattr(opened, "weights", None)
    for p in (getattr(opened, "path", None), weights.path if weights is not None else None):
        try:
            if p and os.path.samefile(p, path):
                return True
        except OSError:
            continue
    return False


class SaveDialog(Dialog["SaveReport"]):
    """Save the state_dict: the path decides the format; asks before overwriting (saying which tensors change)."""

    OK = "Save"

    def __init__(self, opened, path: str, not_saved: list[str] | None = None, session=None, subtree: str = ""):
        super().__init__()
        self.opened = opened
        self.path = path
        self.not_saved = not_saved  # edited tensors a state_dict cannot carry (None: every constant)
        self.subtree = subtree  # the selected module: "only this subtree" offers to extract it
        self.session = session  # core.Session: what changed since a file was read or written

    def title_text(self) -> str:
        return "Save the state_dict"

    def body(self) -> ComposeResult:
        yield Label("path: .safetensors, .pt/.pth/.bin/.ckpt, or a folder DIR/ (sharded)")
        # a box shows its text raw: a path holding control characters is shown escaped, and kept if left as shown
        yield Input(visible(self.path), id="path", compact=True)
        yield Label("largest shard, for a folder (e.g. 5GB, 500MB)", id="shard-label")
        yield Input("5GB", id="shard", compact=True)
        yield Checkbox(f"only the keys under {visible(self.subtree or '(root)', limit=40)}, that prefix removed",
                       id="extract", compact=True, disabled=not self.subtree)
        yield Static(Text(container_note(self.opened, self.path), style="bold yellow"), id="container-note")
        note = overwrite_note(self.opened, self.session, self.path)
        yield Static(Text(note, style="bold yellow"), id="changes-note", classes="" if note else "hidden")
        yield Static(Text("Written to a temp file, read back and checked, then moved into place; "
                          "tied tensors are stored once.", style="dim"))

    def on_mount(self) -> None:
        self._show_shard(self.path)
        self.query_one("#extract").display = bool(self.subtree)

    def _show_shard(self, path: str) -> None:
        from modeltui.core.save_checks import is_folder_destination

        folder = bool(path) and is_folder_destination(os.path.expanduser(path))
        self.query_one("#shard").display = self.query_one("#shard-label").display = folder

    @on(Input.Changed, "#path")
    def _path_changed(self, event: Input.Changed) -> None:
        self._show_shard(event.value.strip())
        self.query_one("#container-note", Static).update(Text(container_note(self.opened, event.value.strip()), style="bold yellow"))
        note = overwrite_note(self.opened, self.session, event.value.strip())
        changes = self.query_one("#changes-note", Static)
        changes.update(Text(note, style="bold yellow"))
        changes.set_class(not note, "hidden")

    def submit(self) -> None:
        from modeltui.core.save_checks import SaveError, is_folder_destination, save_conflict
        from modeltui.core.shards import parse_size

        typed = self.query_one("#path", Input).value.strip()
        path = self.path if typed == visible(self.path).strip() else os.path.expanduser(typed)
        if not path:
            self.show_error("give a path to save to, e.g. model.safetensors")
            return
        self.max_shard = None
        if is_folder_destination(path):
            try:
                self.max_shard = parse_size(self.query_one("#shard", Input).value)
            except ValueError as e:
                self.show_error(str(e))
                return
        self.extract = self.subtree if self.query_one("#extract", Checkbox).value else None
        try:
            question = save_conflict(self.opened, path)
        except SaveError as e:
            self.show_error(str(e))
            return
        if question is None:
            self._start(path)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._start(path)

        note = overwrite_note(self.opened, self.session, path)
        if note:
            question = f"{question}\n\n{note}"
        self.app.push_screen(Confirm(visible(question, newlines=True), "Write", "Keep it"), answer)

    def _start(self, path: str) -> None:
        from modeltui.core.saving import save_opened

        def job() -> SaveReport:
            # the user answered any question save_conflict asked: a yes covers writing into the source folder too
            return save_opened(self.opened, path, overwrite_source=True, not_saved=self.not_saved,
                               extract=self.extract, max_shard_size=self.max_shard)

        self.start("saving and verifying…", job)
