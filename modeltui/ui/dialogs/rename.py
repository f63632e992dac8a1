"""The rename dialog: a node's prefix, or a regular expression over every key, with a live preview.

The preview (the first renames, how many, or why the rename is refused: a
clash, an empty name, a bad pattern) is worked out from the names alone on
every keystroke; nothing changes until Rename, and then as one undoable edit.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Input, Label, Select, Static

from modeltui.format import visible
from modeltui.ui.dialogs.base import Dialog
from modeltui.ui.messages import RenamePreviewed

PREFIX, REGEX = "prefix", "regex"


class RenameDialog(Dialog[str]):
    """Rename keys: ``old prefix -> new prefix`` (the selected node), or ``re.sub(pattern, replacement, key)``."""

    OK = "Rename"

    def __init__(self, session, node: str, *, pattern: str = "", replacement: str = ""):
        super().__init__()
        self.session = session
        self.node = node
        self.pattern, self.replacement = pattern, replacement

    def title_text(self) -> str:
        from modeltui.core.keys import is_bare

        what = "the checkpoint's keys" if is_bare(self.session.opened) else "the keys a save writes (the model keeps its names)"
        return f"Rename {what}"

    def body(self) -> ComposeResult:
        mode = REGEX if self.pattern else PREFIX
        yield Select([("the selected node's prefix", PREFIX), ("a regular expression over all keys", REGEX)],
                     value=mode, allow_blank=False, id="mode", compact=True)
        yield Label("old prefix (the selected node) / pattern (Python re)", id="old-label")
        yield Input(self.pattern or self.node, id="old", compact=True)
        yield Label("new prefix / replacement (\\1 for a group)", id="new-label")
        yield Input(self.replacement if self.pattern else self.node, id="new", compact=True)
        yield Static("", id="preview")
        yield Static(Text("Clashes (two keys to one name) and empty names are refused before anything changes; "
                          "tied names stay one tensor. u undoes.", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#new", Input).focus()
        self._update()

    def _pattern(self) -> tuple[str, str]:
        from modeltui.core.keys import prefix_rename

        mode = self.query_one("#mode", Select).value
        old, new = self.query_one("#old", Input).value, self.query_one("#new", Input).value
        return (old, new) if mode == REGEX else prefix_rename(old, new)

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        self._update()

    _request = 0

    def _update(self) -> None:
        self._request += 1
        self._preview(self._request, *self._pattern())

    @work(thread=True, exclusive=True, exit_on_error=False, group="preview")
    def _preview(self, request: int, pattern: str, replacement: str) -> None:
        """Off the UI thread: 100k keys take a moment, and typing must not wait for them."""
        from modeltui.core.keys import preview_rename

        self.post_message(RenamePreviewed(request, preview_rename(self.session.opened, pattern, replacement)))

    def on_rename_previewed(self, message: RenamePreviewed) -> None:
        if message.request != self._request:
            return  # an older pattern: a newer preview is on its way
        p = message.preview
        box = self.query_one("#preview", Static)
        if p.error:
            box.update(Text(f"✗ {visible(p.error)}", style="bold red"))
        else:
            box.update(Text(f"{p.count} key(s) renamed:\n" + "\n".join(p.lines()), style="green"))

    def submit(self) -> None:
        from modeltui.core.keys import preview_rename, rename

        pattern, replacement = self._pattern()
        p = preview_rename(self.session.opened, pattern, replacement)
        if p.error:
            self.show_error(p.error)
            return
        def job():
            desc = rename(self.session, pattern, replacement)
            moved = re.sub(pattern, replacement, self.node) if self.node else ""
            return desc, moved  # where the selected node went: the tree selects it again

        self.start("renaming…", job)
