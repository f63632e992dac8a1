"""The layers view's plot: each layer's output std (and grad norm) against depth, on a log scale.

Drawn with textual-plotext (axes with figures, a legend, two runs in two
colours each), chosen over Textual's Sparkline, which has no axis and
reads as a silhouette only. plotext 5 takes the logarithm of the data in
place when it draws a log axis, so a second draw (any resize) fails on
numbers already logged (plotext#209): the log is taken here, on a linear
axis, with the ticks labelled in the original units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual_plotext import PlotextPlot

from modeltui.core.layers import LayerRow


@dataclass(slots=True)
class Series:
    """One line of the plot: log10 values at layer positions."""

    label: str
    xs: list[int]
    ys: list[float]
    color: str  # plotext's name
    rich_color: str  # the same colour for the legend (rich's name)
    marks: bool = False  # points (x) at the top of the plot, not a line: the layers whose output held NaN/Inf


#: (label, plotext colour, rich colour) per line: the latest run bright, the run before in darker colours
STYLES = {("std", False): ("std", "cyan", "cyan"), ("grad", False): ("grad norm", "orange", "dark_orange"),
          ("std", True): ("std before", "blue", "blue"), ("grad", True): ("grad norm before", "red", "red")}


def plotted_rows(rows: list[LayerRow], leaves_only: bool) -> list[LayerRow]:
    """The rows the plot shows: the layers (leaf modules) in execution order, or every module."""
    chosen = [r for r in rows if r.leaf or not leaves_only]
    return chosen or rows


def make_series(now: list[LayerRow], before: list[LayerRow] | None, leaves_only: bool = True) -> list[Series]:
    """The lines to draw; ``before``'s rows are matched to ``now``'s by module path (same x)."""
    shown = plotted_rows(now, leaves_only)
    earlier = {r.path: r for r in before} if before is not None else None
    values: dict[tuple[str, bool], list[float | None]] = {
        ("std", False): [r.stats.std if r.stats is not None else None for r in shown],
        ("grad", False): [r.grad_norm for r in shown],
    }
    if earlier is not None:
        matched = [earlier.get(r.path) for r in shown]
        values[("std", True)] = [m.stats.std if m is not None and m.stats is not None else None for m in matched]
        values[("grad", True)] = [m.grad_norm if m is not None else None for m in matched]
    positive = [v for vs in values.values() for v in vs if v is not None and math.isfinite(v) and v > 0]
    floor = min(positive) / 10 if positive else 1e-12  # where an exact zero (a dead layer) is drawn
    out = []
    for key in (("std", True), ("grad", True), ("std", False), ("grad", False)):  # the latest run drawn on top
        vs = values.get(key)
        if vs is None or not any(v is not None for v in vs):
            continue
        xs, ys = [], []
        for x, v in enumerate(vs):
            if v is None or not math.isfinite(v) or v < 0:
                continue
            xs.append(x)
            ys.append(math.log10(max(v, floor)))
        if xs:
            out.append(Series(STYLES[key][0], xs, ys, STYLES[key][1], STYLES[key][2]))
    bad = [x for x, r in enumerate(shown) if r.nonfinite]
    if bad:
        out.append(Series("NaN/Inf output", bad, [], "red", "bold red", marks=True))
    return out


def tick_label(power: float) -> str:
    """``10**power`` in few characters: ``0.01``, ``1``, ``100``, ``1e-05``."""
    v = 10 ** power
    if -3 <= power <= 4:
        return f"{v:g}"
    return f"1e{round(power)}" if abs(power - round(power)) < 1e-9 else f"{v:.0e}"


def log_ticks(lo: float, hi: float, most: int = 6) -> tuple[list[float], list[str]]:
    """Tick positions (log10 units) over ``[lo, hi]``, at powers of ten, and their labels."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [], []
    a, b = math.floor(lo), math.ceil(hi)
    if b - a < 1:
        b = a + 1
    step = max(1, math.ceil((b - a) / max(most - 1, 1)))
    ticks = [float(k) for k in range(a, b + 1, step)]
    return ticks, [tick_label(k) for k in ticks]


class DepthPlot(PlotextPlot):
    """std and grad norm of each layer, in execution order, log scale; the run before in darker colours."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series: list[Series] = []

    def show(self, now: list[LayerRow], before: list[LayerRow] | None = None, leaves_only: bool = True) -> None:
        self.series = make_series(now, before, leaves_only)
        self._shown = (len(plotted_rows(now, leaves_only)), leaves_only)
        self._draw(*self._shown)

    def on_resize(self) -> None:
        if getattr(self, "_shown", None) is not None:
            self._draw(*self._shown)  # the x ticks follow the width

    def _draw(self, count: int, leaves_only: bool) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if not self.series:
            plt.title("no figures to plot (no output was measured)")
            self.refresh()
            return
        ys = [y for s in self.series for y in s.ys] or [0.0]
        ticks, labels = log_ticks(min(ys), max(ys))
        top = ticks[-1] if ticks else max(ys)
        for s in self.series:  # no labels: the legend is a line of text under the plot (it hides no point)
            if s.marks:
                plt.scatter(s.xs, [top] * len(s.xs), color=s.color, marker="x")
            else:
                plt.plot(s.xs, s.ys, color=s.color, marker="braille")
        if ticks:
            plt.yticks(ticks, labels)
            plt.ylim(ticks[0], ticks[-1])
        last = max(count - 1, 1)
        step = max(1, -(-last // max((self.size.width or 80) // 8, 2)))  # integer ticks, about one per 8 columns
        plt.xticks(list(range(0, last + 1, step)))
        plt.xlim(0, last)
        self.refresh()

    def legend(self, leaves_only: bool = True) -> Text:
        """What each colour is, and what the x axis counts."""
        t = Text()
        for s in sorted(self.series, key=lambda s: (s.marks, "before" in s.label)):
            t.append(" x " if s.marks else " ━━ ", style=f"bold {s.rich_color}")
            t.append(s.label)
        t.append(f"   x: {'layer' if leaves_only else 'module'} #", style="dim")
        return t
