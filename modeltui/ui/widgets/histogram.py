"""A histogram a person can read at a glance: one bar per bin with its range.

Rendered as a rich renderable that fits the width it is given, so it reads
the same at 80x24 and at 200x60.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

BLOCKS = " ▏▎▍▌▋▊▉█"


def merge_bins(counts: list[int], edges: list[float], target: int) -> tuple[list[int], list[float]]:
    """Merge adjacent bins down to at most ``target`` bins."""
    n = len(counts)
    if n <= target:
        return counts, edges
    step = -(-n // target)
    out_c = [sum(counts[i:i + step]) for i in range(0, n, step)]
    out_e = [edges[i] for i in range(0, n, step)] + [edges[-1]]
    return out_c, out_e


def short(v: float) -> str:
    """A bin edge in at most about 8 characters."""
    if v == 0:
        return "0"
    s = f"{v:.3g}"
    return s.replace("e+0", "e").replace("e-0", "e-")


class Histogram:
    """Horizontal bars, one line per bin: ``lo  ██████▍  count``."""

    def __init__(self, counts: list[int], edges: list[float], bins: int = 16):
        self.counts, self.edges = merge_bins(list(counts), list(edges), bins)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        counts, edges = self.counts, self.edges
        if not counts:
            yield Text("no finite values", style="dim")
            return
        labels = [short(float(e)) for e in edges[:-1]]
        lw = max(len(s) for s in labels)
        cw = max(len(f"{c:,}") for c in counts)
        width = max(4, options.max_width - lw - cw - 3)
        peak = max(counts) or 1
        for label, c in zip(labels, counts):
            frac = c / peak * width
            full = int(frac)
            part = BLOCKS[int((frac - full) * 8)] if full < width else ""
            bar = ("█" * full + part.strip())[:width]
            line = Text()
            line.append(f"{label:>{lw}} ", style="dim")
            line.append(f"{bar:<{width}}", style="green")
            line.append(f" {c:>{cw},}", style="bold" if c == peak else "")
            yield line
        yield Text(f"{'':>{lw}} to {short(float(edges[-1]))}", style="dim")


def render_histogram(counts: list[int], edges: list[float], bins: int = 16) -> Histogram:
    return Histogram(counts, edges, bins)
