"""Command palette: go to any module or tensor by name."""

from __future__ import annotations

from functools import partial

from textual.command import Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from modeltui.format import visible
from modeltui.ui.widgets import NodeRef

MAX_HITS = 50


def highlight(matcher: Matcher, text: str) -> Content:
    """``text`` with the fuzzy match highlighted, as Content: never parsed as markup.

    ``Matcher.highlight`` (and the palette, for a ``str`` prompt or help)
    parses its argument as markup: a module named ``[/]`` ended the app with
    a MarkupError and ``[bold red]x[/]`` showed a red ``x``.
    """
    content = Content(text)
    score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    if score:
        for offset in offsets:
            if not text[offset].isspace():
                content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class GoToProvider(Provider):
    """``Go to encoder.0.weight``: substring filter first, then fuzzy scoring.

    Scanning names with ``in`` keeps the palette quick on models with tens of
    thousands of modules; only the first candidates are scored.
    """

    def _refs(self):
        app = self.app
        info = getattr(app, "info", None)
        if info is None:
            return []
        refs = [NodeRef("module", p) for p in info.modules if p]
        refs += [NodeRef("tensor", n) for n in info.tensors]
        return refs

    async def search(self, query: str) -> Hits:
        q = query.strip().lower()
        if not q:
            return
        matcher = self.matcher(query)
        info = self.app.info
        found = 0
        for ref in self._refs():
            label = ref.name
            extra = info.modules[ref.name].type if ref.kind == "module" else info.tensors[ref.name].dtype
            if q not in label.lower() and q not in (extra or "").lower():
                continue
            score = matcher.match(label) or 0.1
            yield Hit(
                score,
                highlight(matcher, f"Go to {visible(label, limit=120)}"),
                partial(self.app.goto, ref),
                help=Content(f"{ref.kind} {visible(extra or '', limit=60)}"),  # Content: the palette parses a str
            )
            found += 1
            if found >= MAX_HITS:
                return
