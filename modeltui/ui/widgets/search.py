"""The search bar: find modules and tensors by name or class; n / N step through matches."""

from __future__ import annotations

from textual import on
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Static

from modeltui.core.structure import ModelInfo
from modeltui.format import visible
from modeltui.ui.widgets.tree import NodeRef


def find(info: ModelInfo, query: str) -> list[NodeRef]:
    """Modules whose path or class contains ``query`` and tensors whose name does (case-insensitive)."""
    q = query.strip().lower()
    if not q:
        return []
    out: list[NodeRef] = []
    walk = getattr(info.modules, "walk", None)
    if walk is not None:  # a lazy listing (frontier checkpoints): the names alone, no object per node
        for path, tensors in walk():
            if path and q in path.lower():
                out.append(NodeRef("module", path))
            out.extend(NodeRef("tensor", n) for n in tensors if q in n.lower())
        return out
    for m in info.modules.values():
        if (m.path and q in m.path.lower()) or (m.type and q in m.type.lower()):
            out.append(NodeRef("module", m.path))
        for n in m.tensors:
            if q in n.lower():
                out.append(NodeRef("tensor", n))
    return out


class SearchBar(Horizontal):
    """Hidden until ``/``; enter searches and jumps to the first match."""

    class Goto(Message):
        """Reveal and select ``ref`` in the tree."""

        def __init__(self, ref: NodeRef) -> None:
            super().__init__()
            self.ref = ref

    class Done(Message):
        """A search was submitted: focus goes back to the tree (the bar stays, showing the count)."""

    class NoMatch(Message):
        """Nothing matched ``query``."""

        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.info: ModelInfo | None = None
        self.matches: list[NodeRef] = []
        self.index = -1

    def compose(self):
        yield Input(placeholder="search name or class, enter to jump; n / N for next / previous", id="search-input")
        yield Static("", id="search-count")

    def open(self) -> None:
        self.add_class("visible")
        self.query_one(Input).focus()

    def close(self) -> bool:
        """Hide the bar; True when it was open."""
        was = self.has_class("visible")
        self.remove_class("visible")
        return was

    def run(self, query: str) -> int:
        """Search ``query`` and jump to the first match; returns the number of matches."""
        self.matches = find(self.info, query) if self.info is not None else []
        self.index = -1
        count = self.query_one("#search-count", Static)
        if not query.strip():
            count.update("")
            return 0
        if not self.matches:
            count.update("no match")
            self.post_message(self.NoMatch(visible(query, limit=80)))
            return 0
        self.step(1)
        return len(self.matches)

    def step(self, direction: int) -> None:
        """Go to the next (1) or previous (-1) match."""
        if not self.matches:
            return
        self.index = (self.index + direction) % len(self.matches)
        self.query_one("#search-count", Static).update(f"{self.index + 1}/{len(self.matches)}")
        self.post_message(self.Goto(self.matches[self.index]))

    @on(Input.Submitted, "#search-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.run(event.value)
        self.post_message(self.Done())
