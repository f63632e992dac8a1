"""The header bar: target, totals, bytes, devices, dtypes and the unsaved mark."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from modeltui.core.structure import ModelInfo
from modeltui.format import fmt_bytes, fmt_count, visible

MAX_TARGET = 48  # a long path is cut in the middle so the facts after it stay on screen


def short_target(target: str, limit: int = MAX_TARGET) -> str:
    """``target`` made safe to print, cut in the middle to ``limit`` characters."""
    s = visible(target)
    if len(s) <= limit:
        return s
    keep = limit - 1
    return s[: keep // 3] + "…" + s[-(keep - keep // 3):]


class HeaderBar(Static):
    """Target, totals, bytes, devices, dtypes and the unsaved-changes mark (first, so it is never cut)."""

    def update(self, content="", *, layout: bool = True) -> None:
        super().update(content, layout=layout)
        # The height is auto (one or two lines): a change made before the first
        # layout settled was measured once and kept (the devices and dtypes cut
        # at 80 columns); measure again after the next refresh.
        self.call_after_refresh(self.refresh, layout=True)

    def show_loading(self, target: str) -> None:
        self.update(Text.assemble(("modeltui ", "bold"), (short_target(target), "bold cyan"), ("  opening…", "dim")))

    def show_failed(self, target: str) -> None:
        self.update(Text.assemble(("modeltui ", "bold"), (short_target(target), "bold cyan"), ("  could not open", "bold red")))

    def show_info(self, info: ModelInfo, dirty: bool = False) -> None:
        t = Text()
        t.append("modeltui ", style="bold")
        if dirty:
            t.append("● unsaved ", style="bold red")
        t.append(short_target(info.label), style="bold cyan")
        if info.kind != "module":
            t.append(" (state_dict)", style="dim")
        t.append("  params ", style="dim")
        t.append(fmt_count(info.total_params), style="bold")
        if info.kind == "module":
            t.append("  trainable ", style="dim")
            t.append(fmt_count(info.trainable_params))
        t.append("  ", style="dim")
        t.append(fmt_bytes(info.total_bytes))
        t.append("  ", style="dim")
        t.append(",".join(info.devices()) or "-", style="magenta")
        t.append("  ", style="dim")
        t.append(",".join(info.dtypes()) or "-", style="yellow")
        self.update(t)
